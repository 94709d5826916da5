"""Run the federated experiment as separate Flower processes (SuperLink, SuperNodes, ``flwr run``).

:func:`write_flower_app` writes a Flower App folder (a ``pyproject.toml`` only: the apps are
:data:`privbox.fl.flower.apps.server_app` and :data:`privbox.fl.flower.apps.client_app`, imported
from the installed privbox) whose run config names the privbox config, its overrides and the
output folder. Then, on one machine or several::

    flower-superlink --insecure                                  # the server machine
    flower-supernode --insecure --superlink HOST:9092 --port 9094 --node-config "partition-id=0"
    flower-supernode --insecure --superlink HOST:9092 --port 9095 --node-config "partition-id=1"
    flwr run APP_DIR privbox --stream                            # FLWR_HOME/config.toml names the SuperLink

Every SuperNode serves one row of the client table (``partition-id``); each needs privbox (and
its data, for a folder dataset) installed where it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ...report.tables import write_text_atomic

__all__ = ["write_flower_app", "write_superlink_connection"]


def _toml_string(text: str) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_flower_app(folder, config: str = "fl", overrides: Sequence[str] = (), out: str = "") -> Path:
    """Write ``folder/pyproject.toml``: a Flower App running privbox's ServerApp and ClientApp."""
    folder = Path(folder)
    text = f"""[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "privbox-fl"
version = "1.0.0"
description = "privbox federated run with a per-round leakage audit"
license = "Apache-2.0"
dependencies = []

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "privbox"

[tool.flwr.app.components]
serverapp = "privbox.fl.flower.apps:server_app"
clientapp = "privbox.fl.flower.apps:client_app"

[tool.flwr.app.config]
privbox-config = {_toml_string(config)}
privbox-overrides = {_toml_string(";".join(overrides))}
privbox-out = {_toml_string(out)}
"""
    return write_text_atomic(folder / "pyproject.toml", text)


def write_superlink_connection(flwr_home, address: str = "127.0.0.1:9093", name: str = "privbox") -> Path:
    """Write ``flwr_home/config.toml`` naming the SuperLink's Control API (insecure: a local or private network)."""
    text = f"""[superlink]
default = {_toml_string(name)}

[superlink.{name}]
address = {_toml_string(address)}
insecure = true
"""
    return write_text_atomic(Path(flwr_home) / "config.toml", text)
