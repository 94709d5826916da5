"""measure_utility: seeded, matched training runs on the sample-photograph proxy task."""

import numpy as np
import pytest

from privbox.defenses import DGCCompressor, GaussianPrivacy, TopKPruning, get_privacy_spent
from privbox.defenses.schemes import SCHEMES, real_dp_sgd
from privbox.defenses.utility import ArrayDataset, UtilityCNN, measure_utility, sample_task


@pytest.fixture(scope="module")
def task():
    return sample_task(train_per_image=4, test_per_image=2, size=16, seed=0)


def test_sample_task_is_seeded_and_labelled_by_photograph(task):
    train, test = task
    assert train.images.shape == (84, 3, 16, 16) and test.images.shape == (42, 3, 16, 16)
    assert sorted(set(train.labels.tolist())) == list(range(21))
    assert 0.0 <= train.images.min() and train.images.max() <= 1.0
    again, _ = sample_task(train_per_image=4, test_per_image=2, size=16, seed=0)
    assert np.array_equal(again.images, train.images)
    assert not np.array_equal(train.images[::4][:21], test.images[::2][:21])  # different views
    five, _ = sample_task(num_classes=5, train_per_image=1, test_per_image=1, size=16)
    assert five.labels.tolist() == [i % 5 for i in range(21)]
    assert "proxy" in train.description
    with pytest.raises(ValueError, match="between 2 and 21"):
        sample_task(num_classes=40)


def test_runs_are_matched_and_deterministic(task):
    train, test = task
    kwargs = dict(dataset=train, test_dataset=test, epochs=2, lr=0.05, batch_size=8, seed=1)
    base = measure_utility(None, **kwargs)
    assert base["steps"] == 2 * (84 // 8)
    assert base["defense"] == "none (SGD)" and base["epsilon"] is None and base["model"] == "UtilityCNN"
    assert measure_utility(None, **kwargs)["test_accuracy"] == base["test_accuracy"]
    # pruning nothing is the undefended run: same initialisation, same batches, same lr
    same = measure_utility(TopKPruning(0.0), **kwargs)
    assert same["final_loss"] == pytest.approx(base["final_loss"], rel=1e-5)
    assert same["test_accuracy"] == base["test_accuracy"]


def test_defense_objects_are_copied_and_dgc_refuses_double_momentum(task):
    train, test = task
    noise = GaussianPrivacy(sigma0=1.0, seed=0)
    result = measure_utility(noise, dataset=train, test_dataset=test, epochs=1, batch_size=8)
    assert noise.history == [] and "sigma0=1" in result["defense"]
    dgc = DGCCompressor(sparsity=0.8, momentum=0.9)
    with pytest.raises(ValueError, match="momentum"):
        measure_utility(dgc, dataset=train, epochs=1, momentum=0.9)
    out = measure_utility(dgc, dataset=train, test_dataset=test, epochs=1, batch_size=8)
    assert dgc.step_count == 0 and out["defense"] == "DGC(sparsity=0.8, momentum=0.9)"


def test_dp_sgd_reports_epsilon_from_the_accountant(task):
    train, test = task
    result = measure_utility(real_dp_sgd(1.0), dataset=train, test_dataset=test, epochs=1, batch_size=8, delta=1e-5)
    q = 8 / 84
    expected, _ = get_privacy_spent(sample_rate=q, noise_multiplier=1.0, steps=result["steps"], delta=1e-5)
    assert result["epsilon"] == pytest.approx(expected)
    assert result["noise_multiplier"] == 1.0 and result["delta"] == 1e-5


def test_schemes_and_user_datasets(task):
    train, _ = task
    user = ArrayDataset(train.images, train.labels)  # no test set: a seeded 20 % split
    gh = measure_utility(SCHEMES["GH"].replace(shards=2), dataset=user, epochs=1, batch_size=8)
    assert gh["defense"].startswith("Label-based-Defense scheme GH(shards=2")
    assert 0.0 <= gh["test_accuracy"] <= 1.0 and gh["dataset"] == "ArrayDataset"
    from privbox.nn import ConvNet

    bn = measure_utility(SCHEMES["GH"].replace(shards=2), dataset=user, epochs=1, batch_size=8,
                         model_fn=lambda c: ConvNet(c, width=4))  # per-shard BN during training
    assert bn["model"] == "ConvNet" and np.isfinite(bn["final_loss"]) and not bn["diverged"]
    with pytest.raises(ValueError, match="max-pool"):
        measure_utility(SCHEMES["RA"], dataset=user, epochs=1, model_fn=lambda c: UtilityCNN(c, 3, 16))
