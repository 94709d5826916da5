"""`privbox privacy` and `privbox rank` through privbox.cli.main.main."""

import json

import pytest

import privbox.cli.main as cli


@pytest.fixture(autouse=True)
def only_our_commands(monkeypatch):
    # keep these tests independent of the other subcommands' modules
    monkeypatch.setattr(cli, "SUBCOMMANDS", ("privacy", "rank"))


def run(capsys, *argv):
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_privacy_epsilon(capsys):
    code, out, _ = run(capsys, "privacy", "--noise-multiplier", "1.5", "--sample-rate", "0.04", "--epochs", "90", "--delta", "1e-5")
    assert code == 0
    assert "epsilon: 7.329111" in out and "optimal alpha: 3.9" in out and "steps: 2250" in out


def test_privacy_json_and_classic(capsys):
    code, out, _ = run(capsys, "privacy", "--noise-multiplier", "4", "--sample-rate", "0.01", "--epochs", "100", "--conversion", "classic", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["epsilon"] == pytest.approx(1.2586, abs=1e-3) and result["steps"] == 10000


def test_privacy_search_sigma(capsys):
    code, out, _ = run(capsys, "privacy", "--target-epsilon", "8", "--sample-rate", "0.04", "--steps", "2000")
    assert code == 0 and "noise multiplier: 1.356201172" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--noise-multiplier", "1", "--sample-rate", "1.5", "--steps", "10"], "--sample-rate"),
        (["--noise-multiplier", "1", "--sample-rate", "0.1", "--steps", "10", "--delta", "2"], "--delta"),
        (["--noise-multiplier", "-1", "--sample-rate", "0.1", "--steps", "10"], "--noise-multiplier"),
        (["--target-epsilon", "0", "--sample-rate", "0.1", "--steps", "10"], "--target-epsilon"),
    ],
)
def test_privacy_bad_values(capsys, argv, message):
    code, _, err = run(capsys, "privacy", *argv)
    assert code == 2 and message in err and "error" in err


def test_privacy_missing_arguments_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["privacy", "--noise-multiplier", "1", "--sample-rate", "0.1"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        cli.main(["privacy", "--noise-multiplier", "1", "--target-epsilon", "2", "--sample-rate", "0.1", "--steps", "3"])


def test_rank_resnet18_ra_scheme(capsys):
    code, out, _ = run(capsys, "rank", "--model", "resnet18", "--input-shape", "3,224,224", "--batch-size", "8", "--maxpool-kernel", "19")
    assert code == 0 and "RA-i: 24576" in out and "maxpool" in out


def test_rank_lenet_table_and_json(capsys):
    code, out, _ = run(capsys, "rank", "--model", "lenet", "--input-shape", "1,28,28", "--per-layer")
    assert code == 0 and "RA-i: -392" in out and "features.2" in out
    code, out, _ = run(capsys, "rank", "--model", "lenet", "--input-shape", "1x28x28", "--json", "--batch-size", "2")
    assert json.loads(out)["ra_i"] == -784


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model", "lenet", "--input-shape", "1,28"], "--input-shape"),
        (["--model", "lenet", "--input-shape", "a,b,c"], "--input-shape"),
        (["--model", "lenet", "--input-shape", "1,28,28", "--batch-size", "0"], "--batch-size"),
        (["--model", "lenet", "--input-shape", "1,4,4"], "does not fit"),
        (["--model", "resnet18", "--input-shape", "3,16,16", "--maxpool-kernel", "19"], "does not fit"),
    ],
)
def test_rank_bad_values(capsys, argv, message):
    code, _, err = run(capsys, "rank", *argv)
    assert code == 2 and message in err


def test_rank_unknown_model_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["rank", "--model", "alexnet", "--input-shape", "3,224,224"])
    assert exc.value.code == 2
