"""Label-based-Defense client schemes as named client specs (ALGORITHMS.md §6.5-6.6).

* :mod:`.scheme`: :class:`DefenseScheme` (a frozen, composable setting that modifies a
  :class:`~privbox.fl.spec.ClientSpec`), :class:`SchemePlan`, :class:`SchemeUpdate`;
* :mod:`.registry`: :data:`SCHEMES` (pure, RA, DP-SGD, GH, grouped, local-iterations, dropout,
  no-dropout), :func:`get_scheme` (``"RA+GH"`` composes), :func:`real_dp_sgd`;
* :mod:`.capture`: :func:`capture_with_scheme` / :func:`scheme_gradient` (one round of the one
  client) and the attacker side (:func:`build_attack_model`, :func:`check_attack_model`).
"""

from ...core.model_checks import stem_maxpool_kernel
from .capture import SchemeGradient, build_attack_model, capture_with_scheme, check_attack_model, scheme_gradient
from .registry import SCHEMES, get_scheme, real_dp_sgd
from .scheme import DefenseScheme, SchemePlan, SchemeUpdate

__all__ = [
    "DefenseScheme",
    "SchemePlan",
    "SchemeGradient",
    "SchemeUpdate",
    "SCHEMES",
    "get_scheme",
    "real_dp_sgd",
    "scheme_gradient",
    "capture_with_scheme",
    "build_attack_model",
    "check_attack_model",
    "stem_maxpool_kernel",
]
