"""The packaged fl configs load with their own loader, and -o overrides reach nested keys."""

import pytest

pytest.importorskip("privbox.fl.spec", reason="needs the ClientSpec (privbox.fl.spec) of issue 7")

from privbox.config import packaged_configs
from privbox.core.errors import ConfigError
from privbox.fl.config import load_fl_config


def test_packaged_fl_configs_load():
    names = [n for n in packaged_configs() if n.startswith("fl")]
    assert "fl" in names
    for name in names:
        config = load_fl_config(name)
        assert config.clients and config.fl.rounds >= 1
    config = load_fl_config("fl", ["defense.sigma0=10", "audit.attack.iterations=7", "fl.rounds=2"])
    assert config.defense.sigma0 == 10.0 and config.audit.attack["iterations"] == 7 and config.fl.rounds == 2
    specs = config.client_specs()
    assert [(s.num_images, s.batch_size) for s in specs][:2] == [(1, 1), (8, 4)]
    with pytest.raises(ConfigError, match="unknown section"):
        load_fl_config("fl", ["nope.x=1"])
