"""Importing privbox without a usable Paddle gives one actionable error; the version is single-sourced."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import privbox
from privbox._paddle_check import PaddleMissingError, check_paddle_version, parse_version

ROOT = Path(__file__).resolve().parents[2]


def _import_with_fake_paddle(tmp_path, fake_source):
    fake = tmp_path / "fake"
    fake.mkdir()
    if fake_source is not None:
        (fake / "paddle.py").write_text(fake_source)
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(fake)!r})
        {"sys.modules['paddle'] = None" if fake_source is None else ""}
        try:
            import privbox
        except ImportError as exc:
            print(type(exc).__name__ + ": " + str(exc))
        """
    )
    env_path = str(ROOT)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=env_path).stdout


def test_missing_paddle_says_how_to_install(tmp_path):
    out = _import_with_fake_paddle(tmp_path, None)
    assert "PaddleMissingError" in out and "not installed" in out and 'pip install "privbox[cpu]"' in out


def test_old_paddle_is_refused_with_the_fix(tmp_path):
    out = _import_with_fake_paddle(tmp_path, "__version__ = '2.6.2'\n")
    assert "needs PaddlePaddle >= 3.0, but paddle 2.6.2 is installed" in out
    assert "paddlepaddle-gpu==3.2.0" in out


@pytest.mark.parametrize("text, parsed", [("3.3.1", (3, 3, 1)), ("3.0.0rc1", (3, 0, 0)), ("0.0.0", (0, 0, 0)), ("2.6.2.post1", (2, 6, 2))])
def test_version_parsing(text, parsed):
    assert parse_version(text) == parsed


def test_dev_builds_and_3x_pass():
    check_paddle_version("0.0.0")
    check_paddle_version("3.0.0")
    with pytest.raises(PaddleMissingError):
        check_paddle_version("2.5.0")


def test_version_is_single_sourced():
    setup_text = (ROOT / "setup.py").read_text()
    assert "_version.py" in setup_text
    assert privbox.__version__.count(".") == 2


def test_lazy_public_api():
    assert privbox.DLG.__name__ == "DLG" and privbox.ClientUpdate.__name__ == "ClientUpdate"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        privbox.nope  # noqa: B018
