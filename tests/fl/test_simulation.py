"""FedAvg simulation: equivalence with centralised SGD, filter order and drop rule, resume, config errors."""

import numpy as np
import paddle
import pytest

pytest.importorskip("privbox.fl.client", reason="needs the one Client (privbox.fl.client) of issue 7")

from privbox.core.errors import CheckpointError, ConfigError, MissingCapabilityError
from privbox.fl.config import FLConfig
from privbox.fl.data import build_fl_data
from privbox.fl.server import FedAvgServer
from privbox.fl.simulation import run_simulation


def _reference_step(model, images, labels, lr):
    """Centralised SGD on the union, by hand: W - lr * grad(mean CE) with Paddle autograd."""
    model.eval()
    logits = model(paddle.to_tensor(images))
    loss = paddle.nn.functional.cross_entropy(logits, paddle.to_tensor(labels))
    named = [(n, p) for n, p in model.named_parameters() if not p.stop_gradient]
    grads = paddle.grad(loss, [p for _, p in named])
    return {n: p.numpy().astype(np.float64) - lr * g.numpy().astype(np.float64) for (n, p), g in zip(named, grads)}


def test_one_fedavg_round_equals_centralised_sgd_on_the_union():
    from privbox.fl.client import Client
    from privbox.fl.spec import ClientSpec

    rng = np.random.default_rng(0)
    x = rng.random((6, 3, 8, 8)).astype(np.float32)
    y = rng.integers(0, 3, 6)
    base = dict(model="convnet", model_kwargs={"width": 4}, num_classes=3, image_size=8, share="delta", lr=0.05,
                bn_mode="eval", local_epochs=1)
    clients = [Client(ClientSpec(num_images=2, seed=1, **base), dataset=(x[:2], y[:2])),
               Client(ClientSpec(num_images=4, seed=2, **base), dataset=(x[2:], y[2:]))]
    server = FedAvgServer(Client(ClientSpec(num_images=1, seed=7, **base)).model, weighting="samples")
    theta0 = server.global_state()
    updates = [c.run_round(theta0, 0)[0] for c in clients]
    server.aggregate(updates)
    reference_model = Client(ClientSpec(num_images=1, seed=7, **base)).model
    reference_model.set_state_dict({k: paddle.to_tensor(v) for k, v in theta0.items()})
    expected = _reference_step(reference_model, x, y, 0.05)
    for name, value in expected.items():
        np.testing.assert_allclose(server.state[name], value, atol=1e-5, rtol=0)
    # eval-mode BN: running statistics unchanged
    for name in theta0:
        if name not in expected:
            np.testing.assert_array_equal(server.state[name], theta0[name])


class _Attack:
    """A stand-in attack that records what it saw and returns chosen reconstructions."""

    def __init__(self, answer):
        self.answer, self.seen = answer, []

    def check_update(self, update):
        pass

    def run(self, model, update, prior=None):
        self.seen.append(update)

        class R:
            pixels = self.answer(update)
            attack, events = "stand-in", []

        return R()


def test_filter_sees_the_defended_update_and_drops_above_threshold(tiny, tmp_path, monkeypatch):
    tiny["defense"] = {"sigma0": 5.0}
    tiny["audit"].update(start_round=0, frequency=1, threshold=0.5, rescale="clip")
    tiny["fl"]["rounds"] = 1
    config = FLConfig.from_dict(tiny)
    data = build_fl_data(config.data, 9)
    exact = {1: data.train_images[:1], 8: data.train_images[1:9]}
    attack = _Attack(lambda u: exact[u.meta.num_samples])   # a perfect reconstruction: RDLV = (1 - S_p)/S_p
    import privbox.fl.filters as filters

    monkeypatch.setattr(filters, "build_audit_attack", lambda spec: attack)
    result = run_simulation(config, tmp_path / "run")
    assert len(attack.seen) == 2
    for update in attack.seen:   # defense before audit: the attack gets the noised update
        assert any(d.startswith("GaussianPrivacy(sigma0=5") for d in update.meta.defenses)
    assert all(a["rdlv"] > 0.5 and a["dropped"] for a in result.audits)
    assert result.history[0]["dropped"] == ["high-risk", "site-8x4"] and result.history[0]["participants"] == []
    init = FLConfig.from_dict(tiny)
    # every update dropped: the global model is still the initial one
    from privbox.fl.client import Client

    start = Client(init.client_specs()[0].replace(seed=init.fl.seed, defenses=[])).model.state_dict()
    for k, v in start.items():
        np.testing.assert_array_equal(result.final_state[k], v.numpy())

    # the prior as reconstruction scores 0 <= threshold: kept
    attack2 = _Attack(lambda u: np.repeat(data.prior[None], u.meta.num_samples, 0))
    monkeypatch.setattr(filters, "build_audit_attack", lambda spec: attack2)
    kept = run_simulation(FLConfig.from_dict(tiny), tmp_path / "run2")
    assert kept.history[0]["participants"] == ["high-risk", "site-8x4"]
    assert all(abs(a["rdlv"]) < 1e-9 and not a["dropped"] for a in kept.audits)
    assert (tmp_path / "run2" / "audit" / "round_000" / "high-risk" / "reconstruction.safetensors").exists()
    assert (tmp_path / "run2" / "rdlv_per_round.png").exists()


def test_interrupted_run_resumes_to_the_same_final_state(tiny, tmp_path):
    tiny["defense"] = {"sigma0": 2.0}
    tiny["fl"]["rounds"] = 3
    config = FLConfig.from_dict(tiny)
    straight = run_simulation(config, tmp_path / "a")
    run_simulation(config, tmp_path / "b", stop_after=2)
    with pytest.raises(CheckpointError):
        run_simulation(config, tmp_path / "b")          # no silent overwrite
    resumed = run_simulation(config, tmp_path / "b", resume=True)
    assert [h["round"] for h in resumed.history] == [0, 1, 2]
    for k, v in straight.final_state.items():
        np.testing.assert_array_equal(resumed.final_state[k], v)
    restarted = run_simulation(FLConfig.from_dict({**tiny, "fl": {"rounds": 3, "seed": 0}}), tmp_path / "c", stop_after=1)
    assert any(not np.array_equal(restarted.final_state[k], v) for k, v in straight.final_state.items())
    other = FLConfig.from_dict({**tiny, "defense": {"sigma0": 3.0}})
    with pytest.raises(CheckpointError):
        run_simulation(other, tmp_path / "b", resume=True)


def test_bad_input_gets_clear_errors(tiny, tmp_path):
    bad = dict(tiny, clients=[{"name": "x", "num_images": 2, "bach_size": 1}])
    with pytest.raises(ConfigError, match="bach_size"):
        FLConfig.from_dict(bad)
    with pytest.raises(ConfigError, match="larger than the client's dataset"):
        FLConfig.from_dict(dict(tiny, clients=[{"name": "x", "num_images": 2, "batch_size": 4}]))
    with pytest.raises(ConfigError, match="sigma0"):
        FLConfig.from_dict(dict(tiny, defense={"sigma0": -1}))
    needs_labels = dict(tiny, audit={"attack": {"preset": "nvidia_fl", "label_strategy": "given", "iterations": 5,
                                                "progress": False}, "start_round": 0})
    with pytest.raises(MissingCapabilityError):
        run_simulation(FLConfig.from_dict(needs_labels), tmp_path / "labels")


def test_dp_sgd_client_is_charged_per_round_and_stops_at_its_budget(tiny, tmp_path, caplog):
    import logging

    from privbox.defenses.accountant import get_privacy_spent

    dp = {"name": "dp_sgd", "params": {"noise_multiplier": 1.0, "max_grad_norm": 1.0, "sample_rate": 0.5}}
    tiny["client"] = {"model": "dlg_lenet", "lr": 0.1}   # DP-SGD's per-sample gradients need a model without BN
    tiny["clients"] = [{"name": "site-dp", "num_images": 4, "batch_size": 2, "defenses": [dp]},
                       {"name": "plain", "num_images": 4, "batch_size": 4}]
    tiny["fl"]["rounds"] = 3
    one, two = (get_privacy_spent(0.5, 1.0, k, 1e-5)[0] for k in (2, 4))
    tiny["ledger"] = {"delta": 1e-5, "epsilon_budget": (one + two) / 2}
    with caplog.at_level(logging.WARNING, logger="privbox.fl"):
        result = run_simulation(FLConfig.from_dict(tiny), tmp_path / "dp")
    assert [r["epsilon"] for r in result.ledger] == pytest.approx([one])
    assert result.history[0]["participants"] == ["site-dp", "plain"]
    assert result.history[1]["skipped"] == ["site-dp"] and result.history[2]["participants"] == ["plain"]
    assert "client site-dp stops participating at round 1" in caplog.text
    table = (tmp_path / "dp" / "summary.md").read_text()
    assert f"{one:.3f}" in table
