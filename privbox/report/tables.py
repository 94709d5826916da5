"""Markdown/JSON output, written atomically (no half-written files on disk)."""

from __future__ import annotations

from ..core.atomic import atomic_output

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence


def write_text_atomic(path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder, then rename."""
    path = Path(path)
    with atomic_output(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
    return path


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write_json_atomic(path, data: Any) -> Path:
    """Write ``data`` as indented JSON (NaN/Inf become null) atomically."""
    return write_text_atomic(path, json.dumps(_finite(data), indent=2, default=_json_default) + "\n")


def _format(value: Any, digits: int) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}" if math.isfinite(value) else "—"
    if value is None:
        return "—"
    return str(value)


def markdown_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    headers: Optional[Sequence[str]] = None,
    digits: int = 2,
) -> str:
    """Render ``rows`` as a GitHub markdown table with the given columns."""
    headers = list(headers or columns)
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_format(row.get(col), digits) for col in columns) + " |")
    return "\n".join(lines) + "\n"


def csv_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """CSV text with a header of ``columns`` and one line per row (missing or None values empty,
    extra keys ignored)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    return buf.getvalue()
