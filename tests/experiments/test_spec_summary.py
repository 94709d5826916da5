"""Matrix specs refuse bad input; the aggregation and verdicts follow their definitions
(mean/std over seeds recomputed here with NumPy on hand-made cells)."""

import numpy as np
import pytest

from privbox.core.errors import ConfigError
from privbox.experiments import MatrixSpec, load_matrix_spec
from privbox.experiments.summary import aggregate, summary_csv, verdict_lines, verdicts

ATTACKS = [{"name": "a1", "attack": {"preset": "dlg"}}, {"name": "a2", "attack": "idlg"}]


def test_unknown_keys_list_the_valid_ones():
    with pytest.raises(ConfigError) as info:
        MatrixSpec.from_dict({"attacks": ATTACKS, "seedz": [0]})
    assert "seedz" in str(info.value) and "seeds" in str(info.value)
    with pytest.raises(ConfigError, match="rounds"):
        MatrixSpec.from_dict({"attacks": ATTACKS, "defenses": [{"name": "d", "rounds": 0}]})
    with pytest.raises(ConfigError, match="repeat"):
        MatrixSpec.from_dict({"attacks": ATTACKS + ATTACKS[:1]})
    with pytest.raises(ConfigError, match="no matrix file"):
        load_matrix_spec("no_such_matrix_file")


def test_none_row_is_added_and_selection_keeps_it():
    spec = MatrixSpec.from_dict({"attacks": ATTACKS, "defenses": [{"name": "gp", "defenses": ["gaussian_privacy"]}]})
    assert [d.name for d in spec.defenses] == ["none", "gp"]
    picked = spec.select(["a2"], ["gp"])
    assert [a.name for a in picked.attacks] == ["a2"] and [d.name for d in picked.defenses] == ["none", "gp"]
    with pytest.raises(ConfigError, match="unknown attacks"):
        spec.select(["zz"], None)


def test_packaged_configs_load():
    for name in ("matrix", "matrix_demo"):
        spec = load_matrix_spec(name)
        assert spec.defenses[0].name == "none" and len(spec.attacks) == 7


def _cell(attack, defense, seed, psnr, random=7.0, status="ok"):
    if status != "ok":
        return {"attack": attack, "defense": defense, "seed": seed, "status": status, "reason": "needs x"}
    return {"attack": attack, "defense": defense, "seed": seed, "status": "ok", "psnr": psnr, "ssim": psnr / 40,
            "psnr_random": random, "label_accuracy": 1.0, "label_accuracy_kind": "multiset", "rdlv": 0.5,
            "batch_size": 1, "image_size": 16, "model": "m", "matching": "index", "wall_s": 1.0}


def test_aggregate_and_verdicts():
    spec = MatrixSpec.from_dict({"attacks": ATTACKS, "defenses": ["none", {"name": "d1"}, {"name": "d2"}],
                                 "seeds": [0, 1], "leak_margin_db": 5.0})
    psnr = {("a1", "none"): [30.0, 26.0], ("a1", "d1"): [8.0, 9.0], ("a1", "d2"): [20.0, 23.0],
            ("a2", "none"): [10.0, 11.0]}
    cells = [_cell(a, d, s, v) for (a, d), vals in psnr.items() for s, v in enumerate(vals)]
    cells += [_cell("a2", "d1", s, 0, status="skipped") for s in (0, 1)] + [_cell("a2", "d2", s, 9.0) for s in (0, 1)]
    rows = {(r["attack"], r["defense"]): r for r in aggregate(cells, spec, {})}
    assert rows[("a1", "none")]["psnr_mean"] == pytest.approx(np.mean([30.0, 26.0]))
    assert rows[("a1", "none")]["psnr_std"] == pytest.approx(np.std([30.0, 26.0]))
    assert rows[("a1", "none")]["psnr_gain"] == pytest.approx(21.0)
    assert rows[("a1", "none")]["verdict"] == "leaks"
    assert rows[("a1", "d1")]["verdict"] == "stopped"          # 8.5 dB < 7 + 5
    assert rows[("a1", "d2")]["verdict"] == "reduced"          # 21.5 leaks, but 6.5 dB lower
    assert rows[("a2", "none")]["verdict"] == "no leak at this budget"
    assert rows[("a2", "d1")]["status"] == "skipped" and "needs x" in rows[("a2", "d1")]["reason"]
    assert rows[("a2", "d2")]["verdict"] == "no undefended leak to stop"
    summary = verdicts(list(rows.values()))
    assert summary["leaked_undefended"] == ["a1"] and summary["stopped"] == {"d1": ["a1"]}
    assert any(line.startswith("d1 stopped: a1") for line in verdict_lines(summary))
    header = summary_csv(list(rows.values())).splitlines()[0].split(",")
    assert header[:3] == ["attack", "defense", "status"] and "psnr_std" in header and "epsilon" in header
