"""Output at the edge: readable text tables and JSON reports (PNG plots join with the analyses).

Analysis functions return plain data; only the scripts and this module turn it into text
or files, so tests check numbers rather than formatting.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

from .model import atomic_write


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 3) -> str:
    """A plain monospace table: numbers right-aligned to `digits` places, text left-aligned."""
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "n/a" if math.isnan(v) else f"{v:.{digits}f}"
        return str(v)
    text = [[cell(v) for v in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in text)) if text else len(str(h)) for i, h in enumerate(headers)]
    numeric = [bool(rows) and all(isinstance(row[i], (int, float)) for row in rows) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()
    return "\n".join([line([str(h) for h in headers]), line(["-" * w for w in widths]), *(line(r) for r in text)])


def mean_sd(stats: dict) -> str:
    return f"{stats['mean']:.3f} ± {stats['sd']:.3f}"


def write_json(path: str | Path, payload: Any) -> Path:
    """Atomically write a JSON report (NaN becomes null, so every report is valid JSON)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, (json.dumps(_clean(payload), indent=2, allow_nan=False) + "\n").encode())
    return path


def _clean(v: Any) -> Any:
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):  # numpy scalars
        return _clean(v.item())
    return v
