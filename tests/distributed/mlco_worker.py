"""Run a short E2EGI MLCO (2 seeds, one inner round) on an update and write its record as JSON.

``python mlco_worker.py UPDATE OUT.json`` runs in one process; under
``paddle.distributed.launch ... mlco_worker.py UPDATE OUT.json --distributed`` the batch is
sharded over the ranks (:class:`privbox.distributed.comm.ShardCollective`) and rank 0 writes.
"""

import contextlib
import json
import sys

from privbox.attacks import e2egi, run_mlco
from privbox.attacks.tuning import build_model_for_update
from privbox.core.update import ClientUpdate
from privbox.distributed.collective import use
from privbox.distributed.comm import ShardCollective, init_process_group
from privbox.report import write_json_atomic

update_path, out = sys.argv[1], sys.argv[2]
distributed = "--distributed" in sys.argv
update = ClientUpdate.load(update_path)
model = build_model_for_update(update)
config = e2egi(iterations=10, progress=False)
collective = ShardCollective(init_process_group(timeout=120)) if distributed else None
with use(collective) if collective else contextlib.nullcontext():
    result = run_mlco(model, update, config, num_seeds=2, inner_iterations=3, group_weight=0.01)
if collective is None or collective.rank == 0:
    write_json_atomic(out, {
        "phases": [p.summary() for p in result.phases],
        "group": result.group.tolist(),
        "trace": result.reconstruction.loss_trace,
        "images": result.reconstruction.images.tolist(),
    })
