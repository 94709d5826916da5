"""Federated-learning side of privbox: the one client (:mod:`privbox.fl.spec`,
:mod:`privbox.fl.client`), the definition of one local step shared with the attacks' differentiable
twin (:mod:`privbox.fl.step`), and the convenience captures (:mod:`privbox.fl.capture`).

Submodules are imported on demand (``from privbox.fl.client import Client``); this package
``__init__`` imports nothing, so that ``privbox.defenses`` and ``privbox.attacks`` can depend on
``privbox.fl.spec`` without import-order surprises.
"""
