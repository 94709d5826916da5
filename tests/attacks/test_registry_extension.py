"""Adding a part is one registry entry in one file: a toy regularizer and a toy defense,
registered here only, run through a YAML config and the CLI (``privbox attack``, ``privbox
capture``), the tuner's search space (the regularizer) and the generated reference, without any
other module being edited."""

import json

import numpy as np

import pytest
import yaml

from privbox.attacks import REGULARIZERS, build_attack
from privbox.attacks.regularizers import Regularizer
from privbox.attacks.tuning import apply_params, search_space, tunable_parameters
from privbox.cli.main import main
from privbox.config import TuneSection, config_reference_markdown, load_config
from privbox.core.errors import ConfigError
from privbox.core.update import ClientUpdate
from privbox.defenses import DEFENSES, UpdateDefense
from privbox.core.registry import Range

from tiny_victim import tiny_capture

CALLS = {"n": 0}


class ToyBrightness(Regularizer):
    """Pull the mean pixel towards ``target`` (a toy prior for this test)."""

    def __init__(self, weight: float, target: float = 0.0) -> None:
        super().__init__(weight)
        self.target = float(target)

    def __call__(self, x):
        CALLS["n"] += 1
        return (x.mean() - self.target) ** 2


@pytest.fixture
def toy_regularizer():
    REGULARIZERS.register("toy_brightness", description="toy: mean pixel towards a target",
                          tunable={"weight": Range(1e-3, 1.0, log=True), "target": Range(-1.0, 1.0)})(ToyBrightness)
    CALLS["n"] = 0
    yield "toy_brightness"
    REGULARIZERS.unregister("toy_brightness")


def test_a_toy_regularizer_runs_from_yaml_through_privbox_attack(toy_regularizer, tmp_path):
    _, update, _ = tiny_capture()
    update.save(tmp_path / "update.safetensors")
    config = {"attack": {"preset": "inverting_gradients", "iterations": 3, "label_strategy": "given",
                         "regularizers": {"tv": 1e-4, "toy_brightness": {"weight": 0.5, "target": 0.2}}},
              "run": {"device": "cpu", "progress": False}}
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(config))
    built = load_config(path).attack.build()
    assert built.regularizers["toy_brightness"] == {"weight": 0.5, "target": 0.2}
    code = main(["attack", "-c", str(path), "--update", str(tmp_path / "update.safetensors"), "--out", str(tmp_path / "out")])
    assert code == 0
    assert CALLS["n"] >= 3  # evaluated in every iteration
    record = json.loads((tmp_path / "out" / "attack.json").read_text())
    assert record["config"]["regularizers"]["toy_brightness"]["target"] == 0.2
    with pytest.raises(ConfigError, match="regularizers.toy_brightness.*valid options are \\['weight', 'target'\\]"):
        build_attack(built.replace(regularizers={"toy_brightness": {"weight": 1.0, "colour": 2}})).run(*tiny_capture()[:2])


def test_a_toy_regularizer_is_in_the_search_space_and_the_reference(toy_regularizer):
    assert {"toy_brightness", "toy_brightness.target"} <= set(tunable_parameters())
    config = build_attack("inverting_gradients").config
    dims = {d.name: d for d in search_space(config, ["lr", "toy_brightness", "toy_brightness.target"])}
    assert (dims["toy_brightness"].low, dims["toy_brightness"].high, dims["toy_brightness"].log) == (1e-3, 1.0, True)
    assert (dims["toy_brightness.target"].low, dims["toy_brightness.target"].high) == (-1.0, 1.0)
    tuned = apply_params(config, {"toy_brightness": 0.25, "toy_brightness.target": 0.5})
    assert tuned.regularizers == {"tv": 1e-4, "toy_brightness": {"weight": 0.25, "target": 0.5}}
    assert TuneSection(params=["lr", "toy_brightness"]).params == ["lr", "toy_brightness"]
    reference = config_reference_markdown()
    row = next(line for line in reference.splitlines() if line.startswith("| `toy_brightness` |"))
    assert "toy: mean pixel towards a target" in row and "`weight` [0.001, 1] log" in row and "`target` [-1, 1]" in row


def test_without_the_entry_nothing_knows_the_toy(toy_regularizer):
    REGULARIZERS.unregister("toy_brightness")
    try:
        assert "toy_brightness" not in tunable_parameters()
        assert "toy_brightness" not in config_reference_markdown()
        with pytest.raises(ConfigError, match="unknown regularizer 'toy_brightness'"):
            load_config(None, ["attack.regularizers={toy_brightness: 1.0}"])
        with pytest.raises(ConfigError, match="unknown parameter 'toy_brightness'"):
            TuneSection(params=["toy_brightness"])
    finally:
        REGULARIZERS.register("toy_brightness")(ToyBrightness)


# ------------------------------------------------------------------------------ a toy defense
class ToyQuantize(UpdateDefense):
    """Round every sent value to a multiple of ``step`` (a toy defense for this test)."""

    def __init__(self, step: float) -> None:
        self.step = float(step)

    def apply(self, update, step=0, ctx=None):
        return {k: np.round(np.asarray(v) / self.step) * self.step for k, v in update.items()}

    def describe(self):
        return f"toy quantize {self.step}"


@pytest.fixture
def toy_defense():
    DEFENSES.add("toy_quantize", lambda params: ToyQuantize(**params), kind="update_transform",
                 description="toy: round the update to a grid", tunable={"step": Range(1e-4, 0.1, log=True)})
    yield "toy_quantize"
    DEFENSES.unregister("toy_quantize")


def test_a_toy_defense_runs_from_yaml_through_privbox_capture_and_is_in_the_reference(toy_defense, tmp_path):
    path = tmp_path / "capture.yaml"
    path.write_text(yaml.safe_dump({"capture": {"image_size": 16, "defenses": [{"name": "toy_quantize", "params": {"step": 0.01}}]},
                                    "run": {"device": "cpu"}}))
    assert main(["capture", "-c", str(path), "--out", str(tmp_path / "defended")]) == 0
    assert main(["capture", "-c", str(path), "-o", "capture.defenses=[]", "--out", str(tmp_path / "plain")]) == 0
    defended = ClientUpdate.load(tmp_path / "defended" / "update.safetensors")
    plain = ClientUpdate.load(tmp_path / "plain" / "update.safetensors")
    for name, value in defended.tensors.items():
        np.testing.assert_allclose(value, np.round(plain.tensors[name] / 0.01) * 0.01, atol=1e-6)
    assert not all(np.allclose(v, np.round(v / 0.01) * 0.01, atol=1e-6) for v in plain.tensors.values())
    assert "toy quantize 0.01" in defended.meta.defenses
    row = next(line for line in config_reference_markdown().splitlines() if line.startswith("| `toy_quantize` |"))
    assert "toy: round the update to a grid" in row and "`step` [0.0001, 0.1] log" in row and "update_transform" in row
    with pytest.raises(ConfigError, match=r"capture.defenses\[0\]: unknown defense 'toy_quantise'"):
        load_config(path, ["capture.defenses=[toy_quantise]"])
