"""privbox: measure and defend against gradient leakage in federated learning, on PaddlePaddle 3.x.

The public API is re-exported lazily from the subpackages (see ``__all__``), so that
``import privbox`` stays cheap and fails with one clear message when Paddle is missing.
"""

from __future__ import annotations

import importlib
import warnings

from ._paddle_check import PaddleMissingError, require_paddle
from ._version import __version__

with warnings.catch_warnings():
    # Paddle warns about ccache at import time; it is harmless and not the user's concern.
    warnings.simplefilter("ignore", UserWarning)
    require_paddle()

_LAZY = {
    "ClientUpdate": "privbox.core.update",
    "ThreatModel": "privbox.core.update",
    "Secret": "privbox.core.update",
    "compute_update": "privbox.fl.capture",
    "Reconstruction": "privbox.attacks",
    "DLG": "privbox.attacks",
    "IDLG": "privbox.attacks",
    "make_twice_differentiable": "privbox.nn",
    "check_double_grad": "privbox.nn",
    "DGCMomentum": "privbox.defenses",
    "DPSGD": "privbox.defenses",
    "GaussianPrivacy": "privbox.defenses",
    "RDPAccountant": "privbox.defenses",
    "rank_analysis": "privbox.analysis",
}

__all__ = ["__version__", "PaddleMissingError", *_LAZY]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'privbox' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
