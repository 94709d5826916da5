"""Label-based-Defense schemes: pure, RA, DP-SGD, GH, label order, local iterations, dropout."""

import numpy as np
import paddle
import paddle.nn as nn
import pytest

from privbox.analysis import fc_coefficient_system, rank_analysis
from privbox.fl.capture import compute_fedavg_update, compute_update
from privbox.core.images import normalize
from privbox.core.bn import state_snapshot
from privbox.data import load_samples
from privbox.defenses import batch_clip_noise
from privbox.defenses.schemes import (
    SCHEMES,
    DefenseScheme,
    SchemeUpdate,
    build_attack_model,
    capture_with_scheme,
    check_attack_model,
    get_scheme,
    real_dp_sgd,
    scheme_gradient,
    stem_maxpool_kernel,
)
from privbox.nn import ConvNet, DLGLeNet, resnet18
from privbox.nn.layers import Dropout
from privbox.core.update import ModelMismatchError

MEAN, STD = [0.5] * 3, [0.5] * 3


@pytest.fixture(scope="module")
def pictures():
    return load_samples(16, 3)[:8]


def _lenet(seed=0):
    return DLGLeNet(num_classes=6, image_size=16, init_seed=seed)


def _bn_net(seed=0):
    paddle.seed(seed)
    return ConvNet(num_classes=6, width=4)


def _close(a, b, tol=1e-5):
    return all(np.allclose(a[k], b[k], atol=tol, rtol=1e-4) for k in a) and set(a) == set(b)


def test_pure_equals_compute_update_and_records_the_scheme(pictures):
    labels = np.array([0, 1, 2, 3, 4, 5, 0, 1])
    model = _lenet()
    plain, _ = compute_update(model, pictures, labels, MEAN, STD, model_id="dlg_lenet")
    update, secret = capture_with_scheme(SCHEMES["pure"], model, pictures, labels, MEAN, STD, model_id="dlg_lenet")
    assert isinstance(update, SchemeUpdate)
    assert all(np.array_equal(update.tensors[k], plain.tensors[k]) for k in plain.tensors)
    assert update.meta.defenses == ["Label-based-Defense scheme pure()"]
    assert np.array_equal(secret.images, pictures) and secret.labels.tolist() == labels.tolist()


def test_scheme_gradient_restores_the_model(pictures):
    model = _bn_net()
    before = state_snapshot(model)
    scheme = SCHEMES["GH"].replace(shards=2, local_iterations=2, label_order="grouped")
    scheme_gradient(scheme, model, pictures, np.array([3, 1, 3, 1, 0, 0, 2, 2]), MEAN, STD)
    after = state_snapshot(model)
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert model.training  # flags restored (ConvNet is built in train mode)


def test_gh_per_shard_bn_differs_from_full_batch_and_is_the_mean_of_shard_gradients(pictures):
    labels = np.array([0, 1, 2, 3, 4, 5, 0, 1])
    gh = SCHEMES["GH"].replace(shards=2)
    update, _ = capture_with_scheme(gh, _bn_net(), pictures, labels, MEAN, STD)
    full, _ = compute_update(_bn_net(), pictures, labels, MEAN, STD)
    shard_a, _ = compute_update(_bn_net(), pictures[:4], labels[:4], MEAN, STD)
    shard_b, _ = compute_update(_bn_net(), pictures[4:], labels[4:], MEAN, STD)
    mean_of_shards = {k: (shard_a.tensors[k] + shard_b.tensors[k]) / 2 for k in full.tensors}
    assert _close(update.tensors, mean_of_shards, tol=1e-6)
    difference = max(float(np.abs(update.tensors[k] - full.tensors[k]).max()) for k in full.tensors)
    assert difference > 1e-3, difference
    # BN running statistics continue from device 0 (shard a), as DDP's broadcast buffers do
    assert _close(update.buffer_delta, shard_a.buffer_delta, tol=1e-7)
    # without BN, per-shard forwards change nothing: GH = pure up to float round-off
    lenet_gh, _ = capture_with_scheme(gh, _lenet(), pictures, labels, MEAN, STD)
    lenet_full, _ = compute_update(_lenet(), pictures, labels, MEAN, STD)
    assert _close(lenet_gh.tensors, lenet_full.tensors, tol=1e-6)


def test_grouped_label_order_makes_each_shard_label_homogeneous(pictures):
    labels = np.array([2, 0, 1, 3, 0, 2, 3, 1])  # 4 classes x 2, shuffled
    grouped = DefenseScheme("GH-grouped", shards=4, label_order="grouped")
    plan = grouped.partition(labels)
    assert [sorted(set(s)) for step in plan.shard_labels(labels) for s in step] == [[0], [1], [2], [3]]
    as_is = grouped.replace(label_order="as_is").partition(labels)
    assert any(len(set(s)) > 1 for step in as_is.shard_labels(labels) for s in step)
    # local iterations are split the same way
    steps = DefenseScheme("E4", local_iterations=4, label_order="grouped").partition(labels)
    assert [len(set(s)) for step in steps.shard_labels(labels) for s in step] == [1, 1, 1, 1]
    # the capture permutes images and labels together and never overwrites a label
    names = [f"img{i}" for i in range(8)]
    update, secret = capture_with_scheme(grouped, _lenet(), pictures, labels, MEAN, STD, share_labels=True, names=names)
    assert secret.labels.tolist() == sorted(labels.tolist()) == update.labels.tolist()
    assert np.array_equal(secret.images, pictures[plan.order])
    assert secret.names == [names[i] for i in plan.order]


def test_coefficient_matrix_rank_drops_with_label_repetition():
    """§7.2: A = Δ ⊗ I; same-label columns of Δ are nearly equal, so the numerical rank falls."""
    model = DLGLeNet(num_classes=10, image_size=8, init_seed=0)  # rank(Δ) ≤ C − 1 = 9 ≥ B; 48 features
    with paddle.no_grad():
        features = model.body(normalize(load_samples(8, 3)[:8], MEAN, STD)).reshape([8, -1]).numpy()
    w, b = model.fc.weight.numpy(), model.fc.bias.numpy()
    ranks = {}
    for distinct, labels in ((8, range(8)), (4, [0, 0, 1, 1, 2, 2, 3, 3]), (2, [0] * 4 + [1] * 4), (1, [3] * 8)):
        ranks[distinct] = fc_coefficient_system(features, w, b, np.array(list(labels)), rtol=1e-2).rank_a
    n_unknowns = 8 * features.shape[1]
    assert ranks[8] == n_unknowns
    assert ranks[8] > ranks[4] > ranks[2] > ranks[1], ranks  # measured: 384 > 240 > 192 > 144


def test_ra_scheme_wires_the_kernel_into_victim_attacker_and_rank_analysis():
    ra = SCHEMES["RA"]
    assert ra.model_kwargs({"stem": "imagenet"}) == {"stem": "imagenet", "maxpool_kernel": 19}
    paddle.seed(0)
    model = ra.build_model("resnet18", num_classes=10, stem="imagenet", width=8)
    assert stem_maxpool_kernel(model) == 19
    stock = rank_analysis(resnet18(num_classes=10, stem="imagenet", width=8), [3, 224, 224])
    defended = rank_analysis(model, [3, 224, 224])
    pool = {r.name: r for r in defended.layers}["maxpool"]
    assert pool.n_z == 8 * 48 * 48 and {r.name: r for r in stock.layers}["maxpool"].n_z == 8 * 56 * 56
    assert defended.ra_i > stock.ra_i  # at width 64 the golden values are −50 176 and +3072 (tests/defenses/test_rank_analysis.py)
    with pytest.raises(ValueError, match="maxpool_kernel=19"):
        ra.model_kwargs({"maxpool_kernel": 3})


def test_ra_capture_records_model_kwargs_and_refuses_a_stock_attacker(pictures):
    ra = SCHEMES["RA"]
    images = load_samples(64, 3)[:2]
    kwargs = {"stem": "imagenet", "width": 4}
    paddle.seed(0)
    stock = resnet18(num_classes=10, **kwargs)
    with pytest.raises(ValueError, match="kernel 19"):
        capture_with_scheme(ra, stock, images, np.array([1, 2]), MEAN, STD, model_id="resnet18", model_kwargs=kwargs)
    victim = ra.apply_to_model(stock)
    update, _ = capture_with_scheme(ra, victim, images, np.array([1, 2]), MEAN, STD, bn_mode="eval",
                                    model_id="resnet18", model_kwargs=kwargs)
    assert update.meta.model_kwargs == {"stem": "imagenet", "width": 4, "maxpool_kernel": 19}
    assert "RA(maxpool_kernel=19" in update.meta.defenses[0]
    rebuilt = build_attack_model(update)
    assert stem_maxpool_kernel(rebuilt) == 19
    update.check_model(rebuilt)  # names, shapes and kernel agree
    paddle.seed(0)
    wrong = resnet18(num_classes=10, **kwargs)  # same parameters, stock kernel 3
    with pytest.raises(ModelMismatchError, match="max-pool kernel 19"):
        update.check_model(wrong)  # what every attack calls before it starts
    with pytest.raises(ModelMismatchError):
        check_attack_model(wrong, update)


def test_repository_dp_sgd_is_batch_clip_noise_of_the_gradient(pictures):
    labels = np.arange(8) % 6
    scheme = SCHEMES["DP-SGD"]
    update, _ = capture_with_scheme(scheme, _lenet(), pictures, labels, MEAN, STD, seed=7)
    plain, _ = compute_update(_lenet(), pictures, labels, MEAN, STD)
    expected = batch_clip_noise(plain.tensors, 1.0, 0.01, seed=np.random.default_rng(7))
    assert _close(update.tensors, expected, tol=1e-7)
    assert "no DP guarantee" in update.meta.defenses[0]
    again, _ = capture_with_scheme(scheme, _lenet(), pictures, labels, MEAN, STD, seed=7)
    assert all(np.array_equal(update.tensors[k], again.tensors[k]) for k in update.tensors)


def test_real_dp_sgd_clips_each_sample(pictures):
    labels = np.array([0, 1, 2, 3])
    clip = 0.5
    update, _ = capture_with_scheme(real_dp_sgd(0.0, max_grad_norm=clip), _lenet(), pictures[:4], labels, MEAN, STD)
    clipped = []
    for i in range(4):
        g, _ = compute_update(_lenet(), pictures[i : i + 1], labels[i : i + 1], MEAN, STD)
        norm = np.sqrt(sum(float((v.astype(np.float64) ** 2).sum()) for v in g.tensors.values()))
        clipped.append({k: v * min(1.0, clip / (norm + 1e-6)) for k, v in g.tensors.items()})
    expected = {k: np.mean([c[k] for c in clipped], axis=0) for k in clipped[0]}
    assert _close(update.tensors, expected, tol=1e-6)
    with pytest.raises(ValueError, match="per-sample"):
        real_dp_sgd(1.0).replace(shards=2)
    with pytest.raises(ValueError, match="BatchNorm"):
        capture_with_scheme(real_dp_sgd(1.0), _bn_net(), pictures[:4], labels, MEAN, STD)


def test_local_iterations_share_the_fedavg_pseudo_gradient(pictures):
    labels = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    scheme = DefenseScheme("E4", local_iterations=4, local_lr=0.1)
    update, _ = capture_with_scheme(scheme, _lenet(), pictures, labels, MEAN, STD)
    delta, _ = compute_fedavg_update(_lenet(), pictures, labels, MEAN, STD, lr=0.1, batch_size=2)
    assert delta.meta.local_steps == 4
    assert _close(update.tensors, delta.gradients(), tol=2e-5)  # (θ0 − θ_E)/(lr·E)
    assert update.kind == "gradient"  # what the Label-based-Defense attacker matches at θ0
    with pytest.raises(ValueError, match="divisible by 4"):
        capture_with_scheme(scheme, _lenet(), pictures[:6], labels[:6], MEAN, STD)


def test_dropout_setting():
    paddle.seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 32), nn.ReLU(), Dropout(0.5), nn.Linear(32, 4))
    images = load_samples(16, 3)[:4]
    labels = np.array([0, 1, 2, 3])
    on = DefenseScheme("dropout", dropout=True)
    a, _ = capture_with_scheme(on, model, images, labels, seed=1)
    b, _ = capture_with_scheme(on, model, images, labels, seed=1)
    c, _ = capture_with_scheme(on, model, images, labels, seed=2)
    assert all(np.array_equal(a.tensors[k], b.tensors[k]) for k in a.tensors)  # seeded mask
    assert not all(np.allclose(a.tensors[k], c.tensors[k]) for k in a.tensors)  # another mask
    off_1, _ = capture_with_scheme(on.replace(dropout=False), model, images, labels, seed=1)
    eval_update, _ = compute_update(model, images, labels, bn_mode="eval")
    assert _close(off_1.tensors, eval_update.tensors, tol=1e-7)
    assert model[3].p == 0.5  # rate restored
    with pytest.raises(ValueError, match="bn_mode='train'"):
        capture_with_scheme(on, model, images, labels, bn_mode="eval")
    with pytest.warns(UserWarning, match="no Dropout layer"):
        capture_with_scheme(on, _lenet(), images, labels)


def test_schemes_compose_and_validate():
    both = get_scheme("RA+GH")
    assert (both.name, both.maxpool_kernel, both.shards, both.batch_size) == ("RA+GH", 19, 4, 384)
    assert SCHEMES["pure"] + SCHEMES["GH"] == SCHEMES["GH"]
    with pytest.raises(ValueError, match="shards"):
        SCHEMES["GH"] + DefenseScheme("two", shards=2)
    with pytest.raises(ValueError, match="unknown scheme"):
        get_scheme("RA+XYZ")
    with pytest.raises(ValueError, match="label_order"):
        DefenseScheme("bad", label_order="sorted")
    with pytest.raises(ValueError, match="not both"):
        DefenseScheme("bad", clip_noise_sigma=0.01, dp_noise_multiplier=1.0)
    assert "clip_noise_sigma=0.01" in SCHEMES["DP-SGD"].describe()
    labels = np.repeat(np.arange(10), 20)
    idx = DefenseScheme("rep", batch_size=32, classes_per_batch=4, label_order="grouped").select_batch(labels, seed=0)
    assert len(idx) == 32 and len(set(labels[idx].tolist())) == 4
    assert list(labels[idx]) == sorted(labels[idx])


def test_ra_kernel_check_survives_save_and_load(tmp_path):
    """A loaded RA update still refuses an attack model with the stock max-pool kernel."""
    import numpy as np

    from privbox.fl.capture import compute_update
    from privbox.nn import resnet18
    from privbox.core.update import ClientUpdate, ModelMismatchError

    images = np.random.default_rng(0).random((1, 3, 64, 64)).astype(np.float32)
    victim = resnet18(num_classes=10, stem="imagenet", maxpool_kernel=19, width=4)
    update, _ = compute_update(victim, images, np.array([1]), bn_mode="eval", model_id="resnet18",
                               model_kwargs={"stem": "imagenet", "maxpool_kernel": 19, "width": 4})
    loaded = ClientUpdate.load(update.save(tmp_path / "ra.safetensors"))
    loaded.check_model(resnet18(num_classes=10, stem="imagenet", maxpool_kernel=19, width=4))
    with pytest.raises(ModelMismatchError, match="stem max-pool kernel 19"):
        loaded.check_model(resnet18(num_classes=10, stem="imagenet", maxpool_kernel=3, width=4))
