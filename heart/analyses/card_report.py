"""The model card at the edge: its section of reports/index.html (train.py writes the card and prints
its own summary), the first of the page's sections (heart.analyses.sections)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .report import num


def section(card: dict, reports: Path, path: Path) -> dict:
    """Model card summary; calibration as far as the card records it (`calibration`, Brier)."""
    metrics = card.get("metrics", {})
    forest = metrics.get("random_forest", {})
    test = forest.get("test", {})
    split = card.get("split", {})
    threshold = card.get("model", {}).get("threshold", card.get("threshold", 0.5))
    rows = [
        {"model": name.replace("_", " "), "test": m.get("test", {}), "cv": m.get("cv", {})}
        for name, m in metrics.items()
    ]
    names = sorted({k for r in rows for k in r["test"]})
    calibration = card.get("calibration")
    summary = (
        f"The random forest scores accuracy {num(test.get('accuracy'))}, ROC AUC {num(test.get('roc_auc'))} "
        f"and recall {num(test.get('recall'))} on {split.get('test_rows', '?')} held-out patients, "
        f"at the decision threshold {threshold}. Its Brier score (mean squared error of the probability: "
        f"lower is better calibrated) is {num(test.get('brier'))}."
    )
    if calibration is None:
        summary += " The card has no reliability table yet; the Brier scores are the calibration it records."
    return {
        "summary": summary,
        "card": card,
        "rows": rows,
        "metric_names": names,
        "threshold": threshold,
        "calibration": _calibration(calibration),
        "command": "python train.py --data data/data.csv --out model.zip",
    }


def _calibration(cal: Any) -> dict | None:
    """Whatever the card says about calibration: scalar facts, and every list of rows (also one
    level down, e.g. reliability.test) as a table."""
    if not isinstance(cal, dict):
        return None if cal is None else {"facts": {"calibration": cal}, "tables": []}
    flat: dict[str, Any] = {}
    for k, v in cal.items():
        if isinstance(v, dict):
            flat.update({f"{k}.{kk}": vv for kk, vv in v.items()})
        else:
            flat[k] = v
    facts = {k: v for k, v in flat.items() if not isinstance(v, (list, dict))}
    tables = [
        {"name": k, "columns": list(dict.fromkeys(c for row in v for c in row)), "rows": v}
        for k, v in flat.items()
        if isinstance(v, list) and v and all(isinstance(r, dict) for r in v)
    ]
    return {"facts": facts, "tables": tables}
