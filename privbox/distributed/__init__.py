"""Multi-process inversion and capture on ``paddle.distributed`` (E2EGI device sharding).

* :mod:`~privbox.distributed.collective` — the hook the engine calls (identity in one process);
* :mod:`~privbox.distributed.comm` — gloo/NCCL collectives with a watchdog, the shard and seed
  collectives;
* :mod:`~privbox.distributed.sync_bn` — synchronised train-mode BatchNorm;
* :mod:`~privbox.distributed.modes` — the ``--distributed`` modes;
* :mod:`~privbox.distributed.cli` — the CLI options and job checks.

This package imports nothing heavy at import time: the engine imports
:mod:`~privbox.distributed.collective` on every run.
"""
