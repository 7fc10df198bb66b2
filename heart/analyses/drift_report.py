"""The drift analysis at the edge: the text drift_analysis_ks.py prints, its plot, its files and its
section of reports/index.html (the layout of every <analysis>_report module)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..data import Dataset
from ..schema import BY_NAME
from .report import _pyplot, format_table, plots, save_figure, write_json

if TYPE_CHECKING:  # annotations only: importing the analysis would pull in its statistics
    from .drift import DriftReport


def _p(p: float | None) -> str:
    return "n/a" if p is None or p != p else f"{p:.2g}"


def current_name(source: dict) -> str:
    """The current data as the text, the plot and the page name it: its file, or how it was drawn."""
    return source.get("file", source["kind"])


def method(correction: str) -> str:
    return "Benjamini-Hochberg" if correction == "bh" else "Bonferroni"


def text(result: DriftReport, reference: Dataset, source: dict) -> str:
    """The data compared, a row per feature (test, p-values, effect sizes, verdict), the verdict."""
    rows = [
        [
            f.feature,
            f.kind,
            f.test,
            f.statistic,
            _p(f.p_value),
            _p(f.p_adjusted),
            f.psi,
            f.wasserstein if f.wasserstein is not None else "",
            "DRIFT" if f.drifted else "ok",
        ]
        for f in result.features
    ]
    return "\n".join(
        [
            f"reference: {reference.source} ({reference.n_rows} rows); current: "
            f"{current_name(source)} ({result.n_current} rows)",
            format_table(
                ["feature", "kind", "test", "statistic", "p", "p adjusted", "PSI", "Wasserstein", "verdict"], rows
            ),
            f"\n{len(result.drifted_features)} of {len(result.features)} features drifted "
            f"({method(result.correction)}-adjusted p < {result.alpha}): share {result.share_drifted:.2f} vs "
            f"threshold {result.share_threshold} -> "
            f"{'DATA SET DRIFT' if result.dataset_drift else 'no data-set drift'}",
        ]
    )


def write(
    result: DriftReport, out: str | Path, reference: Dataset, current: pd.DataFrame, source: dict
) -> tuple[Path, Path]:
    """<out>/drift.json (the data compared, then the result) and drift.png."""
    out = Path(out)
    json_path = write_json(
        out / "drift.json",
        {"reference": {"file": reference.source, "sha256": reference.sha256}, "current": source, **result.to_dict()},
    )
    png = plot_drift(
        reference.X,
        current,
        result,
        out / "drift.png",
        title=f"Training data vs {current_name(source)}: "
        f"{len(result.drifted_features)}/{len(result.features)} features drifted",
    )
    return json_path, png


def plot_drift(reference, current, result: DriftReport, path: str | Path, title: str = "") -> Path:
    """Reference vs current per feature: densities for continuous, code shares for discrete."""
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
        verdict = "DRIFT" if fr.drifted else "ok"
        ax.set_title(
            f"{f.name} [{fr.test}] p_adj={_p(fr.p_adjusted)} {verdict}",
            fontsize=9,
            color="#c0392b" if fr.drifted else "black",
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


# ------------------------------------------------------------------------------ reports/index.html


def section(doc: dict, reports: Path, path: Path) -> dict:
    cur = doc["current"]
    summary = (
        f"{len(doc['drifted_features'])} of {len(doc['features'])} features differ from the training data "
        f"({method(doc['correction'])}-adjusted p < {doc['alpha']}); the share {doc['share_drifted']:.2f} against "
        f"the threshold {doc['share_threshold']} means "
        f"{'the data set has drifted' if doc['dataset_drift'] else 'no data-set drift'}. "
        f"Current data: {current_name(cur)} ({doc['n_current']} rows)."
    )
    if cur["kind"] == "csv":
        source = f"--current {cur['file']}"
    elif cur["kind"] == "prediction_log":
        source = f"--from-log {cur['file']}"
    else:
        mode = cur["kind"].split("(")[-1].rstrip(")") if "(" in cur["kind"] else "uniform"
        source = f"--samples {cur.get('n', 100)} --seed {cur.get('seed', 42)} --mode {mode}"
    command = (
        f"python drift_analysis_ks.py {source} --alpha {doc['alpha']} --correction {doc['correction']} "
        f"--share-threshold {doc['share_threshold']} --out-dir {reports}"
    )
    return {
        "doc": doc,
        "summary": summary,
        "command": command,
        "plots": plots(reports, [("drift.png", "Training data vs current data, per feature")]),
    }
