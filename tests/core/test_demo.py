"""`privbox demo` runs the quick matrix, writes its heatmap, grid, metrics and table, says where
they are and states which attacks leaked and which defenses stopped them."""

import json

import pytest

from privbox.cli.main import main

FAMILIES = ["dlg", "idlg", "inverting_gradients", "gradinversion", "e2egi", "ga", "nvidia_fl"]


def test_demo_writes_outputs_and_prints_paths(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--iterations", "2", "--defenses", "gaussian_privacy", "--no-utility"]) == 0
    printed = capsys.readouterr().out
    for name in ("matrix.png", "grid.png", "metrics.json", "results.md", "matrix.md"):
        assert (out / name).stat().st_size > 0
        assert name in printed
    metrics = json.loads((out / "metrics.json").read_text())
    pairs = {(r["attack"], r["defense"]) for r in metrics["results"]}
    assert pairs == {(a, d) for a in FAMILIES for d in ("none", "gaussian_privacy")}
    assert all(r["status"] == "ok" and r["matching"] for r in metrics["results"])
    assert set(metrics["summary"]) >= {"leaked_undefended", "stopped"}
    table = (out / "results.md").read_text()
    assert "Leaked with no defense" in table and "How to read it" in table
    assert "| dlg | none | 2 |" in table
    assert not list(out.rglob("*.tmp"))


def test_demo_rejects_bad_arguments(capsys):
    assert main(["demo", "--iterations", "0"]) == 2
    assert "--iterations" in capsys.readouterr().err
    assert main(["demo", "--seeds", "a,b"]) == 2
    assert main(["demo", "--attacks", "nope"]) == 2


@pytest.mark.slow
def test_full_demo_every_family_leaks_and_noise_stops_dlg(tmp_path):
    from privbox.demo import run_demo

    result = run_demo(tmp_path, log=lambda line: None)
    assert sorted(result.summary["leaked_undefended"]) == sorted(FAMILIES)
    for defense in ("dp_sgd", "gaussian_privacy", "dgc_momentum"):
        assert "dlg" in result.summary["stopped"].get(defense, []), result.summary
    eps = [r["epsilon"] for r in result.rows if r["defense"] == "dp_sgd" and r.get("epsilon") is not None]
    assert eps and all(e > 0 for e in eps)
