"""privbox's error types: one base class, one kind per boundary, one message style.

Every message says *what* is wrong, *where* (file and key, config key or ``-o`` override, argument)
and *how to fix it*. All derive from :class:`PrivboxError`, which derives from ``ValueError`` so
that callers catching ``ValueError`` keep working. The CLI turns them into exit code 2 with no
traceback (``--debug`` shows it).
"""

from __future__ import annotations

from typing import Optional

__all__ = [
    "PrivboxError",
    "UpdateFileError",
    "ModelMismatchError",
    "MissingCapabilityError",
    "ConfigError",
    "CheckpointError",
    "InputError",
    "format_error",
]


def format_error(what: str, where: Optional[str] = None, fix: Optional[str] = None) -> str:
    """The one message style: ``<where>: <what>. <fix>`` (each part optional but ``what``)."""
    text = what.rstrip(".")
    if where:
        text = f"{where}: {text}"
    text += "."
    if fix:
        text += " " + fix.rstrip(".") + "."
    return text


class PrivboxError(ValueError):
    """Base class of every error privbox raises on bad input."""

    def __init__(self, what: str, where: Optional[str] = None, fix: Optional[str] = None) -> None:
        self.what, self.where, self.fix = what, where, fix
        super().__init__(format_error(what, where, fix) if (where or fix) else what)


class UpdateFileError(PrivboxError):
    """An update/secret/reconstruction/checkpoint file is unreadable, malformed or not safetensors."""


class ModelMismatchError(PrivboxError):
    """The model given to an attack does not match the one the update was computed with."""


class MissingCapabilityError(PrivboxError):
    """The update does not carry what the attack's threat model needs (labels, BN statistics, ...)."""


class ConfigError(PrivboxError):
    """An invalid config value, unknown key or bad ``-o`` override."""


class CheckpointError(PrivboxError):
    """A resume checkpoint or run state is missing, tampered with or from another run."""


class InputError(PrivboxError):
    """Bad input to a Python API entry point or CLI argument (shapes, ranges, paths)."""
