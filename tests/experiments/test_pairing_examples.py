"""Every pairing example runs as its README says: tiny budgets in the default suite; with the
README's command (slow), the table the script prints is the one its README.md and README_cn.md show."""

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ["dgc_vs_dlg", "dpsgd_vs_inverting_gradients", "gaussian_vs_fedavg", "label_defense_vs_e2egi", "ra_vs_e2egi"]
FAST = {"label_defense_vs_e2egi": ["--iterations", "2", "--seeds", "0"]}


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / name / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_runs_with_tiny_budget(name, tmp_path, capsys):
    args = FAST.get(name, ["--iterations", "2", "--seeds", "0", "--no-utility"])
    assert _load(name).main([*args, "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "| none |" in printed and (tmp_path / "matrix.png").exists() and (tmp_path / "grid.png").exists()


def _shown_table(readme: Path):
    """The printed table a README shows (a ``text`` block of table rows), or None."""
    match = re.search(r"```text\n(\|.*?)```", readme.read_text(encoding="utf-8"), re.S)
    return match.group(1).strip() if match else None


WITH_TABLES = [n for n in EXAMPLES if _shown_table(ROOT / "examples" / n / "README.md")]


@pytest.mark.parametrize("name", EXAMPLES)
def test_readmes_show_the_same_table_and_command(name):
    folder = ROOT / "examples" / name
    en, zh = folder / "README.md", folder / "README_cn.md"
    assert _shown_table(en) == _shown_table(zh)
    command = f"python examples/{name}/{name}.py"
    assert command in en.read_text(encoding="utf-8") and command in zh.read_text(encoding="utf-8")


@pytest.mark.slow
@pytest.mark.parametrize("name", WITH_TABLES)
def test_example_prints_the_numbers_its_readme_shows(name, tmp_path, capsys):
    assert _load(name).main(["--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert _shown_table(ROOT / "examples" / name / "README.md") in printed
