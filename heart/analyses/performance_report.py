"""The performance analysis at the edge: the text monitor_performance.py prints, its plot, its files
and its section of reports/index.html (the layout of every <analysis>_report module)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .performance import METRICS, PerformanceReport, WindowPerformance
from .report import _pyplot, format_table, plots, save_figure, write_json

SHOWN = ("accuracy", "roc_auc", "recall", "specificity")  # the plot's panels: Brier is in the tables
LABELS = {
    "roc_auc": "ROC AUC",
    "accuracy": "accuracy",
    "recall": "recall",
    "specificity": "specificity",
    "brier": "Brier",
}


def cell(value: float, ci: list[float]) -> str:
    """0.840 [0.812, 0.866]; n/a where undefined (no labels, one class)."""
    if value is None or value != value:
        return "n/a"
    lo, hi = ci
    return f"{value:.3f}" + ("" if lo is None or lo != lo else f" [{lo:.3f}, {hi:.3f}]")


def _when(w: WindowPerformance, width: pd.Timedelta) -> str:
    return _when_text(w.start, width)


def _when_text(start: str, width) -> str:
    """A window's start, as a date for windows of a day or more."""
    daily = pd.Timedelta(width) >= pd.Timedelta(days=1)
    return pd.Timestamp(start).strftime("%Y-%m-%d" if daily else "%Y-%m-%d %H:%M")


def tables(report: PerformanceReport) -> str:
    """Estimated (every window) and realized (labelled windows) by window, then the whole period."""
    width = pd.Timedelta(report.window)
    rows = [[_when(w, width), w.n, *(cell(f.value, f.ci95) for f in w.estimated.values())] for w in report.windows]
    estimated = format_table(["window (UTC)", "n", *(LABELS[m] for m in METRICS)], rows)
    rows = [
        [_when(w, width), w.n_labelled, w.label_coverage, *(cell(f.value, f.ci95) for f in w.realized.values())]
        for w in report.windows
    ]
    realized = format_table(["window (UTC)", "labelled", "coverage", *(LABELS[m] for m in METRICS)], rows, digits=2)
    o = report.overall
    overall = format_table(
        ["whole period", "estimated (CBPE)", f"realized ({o.n_labelled} of {o.n} labelled)"],
        [
            [LABELS[m], cell(o.estimated[m].value, o.estimated[m].ci95), cell(o.realized[m].value, o.realized[m].ci95)]
            for m in METRICS
        ],
    )
    return "\n\n".join(
        [
            f"Estimated without labels (CBPE), per {report.window} window, threshold {report.threshold:g}:\n{estimated}",
            f"Realized over the labelled predictions:\n{realized}",
            overall,
        ]
    )


def verdict(report: PerformanceReport) -> str:
    if not report.minimums:
        return "degradation check: no minimum set (--minimum KIND.METRIC=VALUE)"
    head = f"degradation check ({', '.join(map(str, report.minimums))}; windows of at least {report.min_rows} rows): "
    if not report.breaches:
        return head + "no window below a minimum"
    lines = [
        f"  {_when_text(b.window, report.window)}: {b.kind} {LABELS[b.metric]} {cell(b.value, b.ci95)} < {b.minimum:g}"
        for b in report.breaches
    ]
    return head + f"DEGRADED: {len(report.breaches)} figure(s) below a minimum\n" + "\n".join(lines)


def text(report: PerformanceReport) -> str:
    return tables(report) + "\n\n" + verdict(report)


def write(report: PerformanceReport, out: str | Path, source: dict) -> tuple[Path, Path]:
    """<out>/performance.json (the result, then what it read) and performance.png."""
    out = Path(out)
    json_path = write_json(out / "performance.json", {**report.to_dict(), "source": source})
    return json_path, plot_performance(report, out / "performance.png")


def plot_performance(report: PerformanceReport, path: str | Path) -> Path:
    """Per metric, estimated (line, 95% band) and realized (points, 95% bars) by window; label
    coverage and rows below. A minimum set for a metric is a dashed line."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(SHOWN) + 1, 1, figsize=(10, 2.6 * (len(SHOWN) + 1)), sharex=True)
    x = np.array([pd.Timestamp(w.start).tz_convert(None) for w in report.windows])
    for ax, metric in zip(axes, SHOWN):
        est = np.array([[w.estimated[metric].value, *w.estimated[metric].ci95] for w in report.windows], dtype=float)
        real = np.array([[w.realized[metric].value, *w.realized[metric].ci95] for w in report.windows], dtype=float)
        ax.plot(x, est[:, 0], marker=".", color="#1f77b4", label="estimated (CBPE)")
        ax.fill_between(x, est[:, 1], est[:, 2], color="#1f77b4", alpha=0.2, lw=0)
        shown = ~np.isnan(real[:, 0])
        if shown.any():
            err = np.abs(real[shown][:, 1:].T - real[shown][:, 0])
            ax.errorbar(
                x[shown],
                real[shown, 0],
                yerr=np.nan_to_num(err),
                fmt="o",
                color="#d62728",
                capsize=3,
                label="realized (labelled)",
            )
        floors: dict[float, list[str]] = {}
        for m in report.minimums:
            if m.metric == metric:
                floors.setdefault(m.value, []).append(m.kind)
        for value, kinds in floors.items():
            ax.axhline(value, ls="--", lw=1, color="#555", label=f"minimum ({', '.join(kinds)})")
        ax.set_ylabel(LABELS[metric])
        floor = np.nanmin([*est[:, 1], *real[:, 1], *(m.value for m in report.minimums if m.metric == metric), 1])
        ax.set_ylim(max(0, np.floor(10 * floor - 0.5) / 10), 1.02)
        ax.grid(alpha=0.3)
    for ax in axes[:-1]:
        ax.legend(fontsize=7, loc="lower left", bbox_to_anchor=(0, 1.0), ncol=3, frameon=False)
    cov = axes[-1]
    cov.bar(x, [w.label_coverage for w in report.windows], width=_bar_width(report), color="#2ca02c")
    for xi, w in zip(x, report.windows):
        cov.annotate(f"n={w.n}", (xi, 0.02), fontsize=7, ha="center", rotation=90, va="bottom")
    cov.set_ylabel("label coverage")
    cov.set_ylim(0, 1.02)
    fig.suptitle(f"Performance per {report.window} window (UTC): estimated vs realized, 95% intervals")
    fig.autofmt_xdate()
    fig.tight_layout()
    return save_figure(fig, path)


def _bar_width(report: PerformanceReport) -> float:
    return 0.8 * pd.Timedelta(report.window) / pd.Timedelta(days=1)  # matplotlib dates are in days


# ------------------------------------------------------------------------------ reports/index.html

CAPTION = "Estimated (line, 95% band) and realized (points, 95% CI) performance by window; label coverage"


def section(doc: dict, reports: Path, path: Path) -> dict:
    """The HTML report's section from performance.json: a summary, the command, the tables and the plot."""
    o = doc["overall"]
    est, real = o["estimated"], o["realized"]
    summary = (
        f"{o['n']} predictions in {len(doc['windows'])} window(s) of {doc['window']}; {o['n_labelled']} have a label "
        f"({_pct(o['label_coverage'])}). Estimated from the probabilities alone (CBPE): accuracy "
        f"{_fig(est['accuracy'])}, ROC AUC {_fig(est['roc_auc'])}. "
    )
    summary += (
        f"Realized on the labelled ones: accuracy {_fig(real['accuracy'])}, ROC AUC {_fig(real['roc_auc'])}. "
        if o["n_labelled"]
        else "No labels yet: only the estimate. "
    )
    summary += (
        "The estimate assumes the model stays calibrated and the disease given the features has not changed; "
        "only labels can show that it has."
    )
    if doc.get("minimums"):
        summary += f" Degradation check ({', '.join(doc['minimums'])}): " + (
            f"{len(doc['breaches'])} window(s) below a minimum." if doc["degraded"] else "no window below a minimum."
        )
    source = doc.get("source", {})
    flags = [f"--log {f}" for f in source.get("logs", [])] + [f"--card {source.get('card', 'model.card.json')}"]
    flags += [f"--labels {source['labels']}"] if source.get("labels") else []
    flags += [f"--window {doc['window']}", *(f"--minimum {m}" for m in doc.get("minimums", []))]
    flags += [f"--min-rows {doc['min_rows']}", f"--bootstrap {doc['bootstrap']}", f"--seed {doc['seed']}"]
    command = " ".join(["python monitor_performance.py", *flags, f"--out-dir {reports}"])
    width = doc["window"]
    return {
        "doc": doc,
        "summary": summary,
        "command": command,
        "labels": [LABELS[m] for m in METRICS],
        "estimated": [
            [_when_text(w["start"], width), w["n"], *(_fig(w["estimated"][m]) for m in METRICS)] for w in doc["windows"]
        ],
        "realized": [
            [_when_text(w["start"], width), w["n_labelled"], _pct(w["label_coverage"])]
            + [_fig(w["realized"][m]) for m in METRICS]
            for w in doc["windows"]
        ],
        "overall": [[LABELS[m], _fig(o["estimated"][m]), _fig(o["realized"][m])] for m in METRICS],
        "plots": plots(reports, [("performance.png", CAPTION)]),
    }


def _fig(f: dict) -> str:
    value, ci = f["value"], f["ci95"]
    return cell(np.nan if value is None else value, [np.nan if v is None else v for v in ci])


def _pct(x) -> str:
    return "n/a" if x is None else f"{x:.0%}"
