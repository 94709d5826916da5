"""Issue 12: each bad update, secret, reconstruction or model case listed there, as a named
regression. Bad files are made by editing a valid file through the safetensors library
(st_bytes.tamper); each must raise privbox's own error type naming the key, before Paddle runs."""

from __future__ import annotations

import numpy as np
import pytest

from privbox.attacks import GradientInversion, Reconstruction, get_preset
from privbox.attacks.tuning import build_model_for_update
from privbox.fl.capture import compute_update
from privbox.core.errors import ModelMismatchError, PrivboxError, UpdateFileError, InputError
from privbox.core.update import ClientUpdate, Secret, UpdateMeta
from privbox.data import make_target_batch
from privbox.nn import build_model

from st_bytes import tamper


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A valid tiny update (labels shared, B=2) and its secret, saved."""
    folder = tmp_path_factory.mktemp("victim")
    batch = make_target_batch(2, num_classes=4, size=8, channels=1, seed=0)
    model = build_model("dlg_lenet", num_classes=4, in_channels=1, image_size=8)
    update, secret = compute_update(model, batch.images, batch.labels, [0.5], [0.5], model_id="dlg_lenet",
                                    model_kwargs={"in_channels": 1, "image_size": 8}, share_labels=True)
    return update.save(folder / "update.safetensors"), secret.save(folder / "secret.safetensors")


def _meta(saved, tmp_path, **changes):
    def edit(header):
        header["meta"].update(changes)
        return header

    return tamper(saved[0], tmp_path / "bad.safetensors", header_edit=edit)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("batch_size", 0, r"meta\.batch_size: must lie in \[1, 65536\]"),  # SIGFPE inside Paddle before
        ("batch_size", -3, r"meta\.batch_size: must lie in"),
        ("batch_size", 10**12, r"meta\.batch_size: must lie in"),
        ("batch_size", "2", r"meta\.batch_size: must be an integer"),
        ("input_shape", [], r"meta\.input_shape: must be three integers"),
        ("input_shape", ["1", "8", "8"], r"meta\.input_shape: must be three integers"),
        ("input_shape", [1, 0, 8], r"meta\.input_shape: \[C, H, W\] must have"),
        ("input_shape", [3, 8000, 8000], r"meta\.input_shape: .* more than the limit"),
        ("num_classes", "4", r"meta\.num_classes: must be an integer"),
        ("num_classes", 10**9, r"meta\.num_classes: must lie in"),
        ("num_classes", 1, r"meta\.num_classes: must lie in \[2, .*at least two classes"),
        ("lr", float("nan"), r"meta\.lr: must be null or a finite positive number"),
        ("mean", [0.5, 0.5], r"meta\.mean: needs one value per input channel"),
        ("std", [0.0], r"meta\.std: values must be positive"),
        ("kind", "weights", r"meta\.kind: must be one of"),
        ("local_steps", 0, r"meta\.local_steps: must lie in"),
        ("model_kwargs", [1], r"meta\.model_kwargs: must be an object"),
    ],
)
def test_bad_update_metadata_is_an_update_file_error(saved, tmp_path, key, value, message):
    path = _meta(saved, tmp_path, **{key: value})
    with pytest.raises(UpdateFileError, match=message) as info:
        ClientUpdate.load(path)
    assert str(path) in str(info.value) and info.value.fix


def test_metadata_that_is_a_json_list_or_lacks_its_key(saved, tmp_path):
    path = tamper(saved[0], tmp_path / "list.safetensors", header_edit=lambda h: {**h, "meta": [1, 2]})
    with pytest.raises(UpdateFileError, match="metadata is a JSON list, not an object"):
        ClientUpdate.load(path)
    path = tamper(saved[0], tmp_path / "nometa.safetensors", header_edit=lambda h: {"order": h["order"]})
    with pytest.raises(UpdateFileError, match="no update metadata"):
        ClientUpdate.load(path)
    path = tamper(saved[0], tmp_path / "top.safetensors", header_edit=lambda h: [h])
    with pytest.raises(UpdateFileError, match="JSON list, not an object"):
        ClientUpdate.load(path)


def test_integer_typed_gradients(saved, tmp_path):
    def to_int(tensors):
        key = next(k for k in tensors if k.startswith("update/"))
        tensors[key] = np.round(tensors[key] * 1000).astype(np.int32)

    with pytest.raises(UpdateFileError, match=r"update/.*dtype int32"):
        ClientUpdate.load(tamper(saved[0], tmp_path / "int.safetensors", tensor_edit=to_int))


def test_enormous_gradients(saved, tmp_path):
    def blow_up(tensors):
        key = next(k for k in tensors if k.startswith("update/"))
        tensors[key] = tensors[key] * np.float32(1e30)

    with pytest.raises(UpdateFileError, match="beyond 1e"):
        ClientUpdate.load(tamper(saved[0], tmp_path / "big.safetensors", tensor_edit=blow_up))


def test_float_labels(saved, tmp_path):
    def floats(tensors):
        tensors["labels"] = tensors["labels"].astype(np.float32) + np.float32(0.5)

    with pytest.raises(UpdateFileError, match="labels have dtype float32"):
        ClientUpdate.load(tamper(saved[0], tmp_path / "fl.safetensors", tensor_edit=floats))


def test_two_labels_for_a_batch_of_one(saved, tmp_path):
    def edit(header):
        header["meta"].update(batch_size=1, num_samples=1)
        return header

    with pytest.raises(UpdateFileError, match="2 labels .* for 1 samples"):
        ClientUpdate.load(tamper(saved[0], tmp_path / "two.safetensors", header_edit=edit))


def test_labels_outside_the_classes(saved, tmp_path):
    def edit(tensors):
        tensors["labels"] = np.array([0, 7], dtype=np.int64)

    with pytest.raises(UpdateFileError, match=r"outside \[0, 4\)"):
        ClientUpdate.load(tamper(saved[0], tmp_path / "lab.safetensors", tensor_edit=edit))


def test_model_kwargs_the_model_does_not_take(saved, tmp_path):
    def edit(header):
        header["meta"]["model_kwargs"]["dropout"] = 0.5
        return header

    update = ClientUpdate.load(tamper(saved[0], tmp_path / "kw.safetensors", header_edit=edit))
    with pytest.raises(ModelMismatchError, match=r"does not take \['dropout'\]"):
        build_model_for_update(update)
    update.meta.model_kwargs = {"in_channels": 1, "image_size": 10**9}
    with pytest.raises(ModelMismatchError, match="image_size=1000000000 is larger"):
        build_model_for_update(update)


def test_secret_with_pixels_outside_0_1(tmp_path, saved):
    with pytest.raises(InputError, match=r"pixels in \[0, 1\]"):
        Secret(images=np.full((1, 1, 4, 4), 3.0, np.float32), labels=[0])

    def normalise(tensors):
        tensors["images"] = (tensors["images"] - 0.5) / 0.01  # normalised, as a confused user might save it

    bad = tamper(saved[1], tmp_path / "secret.safetensors", tensor_edit=normalise)
    with pytest.raises(InputError, match="un-normalised"):
        Secret.load(bad)
    with pytest.raises(InputError, match="not integer class indices"):
        Secret(images=np.zeros((1, 1, 2, 2), np.float32), labels=[0.5])


def test_reconstruction_missing_a_tensor_or_with_an_extra_header_key(tmp_path):
    recon = Reconstruction(images=np.zeros((1, 1, 2, 2), np.float32), pixels=np.full((1, 1, 2, 2), 0.5, np.float32),
                           labels=np.array([1]), label_order="sample", loss_trace=[1.0], best_iteration=0,
                           best_loss=1.0, seed=0, iterations=1, wall_time=0.1, attack="dlg")
    path = recon.save(tmp_path / "r.safetensors")
    missing = tamper(path, tmp_path / "m.safetensors", tensor_edit=lambda t: t.pop("pixels"))
    with pytest.raises(UpdateFileError, match="found .*'images', 'labels', 'loss_trace'"):
        Reconstruction.load(missing)
    extra = tamper(path, tmp_path / "e.safetensors", header_edit=lambda h: {**h, "surprise": 1})
    with pytest.raises(UpdateFileError, match=r"unknown header keys \['surprise'\]"):
        Reconstruction.load(extra)
    typed = tamper(path, tmp_path / "t.safetensors", header_edit=lambda h: {**h, "best_iteration": "3"})
    with pytest.raises(UpdateFileError, match="best_iteration"):
        Reconstruction.load(typed)
    lacking = tamper(path, tmp_path / "l.safetensors", header_edit=lambda h: {k: v for k, v in h.items() if k != "seed"})
    with pytest.raises(UpdateFileError, match=r"lacks \['seed'\]"):
        Reconstruction.load(lacking)


def test_pool_kernel_larger_than_its_input_is_refused_before_paddle(tmp_path):
    """ResNet-18 with the RA stem (max-pool kernel 19) on 8x8 images: 4x4 after the stem conv."""
    paddle_model = build_model("resnet18", num_classes=4, stem="imagenet", maxpool_kernel=19, width=2)
    names = {n: np.zeros(p.shape, np.float32) for n, p in paddle_model.named_parameters() if not p.stop_gradient}
    meta = UpdateMeta(model_id="resnet18", model_kwargs={"stem": "imagenet", "maxpool_kernel": 19, "width": 2},
                      input_shape=[3, 8, 8], num_classes=4, batch_size=1, num_samples=1)
    update = ClientUpdate(tensors=names, meta=meta, labels=np.array([1]))
    with pytest.raises(ModelMismatchError, match=r"pooling kernel of layer 'maxpool' spans 19 .* only 4"):
        update.check_model(paddle_model)
    config = get_preset("idlg", iterations=2, progress=False)
    with pytest.raises(ModelMismatchError, match="pooling kernel"):
        GradientInversion(config).run(paddle_model, update)


def test_conv_kernel_larger_than_its_input_is_refused():
    from privbox.core.model_shapes import check_input_shape, output_size

    model = build_model("dlg_lenet", num_classes=4, in_channels=1, image_size=8)
    # Reference: DLG LeNet's first conv (5x5, padding 2) on a 1x1 image is valid (4 pads), but a
    # 7x7 convolution without padding on 5x5 is not: output_size from the textbook formula.
    assert output_size(1, 5, 2, 4) == 1 and output_size(5, 7, 1, 0) == 0 and output_size(32, 3, 2, 2, 1, True) == 17
    import paddle.nn as nn

    wide = nn.Sequential(nn.Conv2D(1, 2, 7), nn.Flatten(), nn.Linear(2, 2))
    with pytest.raises(ModelMismatchError, match="convolution kernel of layer '0' spans 7 along H but its input is only 5"):
        check_input_shape(wide, [1, 5, 5])
    with pytest.raises(ModelMismatchError, match="linear layer 'fc' expects 48 input features"):
        check_input_shape(model, [1, 16, 16])
    check_input_shape(model, [1, 8, 8])


def test_every_error_above_is_a_privbox_error():
    for kind in (UpdateFileError, ModelMismatchError, InputError):
        assert issubclass(kind, PrivboxError)


def test_found_by_the_fuzz_sweep_unknown_model_id_and_float64_global_state(saved, tmp_path):
    """Two cases the slow fuzz sweep found: an unknown model_id raised a bare ValueError, and a
    float64 θ0 an AssertionError inside Paddle's set_state_dict."""
    def unknown(header):
        header["meta"]["model_id"] = "nonexistent"
        return header

    update = ClientUpdate.load(tamper(saved[0], tmp_path / "unknown.safetensors", header_edit=unknown))
    with pytest.raises(ModelMismatchError, match="cannot rebuild by name"):
        build_model_for_update(update)

    def widen(tensors):
        for key in [k for k in tensors if k.startswith("global/")]:
            tensors[key] = tensors[key].astype(np.float64)

    wide = ClientUpdate.load(tamper(saved[0], tmp_path / "f64.safetensors", tensor_edit=widen))
    model = build_model_for_update(wide)
    reference = ClientUpdate.load(saved[0])
    for name, param in model.named_parameters():
        np.testing.assert_array_equal(param.numpy(), reference.global_state[name])

    def shrink(tensors):
        tensors["global/fc.bias"] = tensors["global/fc.bias"][:2]

    bad = ClientUpdate.load(tamper(saved[0], tmp_path / "shape.safetensors", tensor_edit=shrink))
    with pytest.raises(ModelMismatchError, match=r"fc.bias: update \[2\] vs model \[4\]"):
        build_model_for_update(bad)
