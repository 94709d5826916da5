"""The named client schemes (``--scheme`` of the Label-based-Defense repository and its knobs).

Each entry of :data:`SCHEMES` is a :class:`~privbox.defenses.schemes.scheme.DefenseScheme`, i.e.
a named modification of a :class:`~privbox.fl.spec.ClientSpec` (``ClientSpec(scheme="RA+GH")``).
``requires`` says what the client's model must allow (``"maxpool"``: a stem max-pool;
``"no_train_bn"``: no BatchNorm in train mode). Adding a scheme is one ``SCHEMES.add`` here.
"""

from __future__ import annotations

from typing import Optional

from ...core.errors import ConfigError
from ...core.registry import Range, Registry
from .scheme import DefenseScheme

__all__ = ["SCHEMES", "get_scheme", "real_dp_sgd"]

_LBD = "Label-based-Defense scheme"


class SchemeRegistry(Registry[DefenseScheme]):
    """A :class:`Registry` of schemes that also reads like a mapping (``SCHEMES["GH"]``)."""

    def __getitem__(self, name: str) -> DefenseScheme:
        return self.get(name)


#: The schemes of the Label-based-Defense repository (``--scheme pure|RA|DP-SGD|GH``) and the
#: paper's other client settings (label grouping, local iterations, dropout).
SCHEMES: SchemeRegistry = SchemeRegistry("scheme")

SCHEMES.add("pure", DefenseScheme("pure", batch_size=128, note="global batch 128, synchronised BN", origin=_LBD),
            description="the baseline: global batch 128, synchronised BN")
SCHEMES.add("RA", DefenseScheme("RA", batch_size=128, maxpool_kernel=19, origin=_LBD,
                                note="ResNet-18 stem max-pool kernel 19: RA-i > 0"),
            description="stem max-pool kernel 19 (RA-i > 0); the attacker must use the same kernel", requires={"maxpool"})
SCHEMES.add("DP-SGD", DefenseScheme("DP-SGD", batch_size=128, clip_noise_sigma=0.01, clip_norm=1.0, origin=_LBD,
                                    note="the repository's whole-batch clip (C = 1) + N(0, (0.01 C)^2); no DP guarantee"),
            description="the repository's 'DP-SGD': whole-batch clip to C = 1 plus N(0, (0.01 C)^2); no DP guarantee",
            tunable={"clip_noise_sigma": Range(0.0, 1.0), "clip_norm": Range(0.01, 10.0, log=True)})
SCHEMES.add("GH", DefenseScheme("GH", batch_size=384, shards=4, origin=_LBD,
                                note="global batch 384 on 4 devices, asynchronous per-device BN"),
            description="gradient heterogeneity: 4 devices with asynchronous per-device BN",
            tunable={"shards": Range(1, 8, integer=True)})
SCHEMES.add("grouped", DefenseScheme("grouped", batch_size=32, classes_per_batch=4, label_order="grouped", origin=_LBD,
                                     note="4 classes x 8, batch grouped by label (labels reordered, never overwritten)"),
            description="label repetition: batches of 4 classes, grouped by label so shards/steps are label-homogeneous")
SCHEMES.add("local-iterations", DefenseScheme("local-iterations", local_iterations=4, local_lr=0.1, origin=_LBD,
                                              note="4 local SGD steps (lr 0.1) on contiguous chunks; pseudo-gradient shared"),
            description="E = 4 local SGD steps at lr 0.1 on contiguous chunks, shared as (θ0 − θ_E)/(lr·E)",
            tunable={"local_iterations": Range(1, 16, integer=True), "local_lr": Range(1e-3, 1.0, log=True)})
SCHEMES.add("dropout", DefenseScheme("dropout", dropout=True, origin=_LBD,
                                     note="dropout on: the victim's mask is unknown to the attacker"),
            description="dropout active during the client's step (one seeded mask the attacker does not know)")
SCHEMES.add("no-dropout", DefenseScheme("no-dropout", dropout=False, origin=_LBD,
                                        note="dropout switched off (the repository's --model-eval for VGG-11)"),
            description="every Dropout layer switched off (p = 0)")


def get_scheme(name: str) -> DefenseScheme:
    """A scheme of :data:`SCHEMES` by name; ``"RA+GH"`` composes several."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"scheme name must be a non-empty string, got {name!r}")
    out: Optional[DefenseScheme] = None
    for part in name.split("+"):
        part = part.strip()
        if part not in SCHEMES:
            raise ConfigError(f"unknown scheme {part!r}", fix=f"choose from {SCHEMES.names()} (compose with '+', e.g. 'RA+GH')")
        out = SCHEMES[part] if out is None else out + SCHEMES[part]
    assert out is not None
    return out


def real_dp_sgd(noise_multiplier: float, max_grad_norm: float = 1.0, name: Optional[str] = None) -> DefenseScheme:
    """Real DP-SGD (Abadi et al., CCS 2016) as a scheme: per-sample clipping to C, N(0, σ²C²) on the sum.

    Unlike the repository's ``DP-SGD`` scheme this has a formal (ε, δ) guarantee once the
    sampling rate and the number of steps are known (RDP accountant). At B = 1 per-sample and
    whole-batch clipping coincide; the difference is the accounting and, for B > 1, the clipping.
    """
    return DefenseScheme(
        name or "DP-SGD-per-sample", dp_noise_multiplier=float(noise_multiplier),
        clip_norm=float(max_grad_norm), note="per-sample clipping, Gaussian noise (Abadi et al. 2016)",
    )
