"""Attacks from specs: the ATTACKS registry, build_attack, serialisable AttackConfig, engines
chosen from the config (never from a preset's name) and the orchestrators behind one ``run``."""

import json

import numpy as np
import paddle
import pytest

from privbox.attacks import (
    ATTACKS,
    ENGINES,
    ORCHESTRATORS,
    AttackConfig,
    Reconstruction,
    build_attack,
    e2egi,
    gradinversion,
    run_group_consistency,
    run_mlco,
)
from privbox.fl.capture import compute_fedavg_update
from privbox.core.errors import ConfigError
from privbox.data import make_target_batch
from privbox.nn import ConvNet

from tiny_victim import MEAN, STD, tiny_capture


def _fedavg_capture():
    paddle.seed(3)
    model = ConvNet(num_classes=10, width=4)
    batch = make_target_batch(2, num_classes=10, size=16, seed=3)
    update, _ = compute_fedavg_update(model, batch.images, batch.labels, MEAN, STD, lr=0.01, batch_size=2,
                                      model_id="convnet", model_kwargs={"width": 4})
    return model, update


def test_every_preset_entry_says_what_its_config_says_and_round_trips_through_json():
    assert {"dlg", "idlg", "inverting_gradients", "gradinversion", "e2egi", "e2egi_single", "ga", "nvidia_fl"} <= set(ATTACKS)
    for entry in ATTACKS.entries():
        config = entry.item()
        assert config.name == entry.name
        assert (config.engine, config.orchestrator) == (entry.extra["engine"], entry.extra["orchestrator"]), entry.name
        assert entry.description and entry.requires
        again = AttackConfig.from_dict(json.loads(json.dumps(config.to_dict())))
        assert again == config and again.to_dict() == config.to_dict()


def test_declared_requirements_are_what_the_engine_checks():
    _, gradient_update, _ = tiny_capture()
    _, delta_update = _fedavg_capture()
    for entry in ATTACKS.entries():
        update = delta_update if entry.extra["engine"] == "fedavg" else gradient_update
        attack = build_attack(entry.name)
        assert set(attack.required_capabilities(update)) == set(entry.requires), entry.name


def test_e2egi_runs_mlco_and_the_single_group_variant_keeps_its_own_name():
    assert (e2egi().orchestrator, ATTACKS.get("e2egi_single")().orchestrator) == ("mlco", "restarts")
    single, paper = ATTACKS.get("e2egi_single")().to_dict(), e2egi().to_dict()
    assert {k for k in paper if paper[k] != single[k]} == {"name", "engine", "orchestrator"}


def test_build_attack_takes_a_name_a_mapping_or_a_config():
    by_name = build_attack("inverting_gradients", iterations=50).config
    by_dict = build_attack({"preset": "inverting_gradients", "iterations": 50}).config
    by_config = build_attack(AttackConfig.from_dict(by_name.to_dict())).config
    assert by_name == by_dict == by_config and by_name.iterations == 50
    plain = build_attack({"objective": "cosine", "lr": 0.5}).config
    assert (plain.objective, plain.lr, plain.name) == ("cosine", 0.5, "custom")


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"preset": "dlg", "lrr": 1}, "unknown attack config keys ['lrr']; valid keys are ['name', 'engine'"),
        ({"objective": "l3"}, "unknown objective 'l3'"),
        ("nope", "unknown attack preset 'nope'; choose one of"),
        ({"preset": "e2egi", "orchestrator_params": {"seeds": 2}}, "unknown key(s) ['seeds'] in orchestrator_params; valid keys are ['num_seeds'"),
        ({"preset": "e2egi", "orchestrator_params": {"num_seeds": "many"}}, "orchestrator_params.num_seeds: expected int"),
        ({"preset": "dlg", "orchestrator": "swarm"}, "unknown orchestrator 'swarm'"),
        ({"preset": "dlg", "engine": "quantum"}, "unknown engine 'quantum'"),
        ({"preset": "nvidia_fl", "orchestrator": "mlco"}, "orchestrator 'mlco' drives the 'gradient' engine, not 'fedavg'"),
        (3, "an attack spec is a preset name, a mapping or an AttackConfig"),
    ],
)
def test_bad_specs_are_config_errors_naming_the_key(spec, message):
    with pytest.raises(ConfigError) as err:
        build_attack(spec)
    assert message in str(err.value)


def test_the_engine_comes_from_the_config_not_from_the_preset_name():
    _, gradient_update, _ = tiny_capture()
    _, delta_update = _fedavg_capture()
    named_like_nvidia = AttackConfig(name="nvidia_fl", engine="gradient")
    assert build_attack(named_like_nvidia).engine_name(delta_update) == "gradient"
    assert build_attack(AttackConfig(name="custom", engine="fedavg")).engine_name(gradient_update) == "fedavg"
    auto = build_attack("dlg")
    assert auto.engine_name(gradient_update) == "gradient" and auto.engine_name(delta_update) == "fedavg"
    assert type(auto.engine(delta_update)) is ENGINES.get("fedavg")


def _mlco_config(**changes):
    return e2egi(iterations=10, progress=False, **changes)


def test_the_mlco_orchestrator_is_run_mlco_behind_one_run():
    model, update, _ = tiny_capture()
    options = {"num_seeds": 2, "inner_iterations": 2, "group_weight": 0.05}
    recon = build_attack(_mlco_config(orchestrator_params=options)).run(model, update)
    assert isinstance(recon, Reconstruction)
    direct = run_mlco(model, update, _mlco_config(), **options)
    np.testing.assert_array_equal(recon.images, direct.reconstruction.images)
    record = recon.config["mlco"]
    assert [p["name"] for p in record["phases"]] == ["init", "inner 1", "inner 2", "final"]
    assert record["num_seeds"] == 2 and recon.iterations == direct.total_iterations == 2 * (3 + 2 + 2) + 4


def test_the_group_orchestrator_is_run_group_consistency_behind_one_run():
    model, update, _ = tiny_capture()
    config = gradinversion(iterations=6, progress=False, label_strategy="given", orchestrator="group",
                           orchestrator_params={"num_seeds": 2, "refresh_every": 3})
    recon = build_attack(config).run(model, update)
    direct = run_group_consistency(model, update, config, num_seeds=2, refresh_every=3)
    np.testing.assert_array_equal(recon.images, direct.reconstruction.images)
    assert recon.config["group"]["best_seed"] == direct.best_seed and len(recon.config["group"]["seed_losses"]) == 2


class _Stop:
    def __init__(self, phase, seed, at):
        self.phase, self.seed, self.at, self.fired = phase, seed, at, False

    def __call__(self, info):
        if (info.phase, info.restart) == (self.phase, self.seed) and info.iteration >= self.at and not self.fired:
            self.fired = True
            raise KeyboardInterrupt


def test_an_interrupted_mlco_run_resumes_to_the_uninterrupted_result(tmp_path):
    model, update, _ = tiny_capture()
    config = _mlco_config(snapshot_every=1, orchestrator_params={"num_seeds": 2, "inner_iterations": 2})
    full = build_attack(config).run(model, update)
    stop = _Stop("inner 1", 1, at=1)
    with pytest.raises(KeyboardInterrupt):
        build_attack(config).run(model, update, callback=stop, checkpoint_dir=str(tmp_path), checkpoint_every=1)
    assert stop.fired and (tmp_path / "init" / "seed1").is_dir()
    resumed = build_attack(config).run(model, update, callback=lambda info: None, checkpoint_dir=str(tmp_path),
                                       checkpoint_every=1, resume=True)
    np.testing.assert_array_equal(resumed.images, full.images)
    assert resumed.best_loss == full.best_loss


def test_registries_describe_every_entry():
    for registry in (ATTACKS, ENGINES, ORCHESTRATORS):
        for entry in registry.entries():
            assert entry.description, f"{registry.kind} {entry.name} has no description"
