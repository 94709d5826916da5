"""A tiny BN victim shared by the attack tests: ConvNet width 4, 16x16 RGB, batch of 2."""

import paddle

from privbox.fl.capture import compute_update
from privbox.data import make_target_batch
from privbox.nn import ConvNet

MEAN, STD = [0.5] * 3, [0.5] * 3


def tiny_capture(batch_size=2, seed=1, bn_mode="train", **kwargs):
    """(model, update, secret) for a ConvNet(width=4) client at 16x16, labels and exact BN shared."""
    paddle.seed(seed)
    model = ConvNet(num_classes=10, width=4)
    batch = make_target_batch(batch_size, num_classes=10, size=16, seed=seed)
    options = dict(share_labels=True, share_bn_stats=True, model_id="convnet", model_kwargs={"width": 4})
    options.update(kwargs)
    update, secret = compute_update(model, batch.images, batch.labels, MEAN, STD, bn_mode=bn_mode, **options)
    return model, update, secret
