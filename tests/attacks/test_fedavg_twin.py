"""The differentiable twin (simulate_local_sgd) and the client share one local step.

The client (privbox.fl.client.Client) trains a real BN model in place; the twin unrolls the same
steps over explicit weights. Both must give the same ΔW and BN running-statistic change.
"""

from __future__ import annotations

import numpy as np
import paddle
import pytest

from privbox.attacks import AttackConfig, ConfigError, FedAvgInversion, FedAvgOptions, nvidia_fl, simulate_local_sgd
from privbox.core.images import normalize
from privbox.fl.client import Client
from privbox.fl.spec import ClientSpec
from privbox.nn import ConvNet

MEAN, STD = [0.5], [0.25]


def _victim():
    rng = np.random.default_rng(5)
    images = rng.random((4, 1, 8, 8)).astype(np.float32)
    labels = np.array([0, 2, 1, 2])
    paddle.seed(5)
    return ConvNet(num_classes=3, in_channels=1, width=4), images, labels


@pytest.mark.parametrize("shuffle", [False, True])
def test_twin_reproduces_the_client_delta_with_bn_in_train_mode(shuffle):
    model, images, labels = _victim()
    spec = ClientSpec(model="custom", num_classes=3, channels=1, num_images=4, batch_size=2, local_epochs=2, lr=0.2,
                      share="delta", mean=MEAN, std=STD, shuffle=shuffle, seed=11)
    update, _ = Client(spec, model=model).run_round(batch=(images, labels))
    assert update.meta.local_steps == 4  # two epochs of two minibatches
    model.train()
    sim = simulate_local_sgd(model, normalize(images, MEAN, STD), paddle.to_tensor(labels), 0.2, 2, 2,
                             create_graph=False, shuffle=shuffle, seed=11)
    assert sim.steps == 4
    for name, value in update.tensors.items():
        np.testing.assert_allclose(sim.delta[name].numpy(), value, atol=1e-5, err_msg=name)
    assert set(sim.running_delta) == set(update.buffer_delta)
    for key, value in update.buffer_delta.items():
        np.testing.assert_allclose(sim.running_delta[key].numpy(), value, atol=1e-5, err_msg=key)
    # the explicit EMA of the twin's own batch statistics (core.bn.ema) gives the same Δr
    tracked = simulate_local_sgd(model, normalize(images, MEAN, STD), paddle.to_tensor(labels), 0.2, 2, 2,
                                 create_graph=True, track_bn=True, shuffle=shuffle, seed=11)
    for key, value in update.buffer_delta.items():
        np.testing.assert_allclose(tracked.running_delta[key].numpy(), value, atol=1e-5, err_msg=key)
    for name, value in update.tensors.items():
        np.testing.assert_allclose(tracked.delta[name].numpy(), value, atol=1e-5, err_msg=name)


def test_fedavg_options_are_a_typed_section_of_the_attack_config():
    cfg = nvidia_fl(iterations=2, fedavg={"mode": "reference", "bn_delta_weight": 0.5})
    assert isinstance(cfg.fedavg, FedAvgOptions) and cfg.fedavg.bn_delta_weight == 0.5
    assert FedAvgInversion(cfg).options == FedAvgOptions(mode="reference", bn_delta_weight=0.5)
    data = cfg.to_dict()
    assert data["fedavg"]["mode"] == "reference"
    assert AttackConfig.from_dict(data).fedavg == cfg.fedavg  # serialises and comes back typed
    with pytest.raises(ConfigError, match="attack.fedavg: unknown FedAvg options \\['modus'\\]"):
        nvidia_fl(fedavg={"modus": "reference"})
    assert FedAvgInversion(nvidia_fl()).options == FedAvgOptions()  # the legacy extra keys still work


def test_the_update_records_the_local_optimiser_and_the_twin_refuses_momentum():
    model, images, labels = _victim()
    spec = ClientSpec(model="custom", num_classes=3, channels=1, num_images=4, batch_size=2, lr=0.1, share="delta",
                      optimizer_kwargs={"momentum": 0.9})
    update, _ = Client(spec, model=model).run_round(batch=(images, labels))
    assert update.meta.optimizer == "sgd(momentum=0.9)"
    from privbox.core.update import MissingCapabilityError

    with pytest.raises(MissingCapabilityError, match="plain SGD"):
        FedAvgInversion(nvidia_fl(iterations=1, progress=False)).check_update(update)
