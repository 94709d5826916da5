"""Evaluate a ``paddle.nn.Layer`` with explicit parameter tensors (a ``functional_call`` for Paddle).

Unrolled, differentiable local training (the FedAvg update inversion of Hatamizadeh et al.,
IEEE TMI 2023, and Geiping et al.'s inversefed FedAvg reconstructor, NeurIPS 2020) needs the
model's forward at weights θ_s that are *functions* of the dummy data:
θ_s = θ_{s−1} − η·∇_θ ℓ(f_{θ_{s−1}}(x̂_s)). Paddle 3.x has no ``functional_call``, and copying
values into the parameters (``set_value``) cuts the graph.

:func:`substitute_parameters` is the generic mechanism: for the duration of a ``with`` block it
replaces entries of each sublayer's ``_parameters`` table by the given tensors, which may be
non-leaf tensors carrying a graph. ``paddle.nn.Layer.__getattr__`` reads that table, so every
layer that reaches its weights through attribute access (``self.weight``, ``self._mean``: all
``paddle.nn`` layers, the ``paddle.vision`` residual blocks and the privbox layers) computes with
the substituted tensors, and gradients flow back into them (checked against finite differences
for a two-step unroll through Conv2D, train-mode BatchNorm2D, ReLU, max-pool and Linear,
tests/attacks/test_fedavg.py). The original parameters are restored on exit, even on error.

Substitute BN running statistics with *clones*: train-mode ``F.batch_norm`` updates the running
statistics it is given in place (``shared/reference/PADDLE.md`` §5); with clones the model's own
buffers stay untouched and the clones end up holding the simulated EMA.

Paddle 3.3 pitfall (found while building this; CPU, base and prim mode): the double backward of
``conv2d`` drops the path through the upstream gradient when the convolution's *input* gradient
was not requested in the first-order ``paddle.grad`` call. ``grad(ℓ, params, create_graph=True)``
followed by ``grad(D(g), x)`` is then wrong for the first convolution (relative error 0.2–3 in
our finite-difference checks); adding the input to the first-order call,
``grad(ℓ, params + [x], create_graph=True)[:len(params)]``, makes it exact (≤ 1e-6). Use
:func:`parameter_gradients`, which does this.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Mapping, Optional, Sequence

import paddle
import paddle.nn as nn


def _owners(model: nn.Layer) -> dict[str, tuple[nn.Layer, str]]:
    """Map every parameter name of ``model`` (as ``named_parameters`` spells it) to (layer, attribute)."""
    owners: dict[str, tuple[nn.Layer, str]] = {}
    for prefix, layer in model.named_sublayers(include_self=True):
        for attr, param in layer._parameters.items():
            if param is None:
                continue
            owners[f"{prefix}.{attr}" if prefix else attr] = (layer, attr)
    return owners


@contextlib.contextmanager
def substitute_parameters(model: nn.Layer, values: Mapping[str, paddle.Tensor]) -> Iterator[nn.Layer]:
    """Temporarily evaluate ``model`` with ``values`` in place of the named parameters.

    Args:
        model: any ``paddle.nn.Layer``.
        values: tensors keyed by parameter name (``model.named_parameters()`` names, BN running
            statistics included). Names not given keep their own parameter. Shapes must match.

    Yields:
        ``model`` itself; call it inside the block.

    Raises:
        KeyError: a name is not a parameter of ``model``.
        ValueError: a shape differs from the parameter's shape.
    """
    owners = _owners(model)
    unknown = sorted(set(values) - set(owners))
    if unknown:
        raise KeyError(f"not parameters of {type(model).__name__}: {unknown[:5]}{' …' if len(unknown) > 5 else ''}")
    saved: list[tuple[nn.Layer, str, paddle.Tensor]] = []
    for name, value in values.items():
        layer, attr = owners[name]
        original = layer._parameters[attr]
        if list(value.shape) != list(original.shape):
            raise ValueError(f"{name}: substitute has shape {list(value.shape)}, the parameter {list(original.shape)}")
        saved.append((layer, attr, original))
    try:
        for (layer, attr, _), value in zip(saved, values.values()):
            layer._parameters[attr] = value
        yield model
    finally:
        for layer, attr, original in reversed(saved):
            layer._parameters[attr] = original


def functional_call(model: nn.Layer, values: Mapping[str, paddle.Tensor], *args, **kwargs):
    """``model(*args, **kwargs)`` evaluated with ``values`` substituted (see :func:`substitute_parameters`)."""
    with substitute_parameters(model, values):
        return model(*args, **kwargs)


def parameter_gradients(
    loss: paddle.Tensor,
    params: Sequence[paddle.Tensor],
    inputs: Optional[Sequence[paddle.Tensor]] = None,
    create_graph: bool = True,
) -> list[paddle.Tensor]:
    """``paddle.grad(loss, params, create_graph=...)`` that stays correct under double backward.

    The model ``inputs`` that require gradients are added to the first-order call and their
    gradients dropped: this works around Paddle 3.3's ``conv2d`` double backward, which silently
    loses the path through the upstream gradient when the convolution's input gradient was not
    requested (module docstring). ``params`` may be non-leaf tensors (unrolled weights).
    """
    extra = [t for t in (inputs or []) if not t.stop_gradient]
    grads = paddle.grad(loss, list(params) + extra, create_graph=create_graph)
    return list(grads[: len(params)])
