"""Is the served probability a risk a clinician can read? python -m bench.calibration [--all]

5x5 repeated stratified CV over all 303 rows (the issue's protocol): ROC AUC and Brier
(mean ± sd over 25 folds) of the bare forest (before), the served Pipeline (forest in
CalibratedClassifierCV, sigmoid, cv=5, ensemble=False: after) and the logistic baseline;
--all adds sigmoid with ensemble=True and isotonic. Then the 10-bin reliability diagram of
the pooled out-of-fold predictions (each row 5 times), before and after, and the latency of
one SHAP explanation of the served model. Target: ROC AUC >= 0.91 and Brier <= 0.125.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from heart.analyses.report import format_table
from heart.attribution import PipelineExplainer
from heart.data import load_dataset
from heart.model import CALIBRATION, build_baseline, build_forest, cross_validate

from .label_check_sweep import DATA


def variants(everything: bool) -> dict:
    out = {
        "forest, bare (before)": build_forest(calibration=None),
        "forest + sigmoid, served (after)": build_forest(),
        "logistic baseline": build_baseline(),
    }
    if everything:
        out["forest + sigmoid, ensemble=True"] = build_forest(calibration={**CALIBRATION, "ensemble": True})
        out["forest + isotonic"] = build_forest(calibration={**CALIBRATION, "method": "isotonic"})
    return out


def explain_latency(data, calls: int = 200) -> tuple[float, float]:
    """Median and p95 milliseconds of one PipelineExplainer.explain call (one patient)."""
    pipeline = build_forest().fit(data.X, data.y)
    explainer = PipelineExplainer(pipeline)
    times = []
    for i in range(calls):
        row = data.X.iloc[[i % data.n_rows]]
        t0 = time.perf_counter()
        explainer.explain(row)
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times)), float(np.percentile(times, 95))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--all", action="store_true", help="also sigmoid with ensemble=True and isotonic")
    args = p.parse_args(argv)
    data = load_dataset(args.data)
    rows, diagrams = [], {}
    for name, pipe in variants(args.all).items():
        t0 = time.perf_counter()
        cv = cross_validate(pipe, data.X, data.y)
        diagrams[name] = cv["reliability"]
        rows.append(
            [
                name,
                f"{cv['roc_auc']['mean']:.4f} ± {cv['roc_auc']['sd']:.4f}",
                f"{cv['brier']['mean']:.4f} ± {cv['brier']['sd']:.4f}",
                f"{cv['accuracy']['mean']:.4f}",
                f"{time.perf_counter() - t0:.0f}",
            ]
        )
        print(f"done: {name}", flush=True)
    print("\n5x5 repeated stratified CV, all rows:")
    print(format_table(["model", "ROC AUC", "Brier", "accuracy", "seconds"], rows))
    shown = [n for n in diagrams if "before" in n or "after" in n]
    print("\nreliability, pooled out-of-fold predictions (count / mean predicted / observed rate):")
    table = []
    for b in range(10):
        line = [f"{b / 10:.1f}-{(b + 1) / 10:.1f}"]
        for n in shown:
            cell = diagrams[n][b]
            line.append(
                f"{cell['count']:4d} / {cell['mean_predicted']:.3f} / {cell['observed_rate']:.3f}"
                if cell["count"]
                else f"{0:4d} / - / -"
            )
        table.append(line)
    print(format_table(["bin", *shown], table))
    median, p95 = explain_latency(data)
    print(f"\nSHAP explanation of one patient (served model): median {median:.1f} ms, p95 {p95:.1f} ms")


if __name__ == "__main__":
    main()
