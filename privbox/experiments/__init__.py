"""The defense x attack matrix and the leakage-vs-privacy sweeps (``privbox matrix``, ``privbox demo``)."""

from .load import CONFIG_DIR, load_matrix_spec
from .runner import MatrixResult, run_matrix, run_pairing
from .spec import AttackEntry, DefenseEntry, MatrixSpec, SweepSpec, UtilitySpec

__all__ = ["AttackEntry", "CONFIG_DIR", "DefenseEntry", "MatrixResult", "MatrixSpec", "SweepSpec", "UtilitySpec",
           "load_matrix_spec", "run_matrix", "run_pairing"]
