"""Read a matrix file: a path, or the name of a packaged config (``matrix``, ``matrix_demo``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

from ..core.errors import ConfigError
from .spec import MatrixSpec

__all__ = ["CONFIG_DIR", "load_matrix_spec"]

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def _resolve(source: Union[str, os.PathLike]) -> Path:
    path = Path(source)
    if path.is_file():
        return path
    packaged = CONFIG_DIR / f"{Path(str(source)).stem}.yaml"
    if path.suffix in ("", ".yaml", ".yml") and packaged.is_file() and not path.parent.name:
        return packaged
    names = sorted(p.stem for p in CONFIG_DIR.glob("matrix*.yaml"))
    raise ConfigError(f"no matrix file {str(source)!r}", where="matrix -c",
                      fix=f"give a YAML path or a packaged name ({', '.join(names)})")


def load_matrix_spec(source: Union[str, os.PathLike, dict] = "matrix") -> MatrixSpec:
    """The :class:`MatrixSpec` of a YAML file, a packaged config name, or a mapping."""
    if isinstance(source, dict):
        return MatrixSpec.from_dict(source)
    import yaml

    path = _resolve(source)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML ({exc})", where="matrix -c", fix="fix the YAML syntax") from None
    return MatrixSpec.from_dict(data)
