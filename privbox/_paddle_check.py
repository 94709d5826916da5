"""Import-time check that a usable PaddlePaddle (3.x) is installed.

privbox does not force a Paddle build on its users (CPU and GPU builds ship the same top-level
``paddle`` package and overwrite each other), so the check lives here instead of in
``install_requires``.
"""

from __future__ import annotations

MIN_PADDLE = (3, 0)

INSTALL_HINT = (
    "Install the CPU build with `pip install \"privbox[cpu]\"` (or `pip install \"paddlepaddle>=3.0\"`), "
    "or a GPU build from Paddle's own index, for example "
    "`python -m pip install paddlepaddle-gpu==3.2.0 -i https://www.paddlepaddle.org.cn/packages/stable/cu126/`."
)


class PaddleMissingError(ImportError):
    """Raised when PaddlePaddle is absent or older than 3.0."""


def parse_version(text: str) -> tuple[int, ...]:
    """Return the numeric prefix of a version string, e.g. ``"3.3.1"`` -> ``(3, 3, 1)``.

    Development builds report ``"0.0.0"``; they are treated as new enough.
    """
    import re

    parts: list[int] = []
    for piece in text.split("."):
        match = re.match(r"\d+", piece)
        if match is None:
            break
        parts.append(int(match.group()))
        if match.end() != len(piece):
            break
    return tuple(parts)


def check_paddle_version(version: str) -> None:
    """Raise :class:`PaddleMissingError` when ``version`` is older than Paddle 3.0."""
    parsed = parse_version(version)
    if parsed and parsed != (0, 0, 0) and parsed[:2] < MIN_PADDLE:
        raise PaddleMissingError(
            f"privbox needs PaddlePaddle >= 3.0, but paddle {version} is installed. {INSTALL_HINT}"
        )


def require_paddle():
    """Import and return the ``paddle`` module, or raise one actionable error."""
    try:
        import paddle  # noqa: F401
    except ImportError as exc:  # pragma: no cover - exercised through a subprocess test
        raise PaddleMissingError(f"privbox needs PaddlePaddle >= 3.0, which is not installed. {INSTALL_HINT}") from exc
    check_paddle_version(getattr(paddle, "__version__", "0.0.0"))
    return paddle
