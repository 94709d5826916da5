"""The same clients on Flower: a ClientApp wrapping the privbox client, the filter chain as client
mods, FedAvg in a ServerApp; Flower's simulation engine must reproduce the embedded simulation."""

import numpy as np
import pytest

flwr = pytest.importorskip("flwr", reason="Flower is the optional extra privbox[flower]")
pytest.importorskip("privbox.fl.client", reason="needs the one Client (privbox.fl.client) of issue 7")

from privbox.core.safetensors_io import read_privbox_file
from privbox.fl.config import FLConfig
from privbox.fl.simulation import run_simulation


def test_state_dict_round_trip_keeps_names_order_and_dtypes():
    from privbox.fl.flower.arrays import record_to_state, state_to_record

    state = {"conv.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "bn._mean": np.ones(3, np.float32),
             "bn._variance": np.full(3, 2.0, np.float64), "steps": np.array([3], np.int64)}
    back = record_to_state(state_to_record(state), like=state)
    assert list(back) == list(state)
    for k, v in state.items():
        assert back[k].dtype == v.dtype
        np.testing.assert_array_equal(back[k], v)


@pytest.mark.slow  # starts Ray: ~1 min on two cores
def test_flower_simulation_equals_the_embedded_simulation(tiny, tmp_path):
    from flwr.simulation import run_simulation as flower_simulation

    from privbox.fl.flower.apps import make_client_app, make_server_app

    tiny["defense"] = {"sigma0": 1.0}                    # noise: the generator state must carry over rounds
    tiny["audit"].update(start_round=1, frequency=1, threshold=1e9)   # audit round 1 on the Flower side too
    config = FLConfig.from_dict(tiny)
    embedded = run_simulation(config, tmp_path / "embedded")
    out = tmp_path / "flower"
    flower_simulation(server_app=make_server_app(config, str(out)), client_app=make_client_app(config, str(out)),
                      num_supernodes=2, backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}})
    final, _ = read_privbox_file(out / "final_model.safetensors", "privbox.FLModel")
    assert set(final) == set(embedded.final_state)
    for k, v in embedded.final_state.items():
        np.testing.assert_allclose(final[k], v, atol=1e-5, rtol=0, err_msg=k)
    assert (out / "clients" / "audit" / "round_001" / "high-risk" / "rdlv.json").exists()
