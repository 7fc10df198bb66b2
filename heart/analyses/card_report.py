"""The model card at the edge: its section of reports/index.html (train.py writes the card and prints
its own summary), the first of the page's sections (heart.analyses.sections)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from .report import _pyplot, num, png_bytes, save_figure

RELIABILITY_NAMES = {"cv_out_of_fold": "cross-validation, out of fold", "test": "held-out split"}
RELIABILITY_CAPTION = (
    "Reliability diagram of the card: observed rate against mean predicted probability per bin, with counts"
)


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
        "plots": _reliability_plot(calibration, path.name),
    }


def _reliability_plot(calibration: Any, source: str) -> list[dict]:
    """The card's reliability diagrams as one picture, drawn from the card itself (no file to read)."""
    diagrams = calibration.get("reliability") if isinstance(calibration, dict) else None
    if not isinstance(diagrams, dict) or not diagrams:
        return []
    src = "data:image/png;base64," + base64.b64encode(png_bytes(reliability_figure(diagrams))).decode("ascii")
    return [{"src": src, "file": source, "caption": RELIABILITY_CAPTION}]


def reliability_figure(diagrams: dict[str, list[dict]]):
    """Observed rate against mean predicted probability per bin, one line per set of predictions
    (calibration.reliability: CV out of fold, held out), each point labelled with its count; the
    counts as bars below, on a log scale (the CV pools 25 folds' predictions, the test split has 61)."""
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 7.5), sharex=True, height_ratios=[3, 1])
    top.plot([0, 1], [0, 1], ls=":", color="#666", label="perfectly calibrated")
    width = 0.08 / max(len(diagrams), 1)
    for i, (name, bins) in enumerate(diagrams.items()):
        filled = [b for b in bins if b["count"] and b.get("mean_predicted") is not None]
        label = f"{RELIABILITY_NAMES.get(name, name)} (n={sum(b['count'] for b in bins)})"
        (line,) = top.plot(
            [b["mean_predicted"] for b in filled], [b["observed_rate"] for b in filled], "o-", label=label
        )
        for b in filled:
            top.annotate(str(b["count"]), (b["mean_predicted"], b["observed_rate"]), textcoords="offset points",
                         xytext=(4, -11 if i % 2 else 5), fontsize=7, color=line.get_color())  # fmt: skip
        offset = (i - (len(diagrams) - 1) / 2) * width
        bottom.bar(
            [(b["low"] + b["high"]) / 2 + offset for b in bins],
            [b["count"] for b in bins],
            width,
            color=line.get_color(),
        )
    top.set(xlim=(0, 1), ylim=(-0.06, 1.05), ylabel="observed rate of heart disease")
    top.set_title("Reliability: predicted vs observed per bin (the numbers: predictions in the bin)", fontsize=10)
    top.legend(fontsize=8, loc="upper left")
    top.grid(alpha=0.3)
    bottom.set(xlabel="predicted probability of heart disease", ylabel="count (log)", yscale="log")
    bottom.grid(axis="y", alpha=0.3)
    return fig


def plot_reliability(diagrams: dict[str, list[dict]], path: str | Path) -> Path:
    return save_figure(reliability_figure(diagrams), path)


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
