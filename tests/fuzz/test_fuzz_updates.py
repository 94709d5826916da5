"""Fuzzing update metadata and tensors (dtypes, shapes, values, labels), through the file and the
Python API. Each case loads and then rebuilds the model, checks it against the update and runs
one attack iteration, or raises a PrivboxError at the first boundary: never another exception,
a crash or a hang (time box)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, strategies as st

from privbox.attacks import GradientInversion, get_preset
from privbox.attacks.tuning import build_model_for_update
from privbox.core.update import ClientUpdate, UpdateMeta

from fuzz_helpers import FAST_EXAMPLES, SLOW_EXAMPLES, fuzz_settings, works_or_privbox_error
from fuzz_victim import saved_update, tiny_update

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reliability"))
from st_bytes import tamper  # noqa: E402

_GARBAGE = st.recursive(
    st.none() | st.booleans() | st.integers(-(2 ** 66), 2 ** 66) | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
_SMALL = st.integers(-3, 12)
#: Per key: plausible values (so later stages are reached) or anything at all.
_META_VALUES = {
    "batch_size": _SMALL | st.sampled_from([2, 10 ** 9]),
    "num_samples": _SMALL,
    "num_classes": st.sampled_from([0, 1, 2, 3, 4, 5, 10 ** 7, "4", 4.0]),
    "input_shape": st.lists(st.integers(-1, 12), max_size=4) | st.just([1, 8, 8]) | st.just([3, 8, 8]),
    "mean": st.lists(st.floats(), max_size=3),
    "std": st.lists(st.floats(), max_size=3),
    "kind": st.sampled_from(["gradient", "weight_delta", "", "grad"]),
    "bn_mode": st.sampled_from(["train", "eval", "TRAIN"]),
    "lr": st.none() | st.floats(),
    "local_steps": _SMALL,
    "local_epochs": _SMALL,
    "model_id": st.sampled_from(["dlg_lenet", "convnet", "resnet18", "nonexistent", ""]),
    "model_kwargs": st.dictionaries(st.sampled_from(["in_channels", "image_size", "init_seed", "width", "stem",
                                                     "bogus"]), st.integers(-2, 40) | st.text(max_size=3), max_size=3),
    "labels_shared": _GARBAGE,
    "defenses": _GARBAGE,
    "seed": _GARBAGE,
    "round": _GARBAGE,
    "unknown_key": _GARBAGE,
}
_META_EDITS = st.dictionaries(st.sampled_from(sorted(_META_VALUES)), _GARBAGE, max_size=1) | st.fixed_dictionaries(
    {}, optional={k: v for k, v in _META_VALUES.items()})


def _downstream(update: ClientUpdate) -> None:
    """What ``privbox attack`` does with a loaded update: rebuild, check, one iteration."""
    model = build_model_for_update(update)
    config = get_preset("idlg" if update.labels is None else "dlg", iterations=1, lbfgs_max_iter=2, progress=False)
    if update.kind == "weight_delta":
        return  # the FedAvg engine needs local hyper-parameters; its checks are covered elsewhere
    recon = GradientInversion(config).run(model, update)
    assert np.all(np.isfinite(recon.images)) and recon.images.shape[0] == update.meta.num_samples


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return saved_update(tmp_path_factory.mktemp("fuzz_updates"))


def _meta_case(source, tmp_path, edits):
    def edit(header):
        header["meta"].update(edits)
        return header

    path = tamper(source, tmp_path / "meta.safetensors", header_edit=edit)
    update = works_or_privbox_error("update metadata", lambda: ClientUpdate.load(path))
    if update is not None:
        works_or_privbox_error("update metadata downstream", lambda: _downstream(update))


_DTYPES = st.sampled_from(["float32", "float64", "float16", "int64", "int32", "int8", "uint8", "bool"])
_VALUES = st.floats(allow_nan=True, allow_infinity=True, width=32) | st.sampled_from([0.0, 1e-3, -1e-3, 1e20, 1e38])


@st.composite
def _tensor_edits(draw):
    update, _ = tiny_update()
    names = update.names()
    target = draw(st.sampled_from([*names, "labels", "global/" + names[0]]))
    reference = update.labels if target == "labels" else update.tensors[target.split("/")[-1]]
    shape = draw(st.sampled_from([tuple(reference.shape), (1,), (3,), (2, 2), tuple(reference.shape[:-1]) or (1,), ()]))
    dtype = draw(_DTYPES)
    fill = draw(st.sampled_from(["reference", "constant", "random"]))
    value = draw(_VALUES)
    seed = draw(st.integers(0, 2 ** 16))
    return target, shape, dtype, fill, value, seed


def _make(reference, shape, dtype, fill, value, seed):
    rng = np.random.default_rng(seed)
    if fill == "reference" and tuple(shape) == tuple(reference.shape):
        base = reference.astype(np.float64)
    elif fill == "constant":
        base = np.full(shape, value if math.isfinite(value) else value, dtype=np.float64)
    else:
        base = rng.normal(size=shape) * (abs(value) if math.isfinite(value) and value else 1.0)
    with np.errstate(all="ignore"):
        return base.astype(dtype)


def _tensor_case(source, tmp_path, edit):
    target, shape, dtype, fill, value, seed = edit
    update, _ = tiny_update()

    def change(tensors):
        key = target if target in ("labels",) or target.startswith("global/") else f"update/{target}"
        reference = tensors[key]
        tensors[key] = _make(reference, shape, dtype, fill, value, seed)

    try:
        path = tamper(source, tmp_path / "tensors.safetensors", tensor_edit=change)
    except Exception:  # safetensors itself refuses some arrays (e.g. 0-d); nothing to fuzz then
        return
    loaded = works_or_privbox_error("update tensors", lambda: ClientUpdate.load(path))
    if loaded is not None:
        works_or_privbox_error("update tensors downstream", lambda: _downstream(loaded))
    # The same arrays through the Python API.
    tensors = dict(update.tensors)
    labels = update.labels
    if target == "labels":
        labels = _make(update.labels, shape, dtype, fill, value, seed)
    elif not target.startswith("global/"):
        tensors[target] = _make(update.tensors[target], shape, dtype, fill, value, seed)
    built = works_or_privbox_error("update python api", lambda: ClientUpdate(tensors=tensors, meta=UpdateMeta(
        **{**update.meta.__dict__}), labels=labels))
    if built is not None:
        works_or_privbox_error("update python api downstream", lambda: _downstream(built))


@fuzz_settings(FAST_EXAMPLES)
@given(edits=_META_EDITS)
def test_update_metadata(source, tmp_path, edits):
    _meta_case(source, tmp_path, edits)


@fuzz_settings(FAST_EXAMPLES)
@given(edit=_tensor_edits())
def test_update_tensors(source, tmp_path, edit):
    _tensor_case(source, tmp_path, edit)


@pytest.mark.slow
@fuzz_settings(SLOW_EXAMPLES)
@given(edits=_META_EDITS)
def test_update_metadata_sweep(source, tmp_path, edits):
    _meta_case(source, tmp_path, edits)


@pytest.mark.slow
@fuzz_settings(SLOW_EXAMPLES)
@given(edit=_tensor_edits())
def test_update_tensors_sweep(source, tmp_path, edit):
    _tensor_case(source, tmp_path, edit)
