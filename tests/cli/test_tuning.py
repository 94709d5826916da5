"""Hyper-parameter search on a simulation update (ALGORITHMS.md §4.8), with tiny budgets."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
import yaml

from privbox.attacks import GradientInversion, get_preset
from privbox.attacks.tuning import (
    HyperparameterSearch,
    apply_params,
    build_model_for_update,
    reconstruction_mse,
    search_space,
    simulation_update,
    successive_halving_rungs,
)
from privbox.cli.main import main
from privbox.fl.capture import compute_update
from privbox.core.images import normalize
from privbox.config import load_config
from privbox.data import make_target_batch
from privbox.nn import build_model
from privbox.core.update import ClientUpdate, Secret

# Signed Adam (GA rule), joint labels: tens of milliseconds per iteration on the tiny LeNet.
TINY = dict(iterations=40, label_strategy="joint", early_stop_tv=0.0, progress=False)
SEARCH = dict(trials=6, budget=16, record_from=4, reduction_factor=2, seed=3)


@pytest.fixture(scope="module")
def target():
    batch = make_target_batch(2, num_classes=4, size=8, channels=1, seed=0)
    model = build_model("dlg_lenet", num_classes=4, image_size=8, in_channels=1)
    update, _ = compute_update(model, batch.images, batch.labels, [0.5], [0.5], model_id="dlg_lenet",
                               model_kwargs={"image_size": 8, "in_channels": 1})
    return update, batch


@pytest.fixture(scope="module")
def simulation(target):
    update, _ = target
    return simulation_update(update, seed=1)


def _quiet(_: str) -> None:
    pass


def test_simulation_mirrors_the_target_but_uses_other_data(target, simulation):
    update, batch = target
    sim, truth, notes = simulation
    assert sim.meta.model_id == update.meta.model_id and sim.meta.model_kwargs == update.meta.model_kwargs
    assert (sim.batch_size, sim.num_classes, sim.meta.bn_mode) == (update.batch_size, update.num_classes, update.meta.bn_mode)
    assert sim.meta.mean == update.meta.mean and sim.meta.std == update.meta.std
    assert sim.labels is None and sim.bn_batch_stats is None  # nothing shared that the target did not share
    for key, value in update.global_state.items():
        np.testing.assert_array_equal(sim.global_state[key], value)  # the same θ0
    assert not set(truth.names) & set(batch.names)  # the surrogate images are not the client's
    assert len(np.unique(truth.labels)) == len(np.unique(batch.labels))  # same label repetition (LLG count)
    assert notes and "surrogate batch" in notes[0]


def test_simulation_shares_what_the_target_shares():
    batch = make_target_batch(2, num_classes=4, size=8, channels=1, distinct_labels=1, seed=0)
    model = build_model("convnet", num_classes=4, in_channels=1, width=2)
    update, _ = compute_update(model, batch.images, batch.labels, [0.5], [0.5], model_id="convnet",
                               model_kwargs={"in_channels": 1, "width": 2}, share_labels=True, share_bn_stats=True)
    sim, truth, _ = simulation_update(update, seed=5)
    assert sim.labels is not None and sim.bn_batch_stats is not None
    assert len(np.unique(truth.labels)) == 1  # label repetition read from the shared labels


def test_rungs_and_space():
    assert successive_halving_rungs(16, 5000, 2000, 4) == [2000, 5000]  # the §4.8 setting
    assert successive_halving_rungs(8, 20, 4, 2) == [4, 8, 16, 20]
    assert successive_halving_rungs(1, 100, 0, 4) == [100]
    e2egi = get_preset("e2egi")
    assert [d.name for d in search_space(e2egi)] == ["lr", "tv", "bn"]
    assert [d.name for d in search_space(get_preset("dlg"))] == ["lr"]
    dims = {d.name: d for d in search_space(e2egi, ["lr", "tv", "image_norm"], {"lr": [0.01, 0.5, "log"]})}
    assert dims["lr"].log and (dims["lr"].low, dims["lr"].high) == (0.01, 0.5)
    assert dims["tv"].log and (dims["tv"].low, dims["tv"].high) == (1e-6, 0.1)
    assert (dims["image_norm"].low, dims["image_norm"].high) == (-1e-6, 0.0)
    with pytest.raises(ValueError, match="unknown tunable parameter"):
        search_space(e2egi, ["momentum"])
    with pytest.raises(ValueError, match="needs a bn regularizer"):
        search_space(get_preset("dlg"), ["bn"])
    with pytest.raises(ValueError, match="log-scale range needs low > 0"):
        search_space(e2egi, ["tv"], {"tv": [0, 1, "log"]})
    tuned = apply_params(e2egi, {"lr": 0.3, "bn": 0.01, "tv": 0.02})
    assert tuned.lr == 0.3 and tuned.regularizers == {"tv": 0.02, "bn": {"weight": 0.01, "source": "exact"}}


def test_mse_matching():
    truth = np.stack([np.zeros((1, 2, 2)), np.ones((1, 2, 2))]).astype(np.float32)
    swapped = truth[::-1]
    assert reconstruction_mse(swapped, truth, ordered=False) == 0.0
    assert reconstruction_mse(swapped, truth, ordered=True) == 1.0


def test_random_search_returns_the_best_trial_and_is_deterministic(simulation):
    sim, truth, _ = simulation
    config = get_preset("ga", **TINY)
    first = HyperparameterSearch(config, sim, truth, log=_quiet, **SEARCH).run()
    complete = [t for t in first.trials if t.status == "complete"]
    assert len(first.trials) == 6 and first.rungs == [4, 8, 16]
    assert len(complete) == 2 and sum(t.status == "pruned" for t in first.trials) == 4
    assert first.best.objective == min(t.objective for t in complete)
    assert first.best.status == "complete" and math.isfinite(first.best.objective)
    # Survivors of a rung are the best at that rung.
    at_first_rung = sorted(first.trials, key=lambda t: t.values[4])
    assert {t.number for t in at_first_rung[:3]} == {t.number for t in first.trials if 8 in t.values}
    second = HyperparameterSearch(config, sim, truth, log=_quiet, **SEARCH).run()
    assert [t.params for t in second.trials] == [t.params for t in first.trials]
    assert [t.values for t in second.trials] == [t.values for t in first.trials]
    assert second.best.number == first.best.number
    # A trial that ran to the end through pauses equals one uninterrupted run of the budget.
    best_config = apply_params(config, first.best_params).replace(iterations=SEARCH["budget"])
    model = build_model_for_update(sim)
    recon = GradientInversion(best_config).run(model, sim)
    truth_x = normalize(truth.images, sim.meta.mean, sim.meta.std).numpy()
    assert reconstruction_mse(recon.images, truth_x, ordered=False) == pytest.approx(first.best.objective, rel=1e-12)
    assert first.best_config(config).lr == first.best_params["lr"]


def test_an_interrupted_search_resumes_to_the_same_result(simulation, tmp_path):
    sim, truth, _ = simulation
    config = get_preset("ga", **TINY)
    reference = HyperparameterSearch(config, sim, truth, log=_quiet, **SEARCH).run()
    lines = []

    def stop_after_four(line: str) -> None:
        lines.append(line)
        if len(lines) == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        HyperparameterSearch(config, sim, truth, work_dir=str(tmp_path), log=stop_after_four, **SEARCH).run()
    with pytest.raises(ValueError, match="already holds a search"):
        HyperparameterSearch(config, sim, truth, work_dir=str(tmp_path), log=_quiet, **SEARCH).run()
    with pytest.raises(ValueError, match="different settings"):
        HyperparameterSearch(config.replace(noise=0.1), sim, truth, work_dir=str(tmp_path), resume=True,
                             log=_quiet, **SEARCH).run()
    resumed = HyperparameterSearch(config, sim, truth, work_dir=str(tmp_path), resume=True, log=_quiet, **SEARCH).run()
    assert [t.values for t in resumed.trials] == [t.values for t in reference.trials]
    assert resumed.best.number == reference.best.number


def test_optuna_sampler_needs_the_extra(simulation, monkeypatch):
    sim, truth, _ = simulation
    monkeypatch.setitem(sys.modules, "optuna", None)  # as if not installed
    search = HyperparameterSearch(get_preset("ga", **TINY), sim, truth, sampler="optuna", log=_quiet, **SEARCH)
    with pytest.raises(ImportError, match=r'pip install "privbox\[tune\]"'):
        search.run()


def test_optuna_tpe_with_median_pruning(simulation):
    pytest.importorskip("optuna")
    sim, truth, _ = simulation
    config = get_preset("ga", **TINY)
    first = HyperparameterSearch(config, sim, truth, sampler="optuna", log=_quiet, **SEARCH).run()
    complete = [t for t in first.trials if t.status == "complete"]
    assert complete and first.best.objective == min(t.objective for t in complete)
    second = HyperparameterSearch(config, sim, truth, sampler="optuna", log=_quiet, **SEARCH).run()
    assert [t.params for t in second.trials] == [t.params for t in first.trials]
    assert second.best.number == first.best.number


def test_tune_command_writes_results_and_attacks_with_the_best_values(captured, tmp_path, capsys):
    out = tmp_path / "tune"
    code = main(["tune", "-c", "ga", "--update", str(captured / "update.safetensors"), "--surrogate-seed", "2",
                 "--trials", "3", "--out", str(out), "-o", "tune.budget=8", "-o", "tune.record_from=2",
                 "-o", "attack.iterations=10", "-o", "attack.label_strategy=joint", "-o", "run.progress=false",
                 "-o", "run.device=cpu"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "SIMULATION update" in printed and "never on the target" in printed
    result = json.loads((out / "tuning.json").read_text())
    assert len(result["trials"]) == 3 and result["best"]["status"] == "complete"
    best = load_config(out / "best.yaml")
    built = best.attack.build()
    assert built.lr == pytest.approx(result["best_params"]["lr"])
    assert built.regularizers["tv"] == pytest.approx(result["best_params"]["tv"])
    assert yaml.safe_load((out / "best.yaml").read_text())["attack"]["preset"] == "ga"
    assert (out / "attack" / "reconstruction.safetensors").exists()
    assert json.loads((out / "attack" / "attack.json").read_text())["tuned_params"] == result["best_params"]
    assert main(["tune", "-c", "ga", "--update", str(captured / "update.safetensors"), "--out", str(out)]) == 2
    assert "already holds a search" in capsys.readouterr().err


def test_tune_refuses_updates_it_cannot_simulate(target, tmp_path):
    update, _ = target
    delta = ClientUpdate(tensors=update.tensors, meta=update.meta.__class__(**{**update.meta.__dict__,
                         "kind": "weight_delta", "lr": 0.1}), global_state=update.global_state)
    with pytest.raises(ValueError, match="FedAvg weight delta"):
        simulation_update(delta)
    no_theta = ClientUpdate(tensors=update.tensors, meta=update.meta)
    with pytest.raises(ValueError, match="global_state"):
        simulation_update(no_theta)
    with pytest.raises(ValueError, match="ground truth has 1 images"):
        HyperparameterSearch(get_preset("ga", **TINY), update, Secret(np.zeros((1, 1, 8, 8)), np.zeros(1)), log=_quiet)
