"""Files of a federated run: the resumable run state and the per-round audit records.

Everything is written atomically and nothing is pickled:

* ``state/run.safetensors``: after every completed round, the global model state, the best
  global model so far and the array part of every client defense's state (DGC residuals, ...);
  its JSON header holds the round counter, the history, the audit summaries, the ledger, the
  JSON part of the defense states (noise generators) and a fingerprint of the config, so a
  resume with another config is refused (:class:`~privbox.core.errors.CheckpointError`);
* ``audit/round_XXX/<client>/``: ``reconstruction.safetensors`` (the reconstructions, RDLV per
  image, against every reconstruction, the closest index and the raw similarities),
  ``reconstruction.png`` (training images over their closest reconstructions) and
  ``rdlv.json``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..core.errors import CheckpointError, UpdateFileError
from ..core.safetensors_io import read_privbox_file, write_privbox_file
from ..report.tables import write_json_atomic

__all__ = ["STATE_FORMAT", "AUDIT_FORMAT", "config_fingerprint", "save_run_state", "load_run_state",
           "split_state", "join_state", "write_audit"]

STATE_FORMAT = "privbox.FLRunState"
AUDIT_FORMAT = "privbox.FLAudit"


def config_fingerprint(config_dict: dict) -> str:
    """SHA-256 of the canonical JSON of a config (what must match to resume)."""
    return hashlib.sha256(json.dumps(config_dict, sort_keys=True, default=str).encode()).hexdigest()


def _is_array(value: Any) -> bool:
    return isinstance(value, np.ndarray) or type(value).__name__ == "Tensor"


def split_state(state: Any, prefix: str, arrays: dict) -> Any:
    """Move the arrays of a (nested) defense state into ``arrays`` under ``prefix``; return the JSON rest."""
    if _is_array(state):
        arrays[prefix] = np.asarray(state.numpy() if hasattr(state, "numpy") else state)
        return {"__array__": prefix}
    if isinstance(state, dict):
        return {str(k): split_state(v, f"{prefix}/{k}", arrays) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return [split_state(v, f"{prefix}/{i}", arrays) for i, v in enumerate(state)]
    if isinstance(state, (np.integer, np.floating)):
        return state.item()
    return state


def join_state(state: Any, arrays: dict) -> Any:
    """Inverse of :func:`split_state`."""
    if isinstance(state, dict):
        if set(state) == {"__array__"}:
            key = state["__array__"]
            if key not in arrays:
                raise CheckpointError(f"the run state lacks array {key!r}", fix="start the run again without --resume")
            import paddle

            return paddle.to_tensor(arrays[key])
        return {k: join_state(v, arrays) for k, v in state.items()}
    if isinstance(state, list):
        return [join_state(v, arrays) for v in state]
    return state


def save_run_state(folder: Path, header: dict, global_state: dict, best_state: Optional[dict], arrays: dict) -> Path:
    """Write ``folder/state/run.safetensors`` atomically."""
    tensors = {f"global/{k}": v for k, v in global_state.items()}
    if best_state is not None:
        tensors.update({f"best/{k}": v for k, v in best_state.items()})
    tensors.update({f"defense/{k}": v for k, v in arrays.items()})
    return write_privbox_file(Path(folder) / "state" / "run.safetensors", tensors, STATE_FORMAT, header)


def load_run_state(folder: Path, fingerprint: str) -> Optional[tuple[dict, dict, Optional[dict], dict]]:
    """``(header, global_state, best_state, defense_arrays)`` of the last completed round, or ``None``."""
    path = Path(folder) / "state" / "run.safetensors"
    if not path.exists():
        return None
    try:
        tensors, header = read_privbox_file(path, STATE_FORMAT)
    except UpdateFileError as exc:
        raise CheckpointError(f"the run state is unreadable ({exc})", where=str(path), fix="start the run again without --resume") from None
    if header.get("fingerprint") != fingerprint:
        raise CheckpointError("the run state belongs to another config", where=str(path),
                              fix="resume with the same config and overrides, or use another --out folder")
    groups: dict[str, dict] = {"global": {}, "best": {}, "defense": {}}
    for key, value in tensors.items():
        group, _, name = key.partition("/")
        if group not in groups:
            raise CheckpointError(f"unexpected entry {key!r}", where=str(path))
        groups[group][name] = value
    return header, groups["global"], groups["best"] or None, groups["defense"]


def write_audit(folder: Path, outcome: Any, targets: np.ndarray, sigma: Optional[float], extra: dict) -> dict:
    """Write one audit record (safetensors + PNG + JSON) and return its JSON summary."""
    from ..report.fl_figures import save_audit_pairs

    out = Path(folder) / "audit" / f"round_{outcome.round:03d}" / outcome.client
    r = outcome.rdlv
    summary = dict(outcome.summary(), sigma=sigma, metrics=r.metrics, reduce=r.reduce, convention=r.convention, **extra)
    tensors = {
        "reconstruction": np.asarray(outcome.reconstruction, dtype=np.float32),
        "rdlv_per_image": r.per_image, "rdlv_all": r.all, "closest": r.closest, "similarity": r.similarity,
    }
    if r.prior_similarity is not None:
        tensors["prior_similarity"] = r.prior_similarity
    write_privbox_file(out / "reconstruction.safetensors", tensors, AUDIT_FORMAT, summary)
    save_audit_pairs(out / "reconstruction.png", targets, outcome.reconstruction[r.closest],
                     [f"RDLV {v:+.2f}" for v in r.per_image[:, 0]],
                     title=f"{outcome.client}, round {outcome.round}: training images (top) and closest reconstructions")
    write_json_atomic(out / "rdlv.json", dict(summary, detail=r.to_dict()))
    summary["files"] = str(out)
    return summary
