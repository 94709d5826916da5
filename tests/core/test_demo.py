"""`privbox demo` writes its figure, metrics and table, and says where they are."""

import json

from privbox.cli.main import main


def test_demo_writes_outputs_and_prints_paths(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--iterations", "2", "--batch-sizes", "1,2", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    for name in ("reconstruction_B1.png", "reconstruction_B2.png", "metrics.json", "results.md"):
        assert (out / name).exists()
        assert name in printed
    metrics = json.loads((out / "metrics.json").read_text())
    rows = metrics["results"]
    assert [(r["attack"], r["batch_size"]) for r in rows] == [("DLG", 1), ("iDLG", 1), ("DLG", 2), ("iDLG", 2)]
    assert all(r["matching"] == "hungarian" for r in rows)
    assert metrics["run"]["paddle_version"]
    table = (out / "results.md").read_text()
    assert "| DLG | 1 | hungarian |" in table and "How to read it" in table
    assert not list(out.glob("*.tmp"))


def test_demo_rejects_bad_arguments(capsys):
    assert main(["demo", "--batch-sizes", "0"]) == 2
    assert "positive batch size" in capsys.readouterr().err
    assert main(["demo", "--batch-sizes", "a,b"]) == 2
