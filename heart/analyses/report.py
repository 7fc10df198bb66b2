"""Output at the edge: readable text tables, JSON reports and PNG plots.

Analysis functions return plain data; only the scripts and this module turn it into text
or files, so tests check numbers rather than formatting. Plots use matplotlib's Agg backend
(no display needed) and are imported lazily, so importing this module stays cheap; every
file is written atomically (rendered to memory, then temp file + rename).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..artifact import atomic_write

if TYPE_CHECKING:  # annotations only: importing the analyses would pull in fairlearn and sklearn
    from .drift import DriftReport
    from .fairness import FairnessReport
    from .poisoning import PoisoningReport


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


def describe_fits(fits: dict[str, int], reference: str) -> str:
    """'' when every seed's set was modelled as the clean one was; else each other fit, with its
    share of the seeds when not all: "2-fold calibration", "not trainable (1 of 3 seeds)"."""
    total = sum(fits.values())
    return ", ".join(f if n == total else f"{f} ({n} of {total} seeds)" for f, n in fits.items() if f != reference)


def fit_notes(doc: dict, defense: str = "defense") -> tuple[list[str], list[str]]:
    """From a poisoning report's dict (PoisoningReport.to_dict() or its JSON): "<attack>: <how>" for the
    main attacks and their defense refits, and per sweep rate its "random: ...; targeted: ..." ("" when
    every set was modelled as the clean one, and for reports written before fits were recorded)."""
    ref = doc.get("clean_fit", "")

    def notes(named):
        return [f"{name}: {text}" for name, fits in named if (text := describe_fits(fits or {}, ref))]

    attacks = {"random flips": doc["attacks"]["random"], "targeted": doc["attacks"]["targeted_positive_to_negative"]}
    main = notes(
        (f"{name}{what}", where.get(key))
        for name, a in attacks.items()
        for what, where, key in (("", a["summary"], "fits"), (f" + {defense}", a["summary"]["defense"], "fits_after"))
    )
    sweep = zip(doc["sweep"]["random"], doc["sweep"]["targeted_positive_to_negative"])
    return main, ["; ".join(notes([("random", r.get("fits")), ("targeted", t.get("fits"))])) for r, t in sweep]


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


# --- PNG plots -----------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Render to memory, then write atomically; closes the figure."""
    import io

    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    atomic_write(path, buf.getvalue())
    return path


# The per-group metrics shown for fairness: the table of fairness_check.py, its plot and the HTML report.
FAIRNESS_SHOWN = (
    "accuracy",
    "selection_rate",
    "true_positive_rate",
    "false_negative_rate",
    "false_positive_rate",
    "precision",
)


def plot_fairness(result: FairnessReport, path: str | Path) -> Path:
    """Per-group metrics as grouped bars, held-out and out-of-fold side by side."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), sharey=True)
    title_lines = 1
    for ax, part, title in (
        (axes[0], result.held_out, "held-out split"),
        (axes[1], result.out_of_fold, "out-of-fold, all rows"),
    ):
        groups = part.groups
        width = 0.8 / len(groups)
        x = np.arange(len(FAIRNESS_SHOWN))
        for i, g in enumerate(groups):
            vals = [part.by_group[g][m] for m in FAIRNESS_SHOWN]
            ax.bar(x + (i - (len(groups) - 1) / 2) * width, vals, width, label=f"{g} (n={part.by_group[g]['count']})")
        ax.set_xticks(x, [m.replace("_", " ") for m in FAIRNESS_SHOWN], rotation=25, ha="right")
        tpr = [(pair, g["true_positive_rate"]) for pair, g in list(part.gaps.items())[:3]]
        lines = [f"TPR {pair}: {g.gap:+.2f} [{g.ci95[0]:+.2f}, {g.ci95[1]:+.2f}]" for pair, g in tpr]
        ax.set_title("\n".join([f"{title} (n={part.n})", *lines]), fontsize=9)
        title_lines = max(title_lines, 1 + len(lines))
        ax.set_ylim(0, 1.05)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(
            fontsize=8,
            title=result.sensitive_feature,
            title_fontsize=8,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.3),
            ncol=min(len(groups), 4),
        )
    fig.suptitle(f"Model metrics by {result.sensitive_feature} ({result.grouping})", y=0.97 + 0.045 * title_lines)
    return save_figure(fig, path)


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


def plot_drift(reference, current, result: DriftReport, path: str | Path, title: str = "") -> Path:
    """Reference vs current per feature: densities for continuous, code shares for discrete."""
    from ..schema import BY_NAME

    plt = _pyplot()
    feats = result.features
    cols = 4
    rows = -(-len(feats) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.1 * rows))
    axes = np.ravel(axes)
    for ax, fr in zip(axes, feats):
        f = BY_NAME[fr.feature]
        ref = reference[f.name].to_numpy(dtype=float)
        cur = current[f.name].to_numpy(dtype=float)
        ref, cur = ref[~np.isnan(ref)], cur[~np.isnan(cur)]
        if f.discrete:
            codes = sorted(f.codes)
            x = np.arange(len(codes))
            ax.bar(x - 0.2, [np.mean(ref == c) if ref.size else 0 for c in codes], 0.4, label="reference")
            ax.bar(x + 0.2, [np.mean(cur == c) if cur.size else 0 for c in codes], 0.4, label="current")
            ax.set_xticks(x, [_short(f.codes[c]) for c in codes], rotation=15 if len(codes) > 2 else 0)
            ax.set_ylabel("share", fontsize=8)
        else:
            both = np.concatenate([ref, cur]) if cur.size else ref
            bins = np.linspace(both.min(), both.max(), 21) if both.size else 10
            ax.hist(ref, bins=bins, density=True, alpha=0.5, label="reference")
            if cur.size:
                ax.hist(cur, bins=bins, density=True, alpha=0.5, label="current")
            ax.set_xlabel(f.unit, fontsize=8)
        p = fr.p_adjusted
        verdict = "DRIFT" if fr.drifted else "ok"
        ptxt = "n/a" if p is None or p != p else f"{p:.2g}"
        ax.set_title(
            f"{f.name} [{fr.test}] p_adj={ptxt} {verdict}", fontsize=9, color="#c0392b" if fr.drifted else "black"
        )
        ax.tick_params(labelsize=8)
    for ax in axes[len(feats) :]:
        ax.axis("off")
    handles, labels = axes[0].get_legend_handles_labels()
    if len(axes) > len(feats):
        axes[len(feats)].legend(handles, labels, loc="center", fontsize=11)
    else:
        axes[0].legend(fontsize=8)
    fig.suptitle(title or "Reference vs current distributions")
    fig.tight_layout()
    return save_figure(fig, path)


def _short(text: str, width: int = 13) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def plot_poisoning(result: PoisoningReport, path: str | Path) -> Path:
    """Test metrics against the share of flipped training labels, mean ± sd over seeds."""
    plt = _pyplot()
    curves = result.sweep
    fig, axes = plt.subplots(1, len(curves), figsize=(6 * len(curves), 4.5), sharey=True)
    axes = np.ravel(axes)
    titles = {"random": "random label flips", "targeted_positive_to_negative": "targeted: disease -> no disease"}
    for ax, (name, curve) in zip(axes, curves.items()):
        rates = [100 * c.rate for c in curve]
        for metric in ("accuracy", "roc_auc", "recall"):
            ax.errorbar(
                rates,
                [c.summary.metrics[metric].mean for c in curve],
                yerr=[c.summary.metrics[metric].sd for c in curve],
                marker="o",
                capsize=3,
                label=metric.replace("_", " "),
            )
            ax.axhline(result.clean[metric], ls=":", lw=0.8, color=ax.lines[-1].get_color())
        ax.set_title(f"{titles.get(name, name)} ({len(result.seeds)} seeds, mean ± sd)", fontsize=10)
        # points whose sets were modelled otherwise than the clean one (poisoning.fit_plan) say how, under the axis
        notes = [f"{100 * c.rate:g}%: {n}" for c in curve if (n := describe_fits(c.summary.fits, result.clean_fit))]
        ax.set_xlabel("\n".join(["training labels flipped (% of training rows)", *notes]))
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("held-out metric (dotted: clean model)")
    axes[0].legend()
    return save_figure(fig, path)
