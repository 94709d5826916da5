"""One tiny valid update and secret (DLG LeNet, two 8x8 grey images, 4 classes, labels shared)."""

from __future__ import annotations

import functools
from pathlib import Path

from privbox.fl.capture import compute_update
from privbox.data import make_target_batch
from privbox.nn import build_model


@functools.lru_cache(maxsize=1)
def tiny_update():
    batch = make_target_batch(2, num_classes=4, size=8, channels=1, seed=0)
    model = build_model("dlg_lenet", num_classes=4, in_channels=1, image_size=8)
    return compute_update(model, batch.images, batch.labels, [0.5], [0.5], model_id="dlg_lenet",
                          model_kwargs={"in_channels": 1, "image_size": 8}, share_labels=True)


def saved_update(folder: Path) -> Path:
    update, _ = tiny_update()
    return update.save(folder / "update.safetensors")
