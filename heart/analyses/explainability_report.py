"""The explainability analysis at the edge: the text explainability.py prints, its SHAP plots, its
files and its section of reports/index.html (the layout of every <analysis>_report module)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..schema import BY_NAME
from .report import _pyplot, format_table, plots, save_figure, write_json

if TYPE_CHECKING:  # annotations only: importing the analysis would pull in SHAP
    from .explainability import ExplainabilityReport

GROUPS = (
    ("false_negatives", "Missed disease (false negatives)"),
    ("true_positives", "Caught disease (true positives)"),
)


def text(result: ExplainabilityReport) -> str:
    """The rows explained, the ranking, the additivity check, then what drove the missed and the caught."""
    lines = [
        f"SHAP for {len(result.rows)} rows ({result.scope}); base value (the calibrated P(disease) of the forest's "
        f"mean score) {result.explanation.base_value:.3f}; contributions add up to the served P(disease)",
        format_table(
            ["rank", "feature", "mean |SHAP|", "mean SHAP"],
            [[i + 1, r["feature"], r["mean_abs_shap"], r["mean_shap"]] for i, r in enumerate(result.importance)],
            4,
        ),
        f"\nadditivity: max |base + sum(SHAP) - P(disease)| = {result.additivity_error:.2e} "
        f"({'holds' if result.holds else 'FAILS'} within {result.tolerance:g})",
    ]
    for key, title in GROUPS:
        s = result.summaries[key]
        lines.append(f"\n{title}: {s['rows']} patients")
        if s["drivers"]:
            lines.append(
                format_table(
                    ["feature", "mean push", "patients pushed", "what they had"],
                    [[d["feature"], d["mean_push"], d["rows_pushed"], d["phrase"]] for d in s["drivers"]],
                )
            )
        lines.append(s["text"])
    return "\n".join(lines)


def write(result: ExplainabilityReport, out: str | Path, header: dict) -> list[Path]:
    """<out>/explainability.json (`header`, then the result), shap_bar.png, shap_beeswarm.png, shap_waterfall.png."""
    out = Path(out)
    ex, chosen, scope = result.explanation, result.patient, result.scope
    return [
        write_json(out / "explainability.json", {**header, **result.to_dict()}),
        plot_importance(
            result.importance, out / "shap_bar.png", f"Mean |SHAP| per feature ({scope}, n={len(result.rows)})"
        ),
        plot_beeswarm(ex.values, ex.base_value, ex.X, out / "shap_beeswarm.png", f"SHAP values ({scope})"),
        plot_waterfall(
            ex.values[chosen],
            ex.base_value,
            ex.X.iloc[[chosen]],
            out / "shap_waterfall.png",
            f"Patient row {result.patient_row} ({result.patient_label}): P(disease) = {ex.probability[chosen]:.2f}",
        ),
    ]


def plot_importance(importance: list[dict], path: str | Path, title: str = "") -> Path:
    """Global mean |SHAP| per original feature, largest on top."""
    plt = _pyplot()
    names = [r["feature"] for r in importance][::-1]
    vals = [r["mean_abs_shap"] for r in importance][::-1]
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.barh(names, vals, color="#1f77b4")
    for y, v in enumerate(vals):
        ax.text(v, y, f" {v:.3f}", va="center", fontsize=8)
    ax.set_xlabel("mean |SHAP value| (change in P(heart disease))")
    ax.set_title(title or "Global feature importance")
    ax.set_xlim(0, max(vals) * 1.18 if vals else 1)
    return save_figure(fig, path)


def _shap_explanation(values, base_value, X):
    import shap

    return shap.Explanation(
        values=np.asarray(values),
        base_values=np.full(len(values), base_value),
        data=X.to_numpy(dtype=float),
        feature_names=list(X.columns),
    )


def plot_beeswarm(values: np.ndarray, base_value: float, X, path: str | Path, title: str = "") -> Path:
    """Every row's SHAP value per feature, coloured by the feature's value."""
    import shap

    plt = _pyplot()
    fig = plt.figure(figsize=(8, 6))
    shap.plots.beeswarm(_shap_explanation(values, base_value, X), max_display=13, show=False)
    fig = plt.gcf()
    if title:
        fig.axes[0].set_title(title)
    return save_figure(fig, path)


def plot_waterfall(values: np.ndarray, base_value: float, row, path: str | Path, title: str = "") -> Path:
    """One patient: from the base rate to their probability, feature by feature."""
    import shap

    plt = _pyplot()
    plt.figure(figsize=(8, 6))
    shap.plots.waterfall(
        _shap_explanation(np.asarray(values).reshape(1, -1), base_value, row)[0], max_display=13, show=False
    )
    fig = plt.gcf()
    if title:
        fig.axes[0].set_title(title)
    return save_figure(fig, path)


# ------------------------------------------------------------------------------ reports/index.html


def section(doc: dict, reports: Path, path: Path) -> dict:
    top = [r["feature"] for r in doc["importance"][:3]]
    add = doc["additivity"]
    summary = (
        f"Over the {len(doc['rows'])} rows explained ({doc['scope']}), the features that move the "
        f"predicted risk most are {', '.join(top)} (mean |SHAP|). The contributions add back up to the "
        f"model's probability within {add['max_abs_error']:.1e} "
        f"({'holds' if add['holds'] else 'FAILS'}). Missed disease: "
        f"{doc['summaries']['false_negatives']['text']} Caught disease: "
        f"{doc['summaries']['true_positives']['text']}"
    )
    command = f"python explainability.py {'--all-rows ' if 'all rows' in doc['scope'] else ''}--out-dir {reports}"
    return {
        "doc": doc,
        "summary": summary,
        "command": command,
        "labels": {n: f.description for n, f in BY_NAME.items()},
        "plots": plots(
            reports,
            [
                ("shap_bar.png", "Mean |SHAP| per feature"),
                ("shap_beeswarm.png", "Every row's SHAP value per feature"),
                ("shap_waterfall.png", f"One patient (row {doc['waterfall_patient']['row']})"),
            ],
        ),
    }
