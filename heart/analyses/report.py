"""Output at the edge, shared by every analysis: text tables, JSON reports, PNG figures, and the
pieces of an HTML section (a report's JSON read back, its PNGs as data URIs).

Analysis functions return plain data; only the scripts, this module and each analysis'
presentation module (fairness_report, drift_report, ...) turn it into text or files, so tests
check numbers rather than formatting. Plots use matplotlib's Agg backend (no display needed) and
are imported lazily, so importing this module stays cheap; every file is written atomically
(rendered to memory, then temp file + rename).
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..files import atomic_write


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


def num(x: Any, digits: int = 3) -> str:
    """Figures with `digits` decimals; counts (ints) as they are; n/a for anything else (None)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return "n/a"
    return str(x) if isinstance(x, int) else f"{x:.{digits}f}"


def mean_sd(stats: Any, digits: int = 3) -> str:
    """Mean ± sd of a {"mean", "sd"} dict or an object with those fields; n/a where the mean is
    undefined (NaN, or the JSON's null: e.g. no seed's set was trainable)."""
    mean, sd = (stats["mean"], stats["sd"]) if isinstance(stats, dict) else (stats.mean, stats.sd)
    return "n/a" if mean is None or mean != mean else f"{mean:.{digits}f} ± {sd:.{digits}f}"


def provenance(model: Any, data: Any, labels: dict) -> dict:
    """What a report of a trained model names first: the model, the data it read, the label record."""
    return {"model_version": model.version, "data": {"file": data.source, "sha256": data.sha256}, "labels": labels}


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


# --- PNG plots -----------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def png_bytes(fig, dpi: int = 110) -> bytes:
    """The figure as PNG bytes, for a file or a page that embeds it; closes the figure."""
    import io

    plt = _pyplot()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return buf.getvalue()


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Render to memory, then write atomically; closes the figure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, png_bytes(fig, dpi))
    return path


# --- an HTML section's inputs (heart.analyses.html_report) -----------------------------------


class ReportError(ValueError):
    """A report file that cannot be read: the message names the file and what is wrong."""


def read_json(path: Path) -> dict | None:
    """A report's JSON, or None if the analysis has not been run; a broken file is an error."""
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ReportError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise ReportError(f"{path}: expected a JSON object, got {type(doc).__name__}")
    return doc


def data_uri(path: Path) -> str | None:
    """A PNG as a data: URI (so the page makes no request), or None if it was not written."""
    if not path.exists():
        return None
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def plots(reports: Path, names_and_captions: list[tuple[str, str]]) -> list[dict]:
    return [
        {"src": data_uri(reports / name), "file": name, "caption": caption}
        for name, caption in names_and_captions
        if (reports / name).exists()
    ]
