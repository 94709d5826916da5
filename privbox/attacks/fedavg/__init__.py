"""FedAvg weight-update inversion (ALGORITHMS.md §4.7).

Modules: :mod:`.options` (the typed :class:`FedAvgOptions`), :mod:`.simulate` (the differentiable
twin of the client's local training, sharing :mod:`privbox.fl.step` with the client), :mod:`.prior`
(prior images), :mod:`.attack` (:class:`FedAvgInversion`, differentiable mode) and
:mod:`.reference` (the NVIDIA code's effective loop).

A FedAvg client sends ΔW = θ_K − θ_0 after K = E·⌈n/b⌉ local SGD steps, and, when the whole
state dict is shared, the change Δr of its BN running statistics. Two attacks invert it:

- ``mode="differentiable"`` (default): the method of Geiping et al. ("Inverting Gradients",
  NeurIPS 2020; inversefed's FedAvg reconstructor) with the weights of Hatamizadeh et al.
  ("Do Gradient Inversion Attacks Make Federated Learning Unsafe?", IEEE TMI 2023). The client's
  local training is *simulated* on the dummy data x̂ and differentiated through:
  θ_0 ← W_t; θ_s ← θ_{s−1} − η·∇_θ CE(f_{θ_{s−1}}(x̂_(s)), ŷ_(s)) with ``create_graph=True``,
  minibatch s the contiguous chunk s of x̂ (the unknown shuffle order is *assumed fixed*: a
  documented approximation), train-mode BN from batch statistics; then
  L = w·D(θ_K − θ_0, ΔW) + α_BN·R_BN(recovered) [+ α_Δr·Σ‖Δr̂ − Δr‖] + priors (TV, image norm).
  It runs on the shared engine (:class:`~privbox.attacks.engine.GradientInversion`) through its
  ``matching_loss`` hook, so objectives, regularizers, schedules, box, noise, best-iterate
  tracking, NaN guard and checkpoints are the engine's.
- ``mode="reference"``: what the NVIDIA FLGradientInversion code *effectively* computes
  (ALGORITHMS.md §4.7 points 1–6): the update-matching term is only logged (no gradient); a
  simulated network, started at W_t and never reset, trains E full-batch BCE steps on
  (x, sigmoid(t)) every iteration and that BCE is back-propagated *unscaled* into the images z
  and label logits t; BN statistics recovered from Δr are matched on ``model_bn`` (W_t + ΔW, or
  W_t with ``bn_model="global"``); TV and image-norm priors; Adam; the last iteration's pre-step
  iterate is returned; the prior is not normalised. With α_grad = 0 the simulation is skipped
  (the original crashes there).

The functional forward at explicit (graph-carrying) weights is
:func:`privbox.nn.functional_model.substitute_parameters`.
"""

from .attack import FedAvgInversion
from .options import BN_CONVENTIONS, BN_MODELS, LABEL_INITS, MODES, FedAvgOptions
from .prior import prior_batch
from .simulate import LocalTraining, simulate_local_sgd

__all__ = [
    "FedAvgInversion",
    "FedAvgOptions",
    "LocalTraining",
    "prior_batch",
    "simulate_local_sgd",
    "MODES",
    "BN_MODELS",
    "BN_CONVENTIONS",
    "LABEL_INITS",
]
