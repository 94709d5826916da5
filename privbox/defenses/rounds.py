"""One FedSGD client over several rounds with a stateful update defense (DGC: Lin et al., ICLR 2018).

DGC keeps its momentum and residual across rounds, so the update of round t is what DGC emits at
step t, computed at the model θ_t the server broadcast: the observation an attacker of round t
gets. Each round is one round of the one client (:class:`privbox.fl.client.Client`).
"""

from __future__ import annotations

from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np
import paddle
import paddle.nn as nn

from ..core.update import ClientUpdate, Secret
from .transforms import UpdateDefense

__all__ = ["run_defended_rounds"]


def run_defended_rounds(
    model: nn.Layer,
    batches: Iterable[Tuple[np.ndarray, np.ndarray]],
    defense: UpdateDefense,
    lr: float,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    bn_mode: str = "train",
    model_id: str = "custom",
    model_kwargs: Optional[dict] = None,
    share_labels: bool = False,
    seed: Optional[int] = None,
) -> List[Tuple[ClientUpdate, Secret]]:
    """One FedSGD client over several rounds with a (stateful) update defense.

    Round t: the client computes its gradient g_t on batch t at the current model θ_t, sends
    ĝ_t = ``defense.apply(g_t, step=t)`` (through :func:`~privbox.defenses.apply.defend_update`),
    and the server applies plain SGD θ_{t+1} = θ_t − lr·ĝ_t. With a
    :class:`~privbox.defenses.DGCCompressor` this is DGC training as in Lin et al. (ICLR 2018):
    the momentum is inside the emitted values, so the final step is plain SGD; ĝ_t for t > 0
    mixes delayed, momentum-corrected residuals of earlier batches into the values of batch t.

    ``model`` is trained in place (it ends at θ_T); each returned update carries its own θ_t as
    ``global_state``, which is what the attacker of round t knows. BN running statistics follow
    the client's own forward passes (a defended ``buffer_delta`` is what is *sent*, not applied).

    Args:
        model: the global model θ_0.
        batches: ``(images, labels)`` per round (pixels in [0, 1], ``[B, C, H, W]``).
        defense: the update defense, reused across rounds (its state carries over).
        lr: server learning rate of the plain SGD step.
        mean, std, bn_mode, model_id, model_kwargs, share_labels, seed: as in
            :func:`privbox.fl.capture.compute_update`.

    Returns:
        ``[(defended_update_t, secret_t), ...]`` in round order.
    """
    from ..fl.client import Client
    from ..fl.spec import ClientSpec
    from ..fl.step import sgd_rule
    from ..nn.convert import trainable_parameters

    if not (isinstance(lr, (int, float)) and np.isfinite(lr) and lr > 0):
        raise ValueError(f"run_defended_rounds: lr must be a positive number, got {lr!r}")
    client: Optional[Client] = None
    results: List[Tuple[ClientUpdate, Secret]] = []
    named = dict(trainable_parameters(model))
    live = model.state_dict()
    for t, (images, labels) in enumerate(batches):
        if client is None:
            spec = ClientSpec.for_batch(
                images, model=model_id, model_kwargs=dict(model_kwargs or {}), num_classes=None, mean=mean, std=std,
                bn_mode=bn_mode, share="gradient", include_labels=share_labels, seed=0 if seed is None else int(seed),
            )
            client = Client(spec, model=model, defenses=[defense])
        defended, secret = client.run_round(round_index=t, batch=(images, labels))
        defended.meta.seed = seed
        with paddle.no_grad():
            for name, value in defended.tensors.items():
                param = named[name]
                param.set_value(sgd_rule(param, paddle.to_tensor(value, dtype=param.dtype), float(lr))[0])
            for key, change in (client.last_result.buffer_delta or {}).items():
                live[key].set_value(live[key] + paddle.to_tensor(change, dtype=live[key].dtype))
        results.append((defended, secret))
    if not results:
        raise ValueError("run_defended_rounds: no batches given")
    return results
