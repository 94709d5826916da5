"""The matrix runner: outputs, resuming cell by cell, and pairs skipped for reasons read from the
registries' requirements."""

import csv
import json

from privbox.cli.main import main
from privbox.experiments import MatrixSpec, run_matrix

LENET = {"model": "dlg_lenet", "image_size": 8, "num_images": 1, "mean": [0.5] * 3, "std": [0.5] * 3}
LENET_BN = dict(LENET, model_kwargs={"batch_norm": True}, include_labels=True, include_bn_stats=True)


def _spec(**kw):
    data = {
        "attacks": [
            {"name": "dlg", "attack": {"preset": "dlg", "iterations": 2}, "client": LENET},
            {"name": "e2egi", "attack": {"preset": "e2egi_single", "iterations": 3}, "client": LENET_BN},
        ],
        "defenses": ["none",
                     {"name": "dp", "defenses": [{"name": "dp_sgd", "params": {"noise_multiplier": 1.0}}]},
                     {"name": "no_bn_stats", "client": {"include_bn_stats": False}}],
        "seeds": [0, 1],
        "utility": {"enabled": False},
    }
    data.update(kw)
    return MatrixSpec.from_dict(data)


def test_outputs_skips_and_resume(tmp_path):
    quiet = lambda line: None  # noqa: E731
    result = run_matrix(_spec(), tmp_path, log=quiet)
    assert result.ran == 12 and result.reused == 0
    for name in ("matrix.md", "matrix.csv", "matrix.json", "matrix.png", "grid.png"):
        assert (tmp_path / name).stat().st_size > 0
    rows = {(r["attack"], r["defense"]): r for r in csv.DictReader((tmp_path / "matrix.csv").open())}
    assert len(rows) == 6
    # DP-SGD declares requires={"no_train_bn"}: refused on the BN victim in train mode
    assert rows[("e2egi", "dp")]["status"] == "skipped" and "no_train_bn" in rows[("e2egi", "dp")]["reason"]
    # E2EGI's BN term needs the batch statistics the client no longer sends
    assert rows[("e2egi", "no_bn_stats")]["status"] == "skipped"
    assert "has_bn_batch_stats" in rows[("e2egi", "no_bn_stats")]["reason"]
    assert rows[("dlg", "no_bn_stats")]["status"] == "ok" and rows[("dlg", "dp")]["status"] == "ok"
    assert rows[("dlg", "none")]["matching"] and float(rows[("dlg", "none")]["psnr_random"]) > 0
    md = (tmp_path / "matrix.md").read_text()
    assert "Skipped pairs" in md and "paper preset" in md and "| dlg | iterations | 300 | 2 |" in md
    # resume: nothing to do; then one cell removed -> exactly that cell reruns
    assert run_matrix(_spec(), tmp_path, log=quiet).ran == 0
    (tmp_path / "cells" / "dlg__dp__s1.json").unlink()
    again = run_matrix(_spec(), tmp_path, log=quiet)
    assert again.ran == 1 and again.reused == 11
    # a changed setting invalidates only the cells it concerns
    changed = _spec(seeds=[0])
    changed.attacks[0].attack["iterations"] = 3
    assert run_matrix(changed, tmp_path, log=quiet).ran == 3
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob(".*.tmp"))
    stored = json.loads((tmp_path / "matrix.json").read_text())
    assert stored["settings"] and stored["environment"]["paddle"]


def test_cli_matrix_selection(tmp_path, capsys):
    config = tmp_path / "m.yaml"
    import yaml

    config.write_text(yaml.safe_dump(_spec().to_dict()))
    out = tmp_path / "out"
    assert main(["matrix", "-c", str(config), "--out", str(out), "--attacks", "dlg", "--defenses", "dp",
                 "--seeds", "0", "--no-utility"]) == 0
    printed = capsys.readouterr().out
    assert "matrix.png" in printed and "Leaked with no defense" in printed
    assert sorted(p.name for p in (out / "cells").glob("*.json")) == ["dlg__dp__s0.json", "dlg__none__s0.json"]
    assert main(["matrix", "-c", str(config), "--out", str(out), "--attacks", "nope"]) == 2
