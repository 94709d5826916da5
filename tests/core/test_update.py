"""ClientUpdate / Secret: capture, safetensors round trip, and every bad-input refusal."""

import pickle

import numpy as np
import paddle
import pytest

from privbox.fl.capture import compute_update
from privbox.data import make_target_batch
from privbox.nn import ConvNet, DLGLeNet
from privbox.core.update import (
    ClientUpdate,
    MissingCapabilityError,
    ModelMismatchError,
    Secret,
    ThreatModel,
    UpdateFileError,
)


@pytest.fixture
def lenet_update():
    batch = make_target_batch(2, num_classes=10, seed=1)
    model = DLGLeNet(num_classes=10, init_seed=1)
    update, secret = compute_update(model, batch.images, batch.labels, [0.5] * 3, [0.5] * 3, model_id="dlg_lenet")
    return model, update, secret


def test_gradient_matches_direct_paddle_computation(lenet_update):
    model, update, secret = lenet_update
    x = paddle.to_tensor((secret.images - 0.5) / 0.5)
    loss = paddle.nn.functional.cross_entropy(model(x), paddle.to_tensor(secret.labels))
    loss.backward()
    for name, param in model.named_parameters():
        np.testing.assert_allclose(update.tensors[name], param.grad.numpy(), rtol=1e-4, atol=1e-6)


def test_round_trip_through_safetensors(tmp_path, lenet_update):
    _, update, secret = lenet_update
    update.save(tmp_path / "u.safetensors")
    secret.save(tmp_path / "s.safetensors")
    loaded = ClientUpdate.load(tmp_path / "u.safetensors")
    assert loaded.names() == update.names()
    for name in update.names():
        np.testing.assert_array_equal(loaded.tensors[name], update.tensors[name])
    assert loaded.meta == update.meta
    assert set(loaded.global_state) == set(update.global_state)
    assert loaded.labels is None  # labels are not shared unless the threat model grants them
    s2 = Secret.load(tmp_path / "s.safetensors")
    np.testing.assert_array_equal(s2.images, secret.images)
    np.testing.assert_array_equal(s2.labels, secret.labels)


def test_bn_train_mode_records_buffer_delta_and_exact_stats(tmp_path):
    batch = make_target_batch(4, seed=0)
    paddle.seed(3)
    model = ConvNet(num_classes=10, width=4)
    update, _ = compute_update(model, batch.images, batch.labels, share_bn_stats=True, share_labels=True, bn_mode="train")
    assert update.buffer_delta and any(k.endswith("_mean") for k in update.buffer_delta)
    assert update.bn_batch_stats and any(k.endswith(".var") for k in update.bn_batch_stats)
    tm = update.threat_model()
    assert tm.has_bn_batch_stats and tm.has_bn_running_delta and tm.has_labels and tm.has_gradients
    update.save(tmp_path / "bn.safetensors")
    loaded = ClientUpdate.load(tmp_path / "bn.safetensors")
    np.testing.assert_array_equal(loaded.labels, batch.labels)
    assert set(loaded.bn_batch_stats) == set(update.bn_batch_stats)


def test_eval_mode_leaves_running_stats_alone():
    batch = make_target_batch(2, seed=0)
    model = ConvNet(num_classes=10, width=4)
    update, _ = compute_update(model, batch.images, batch.labels, bn_mode="eval")
    assert update.buffer_delta is None
    assert update.meta.bn_mode == "eval"


def test_refuses_pickle(tmp_path):
    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps({"weight": [1, 2, 3]}))
    with pytest.raises(UpdateFileError, match="never unpickles"):
        ClientUpdate.load(path)


def test_refuses_torch_zip_checkpoint(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"PK\x03\x04" + b"\x00" * 64)
    with pytest.raises(UpdateFileError, match="pickle or PyTorch"):
        ClientUpdate.load(path)


def test_refuses_truncated_file(tmp_path, lenet_update):
    _, update, _ = lenet_update
    path = update.save(tmp_path / "u.safetensors")
    data = path.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(UpdateFileError, match="truncated"):
        ClientUpdate.load(cut)
    tiny = tmp_path / "tiny.safetensors"
    tiny.write_bytes(data[:20])
    with pytest.raises(UpdateFileError, match="truncated|not a safetensors"):
        ClientUpdate.load(tiny)


def test_refuses_nan_tensors(tmp_path, lenet_update):
    from safetensors.numpy import load_file, save_file
    from safetensors import safe_open

    _, update, _ = lenet_update
    path = update.save(tmp_path / "u.safetensors")
    with safe_open(str(path), framework="np") as fh:
        metadata = fh.metadata()
    tensors = load_file(str(path))
    key = next(k for k in tensors if k.startswith("update/"))
    tensors[key] = tensors[key].copy()
    tensors[key].flat[0] = np.nan
    bad = tmp_path / "nan.safetensors"
    save_file(tensors, str(bad), metadata=metadata)
    with pytest.raises(UpdateFileError, match="NaN/Inf"):
        ClientUpdate.load(bad)
    update.tensors[update.names()[0]] = np.full_like(update.tensors[update.names()[0]], np.inf)
    with pytest.raises(UpdateFileError, match="NaN or Inf"):
        update.save(tmp_path / "inf.safetensors")
    assert not (tmp_path / "inf.safetensors").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_refuses_foreign_safetensors(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "other.safetensors"
    save_file({"w": np.zeros(3, dtype=np.float32)}, str(path))
    with pytest.raises(UpdateFileError, match="expected privbox.ClientUpdate"):
        ClientUpdate.load(path)


def test_refuses_wrong_suffix(tmp_path, lenet_update):
    _, update, _ = lenet_update
    with pytest.raises(ValueError, match=r"\.safetensors"):
        update.save(tmp_path / "u.pt")


def test_model_mismatch_is_named(lenet_update):
    _, update, _ = lenet_update
    wrong = DLGLeNet(num_classes=7)
    with pytest.raises(ModelMismatchError, match=r"fc.weight: update \(768, 10\) vs model \(768, 7\)"):
        update.check_model(wrong)
    other = ConvNet(num_classes=10)
    with pytest.raises(ModelMismatchError, match="in the update but not the model"):
        update.check_model(other)


def test_threat_model_names_what_is_missing(lenet_update):
    _, update, _ = lenet_update
    tm = update.threat_model()
    assert tm.missing(["has_gradients", "has_labels"]) == ["has_labels"]
    with pytest.raises(MissingCapabilityError, match="has_labels .*share_labels=True"):
        tm.require(["has_labels"], "attack 'ig'")
    with pytest.raises(ValueError, match="unknown capabilities"):
        ThreatModel().missing(["has_magic"])


def test_bad_capture_inputs():
    model = DLGLeNet(num_classes=10)
    images = np.random.rand(2, 3, 32, 32).astype(np.float32)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        compute_update(model, images * 255, np.array([0, 1]))
    with pytest.raises(ValueError, match="2 images but 3 labels"):
        compute_update(model, images, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\)"):
        compute_update(model, images, np.array([0, 12]))
    with pytest.raises(ValueError, match="bn_mode"):
        compute_update(model, images, np.array([0, 1]), bn_mode="test")
    with pytest.raises(ValueError, match="one value per input channel"):
        compute_update(model, images, np.array([0, 1]), mean=[0.5], std=[0.5])


def test_weight_delta_converts_to_gradient(lenet_update):
    _, update, _ = lenet_update
    delta = ClientUpdate(
        tensors={k: -0.1 * v for k, v in update.tensors.items()},
        meta=type(update.meta)(**{**update.meta.__dict__, "kind": "weight_delta", "lr": 0.1, "local_steps": 1}),
    )
    for name, grad in delta.gradients().items():
        np.testing.assert_allclose(grad, update.tensors[name], rtol=1e-6)
