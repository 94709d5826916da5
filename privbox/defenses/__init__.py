"""Defenses against gradient leakage (ALGORITHMS.md §6).

* training-time optimisers: :class:`DGCMomentum` (Deep Gradient Compression, Lin et al.,
  ICLR 2018), :class:`DPSGD` / :class:`DPOptimizer` (Abadi et al., CCS 2016);
* update transforms (applied to what a client sends): :class:`DGCCompressor`,
  :class:`GaussianPrivacy`, :class:`TopKPruning`, :class:`BatchClipNoise`, :class:`Compose`,
  all subclasses of :class:`UpdateDefense`;
* privacy accounting: :class:`RDPAccountant`, :func:`get_noise_multiplier` (Mironov et al.
  2019; Balle et al. 2020);
* per-sample gradients and Poisson sampling for DP-SGD;
* :data:`DEFENSES`: every defense by name, with its kind (``optimizer``: inside local training,
  :class:`LocalStepDefense`; ``update_transform``: on what the client sends), requirements and
  tunable ranges; a :class:`privbox.fl.spec.ClientSpec` lists them in order;
* :func:`defend_update` (a defended copy of a ClientUpdate, recorded in ``meta.defenses``),
  :func:`run_defended_rounds` (stateful defenses such as DGC over FL rounds), the
  Label-based-Defense schemes (:data:`SCHEMES`, :func:`capture_with_scheme`) and
  :func:`measure_utility` (accuracy at a matched learning rate).
"""

from .accountant import (
    DEFAULT_ALPHAS,
    RDPAccountant,
    compute_rdp,
    gdp_epsilon,
    gdp_mu,
    get_noise_multiplier,
    get_privacy_spent,
    rdp_to_epsilon,
)
from .dgc import DGCCompressor, DGCMomentum, dgc_warmup_schedule
from .dpsgd import DPOptimizer, DPSGD, PoissonBatchSampler, UniformBatchSampler
from .per_sample import (
    PerSampleGradients,
    check_no_batchnorm,
    freeze_batchnorm,
    per_sample_gradients,
    per_sample_gradients_microbatch,
    supports_hooks,
)
from .transforms import BatchClipNoise, Compose, GaussianPrivacy, TopKPruning, UpdateDefense, batch_clip_noise
from .local import BatchClipStep, DGCStep, DPSGDStep, LocalStepDefense
from .registry import DEFENSE_KINDS, DEFENSES, build_defense, defense_kind, unsupported_reason

__all__ = [
    "DEFAULT_ALPHAS",
    "RDPAccountant",
    "compute_rdp",
    "gdp_epsilon",
    "gdp_mu",
    "get_noise_multiplier",
    "get_privacy_spent",
    "rdp_to_epsilon",
    "DGCCompressor",
    "DGCMomentum",
    "dgc_warmup_schedule",
    "DPOptimizer",
    "DPSGD",
    "PoissonBatchSampler",
    "UniformBatchSampler",
    "PerSampleGradients",
    "check_no_batchnorm",
    "freeze_batchnorm",
    "per_sample_gradients",
    "per_sample_gradients_microbatch",
    "supports_hooks",
    "BatchClipNoise",
    "Compose",
    "GaussianPrivacy",
    "TopKPruning",
    "UpdateDefense",
    "batch_clip_noise",
    "BatchClipStep",
    "DGCStep",
    "DPSGDStep",
    "LocalStepDefense",
    "DEFENSE_KINDS",
    "DEFENSES",
    "build_defense",
    "defense_kind",
    "unsupported_reason",
]

# Applying defenses to a ClientUpdate, Label-based-Defense schemes, utility measurement.
from .apply import defend_update, describe_defense  # noqa: E402
from .rounds import run_defended_rounds  # noqa: E402
from .schemes import (  # noqa: E402
    SCHEMES,
    DefenseScheme,
    SchemeUpdate,
    build_attack_model,
    capture_with_scheme,
    check_attack_model,
    get_scheme,
    real_dp_sgd,
    scheme_gradient,
)
from .utility import measure_utility, sample_task  # noqa: E402

__all__ += [
    "defend_update",
    "describe_defense",
    "run_defended_rounds",
    "SCHEMES",
    "DefenseScheme",
    "SchemeUpdate",
    "build_attack_model",
    "capture_with_scheme",
    "check_attack_model",
    "get_scheme",
    "real_dp_sgd",
    "scheme_gradient",
    "measure_utility",
    "sample_task",
]
