"""The fairness analysis at the edge: the text fairness_check.py prints, its plot, its files and its
section of reports/index.html (the layout of every <analysis>_report module)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..schema import BY_NAME
from .report import _pyplot, format_table, plots, save_figure, write_json

if TYPE_CHECKING:  # annotations only: importing the analysis would pull in fairlearn and scikit-learn
    from .fairness import FairnessReport

# The per-group metrics shown for fairness: the printed table, the plot and the HTML section.
SHOWN = (
    "accuracy",
    "selection_rate",
    "true_positive_rate",
    "false_negative_rate",
    "false_positive_rate",
    "precision",
)


def text(result: FairnessReport) -> str:
    """Per view (held-out, out-of-fold): the groups, the gaps with their intervals, Fairlearn's
    differences; then the mitigation before and after."""
    lines = []
    for part, title in ((result.held_out, "held-out split"), (result.out_of_fold, "out-of-fold predictions, all rows")):
        lines.append(f"\n{title} (n={part.n}), by {result.sensitive_feature}:")
        rows = [
            [
                g,
                part.by_group[g]["count"],
                part.by_group[g]["positives"],
                *(part.by_group[g][m] for m in SHOWN),
            ]
            for g in part.groups
        ]
        rows.append(
            [
                "overall",
                part.n,
                sum(part.by_group[g]["positives"] for g in part.groups),
                *(part.overall[m] for m in SHOWN),
            ]
        )
        lines.append(
            format_table(["group", "n", "disease", "accuracy", "selection", "TPR", "FNR", "FPR", "precision"], rows)
        )
        lines.append("\ngaps between groups with bootstrap 95% CI (an interval containing 0: no evidence of a gap):")
        lines.append(
            format_table(
                ["groups", "metric", "gap", "CI low", "CI high", "CI excludes 0"],
                [
                    [pair, m, gap[m].gap, gap[m].ci95[0], gap[m].ci95[1], "yes" if gap[m].excludes_zero else "no"]
                    for pair, gap in part.gaps.items()
                    for m in SHOWN
                ],
            )
        )
        lines.append("\nFairlearn between-groups difference (max - min) and ratio (min / max):")
        lines.append(
            format_table(["metric", "difference", "ratio"], [[m, part.difference[m], part.ratio[m]] for m in SHOWN])
        )
        lines.append(
            f"demographic parity difference {part.demographic_parity_difference:.3f}, "
            f"equalized odds difference {part.equalized_odds_difference:.3f}"
        )
    return "\n".join([*lines, mitigation_text(result)])


def mitigation_text(result: FairnessReport) -> str:
    mit = result.mitigation
    head = "\nmitigation: ThresholdOptimizer(equalized odds) fitted on out-of-fold training scores\n"
    if mit.skipped:
        return head + f"skipped: {mit.skipped}"
    rows = [
        [where, when, d.accuracy, d.selection_rate, d.demographic_parity_difference, d.equalized_odds_difference]
        for where, view in (("train_out_of_fold", mit.train_out_of_fold), ("held_out", mit.held_out))
        for when, d in (("before", view.before), ("after", view.after))
    ]
    return head + format_table(["rows", "", "accuracy", "selection", "DP difference", "EO difference"], rows)


def write(result: FairnessReport, out: str | Path, header: dict) -> tuple[Path, Path]:
    """<out>/fairness_<feature>.json (`header`, then the result) and .png."""
    out = Path(out)
    name = f"fairness_{result.sensitive_feature}"
    return write_json(out / f"{name}.json", {**header, **result.to_dict()}), plot_fairness(result, out / f"{name}.png")


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
        x = np.arange(len(SHOWN))
        for i, g in enumerate(groups):
            vals = [part.by_group[g][m] for m in SHOWN]
            ax.bar(x + (i - (len(groups) - 1) / 2) * width, vals, width, label=f"{g} (n={part.by_group[g]['count']})")
        ax.set_xticks(x, [m.replace("_", " ") for m in SHOWN], rotation=25, ha="right")
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


# ------------------------------------------------------------------------------ reports/index.html


def section(doc: dict, reports: Path, path: Path) -> dict:
    """One sensitive feature: groups, gaps with bootstrap CIs, and the mitigation before/after."""
    feature = doc["sensitive_feature"]
    oof = doc["out_of_fold"]
    clear = [
        f"{m.replace('_', ' ')} ({pair}: {g[m]['gap']:+.2f}, 95% CI {g[m]['ci95'][0]:+.2f} to {g[m]['ci95'][1]:+.2f})"
        for pair, g in oof["gaps"].items()
        for m in SHOWN
        if g[m].get("excludes_zero")
    ]
    summary = f"Across all {oof['n']} patients (out-of-fold predictions), " + (
        f"the gaps whose 95% interval excludes 0 are: {'; '.join(clear)}."
        if clear
        else "no gap between groups has a 95% interval that excludes 0: no evidence of a difference, "
        "though with this few patients the intervals are wide."
    )
    mit = doc.get("mitigation", {})
    if "held_out" in mit:
        b, a = mit["held_out"]["before"], mit["held_out"]["after"]
        summary += (
            f" The mitigation (equalized-odds thresholds per group) moves the held-out equalized-odds "
            f"difference from {b['equalized_odds_difference']:.3f} to {a['equalized_odds_difference']:.3f} "
            f"and accuracy from {b['accuracy']:.3f} to {a['accuracy']:.3f}."
        )
    boot = doc.get("bootstrap", {})
    command = (
        f"python fairness_check.py --sensitive {feature} --bootstrap {boot.get('resamples', 1000)} "
        f"--seed {boot.get('seed', 42)} --out-dir {reports}"
    )
    return {
        "doc": doc,
        "feature": feature,
        "label": BY_NAME[feature].description if feature in BY_NAME else feature,
        "metrics": SHOWN,
        "summary": summary,
        "command": command,
        "file": path.name,
        "plots": plots(reports, [(f"fairness_{feature}.png", f"Metrics by {feature}: held-out and out-of-fold")]),
    }
