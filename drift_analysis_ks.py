"""Data drift against the training data: python drift_analysis_ks.py [--current FILE.csv | --from-log FILE]

Per feature, the test its schema kind calls for: two-sample Kolmogorov-Smirnov for continuous
features, chi-squared on the code counts for binary and categorical ones; effect sizes (PSI,
and Wasserstein distance in the feature's unit for continuous ones); p-values adjusted for
13 tests (Benjamini-Hochberg by default, or Bonferroni). The data set drifts when the share
of drifted features reaches --share-threshold. Current data: --samples random patients from
the schema (default, as the course script did), a CSV, or the API's JSON-lines prediction log.
Writes <out-dir>/drift.json and drift.png.
"""

from __future__ import annotations

import sys
from pathlib import Path

from heart import cli
from heart.analyses import drift
from heart.analyses.report import format_table, plot_drift, write_json
from heart.data import load_dataset
from heart.model import DEFAULT_SEED
from heart.predlog import load_prediction_log
from heart.samples import MODES, sample


def _p(p: float) -> str:
    return "n/a" if p != p else f"{p:.2g}"


def parse_args(argv):
    p = cli.parser(__doc__)
    p.add_argument("--data", default="data/data.csv", help="reference data: the training CSV")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--current", help="current data as a CSV (the target column is optional)")
    src.add_argument("--from-log", help='current data from the API\'s PREDICTION_LOG (JSON lines with "inputs")')
    p.add_argument(
        "--samples",
        type=cli.integer(2),
        default=100,
        help="random patients when neither --current nor --from-log is given",
    )
    p.add_argument(
        "--mode",
        default="uniform",
        choices=MODES,
        help="random patients: uniform over the schema's typical ranges (drifts by design), or "
        "drawn from the training marginals",
    )
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed for the random patients")
    p.add_argument(
        "--alpha",
        type=cli.number(0, 1, low_open=True),
        default=drift.ALPHA,
        help="significance level for the adjusted p-values",
    )
    p.add_argument(
        "--correction",
        default="bh",
        choices=drift.CORRECTIONS,
        help="multiple-testing correction: Benjamini-Hochberg (false discovery rate) or Bonferroni",
    )
    p.add_argument(
        "--share-threshold",
        type=cli.number(0, 1, low_open=True),
        default=drift.SHARE_THRESHOLD,
        help="data-set drift when at least this share of features drifted",
    )
    p.add_argument("--out-dir", default="reports", help="where drift.json and drift.png go")
    p.add_argument("--fail-on-drift", action="store_true", help="exit 1 when the data set drifted (for CI / cron)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    reference = load_dataset(args.data)
    if args.current:
        current = load_dataset(args.current, require_target=False)
        source = {"kind": "csv", "file": current.source, "sha256": current.sha256}
        X_cur = current.X
    elif args.from_log:
        current = load_prediction_log(args.from_log)
        source = {"kind": "prediction_log", "file": current.source, "sha256": current.sha256}
        X_cur = current.X
    else:
        X_cur = sample(args.samples, seed=args.seed, mode=args.mode, reference=reference.X)
        source = {"kind": f"random samples ({args.mode})", "n": args.samples, "seed": args.seed}
    result = drift.drift_report(
        reference.X, X_cur, alpha=args.alpha, correction=args.correction, share_threshold=args.share_threshold
    )
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
    print(
        f"reference: {reference.source} ({reference.n_rows} rows); current: "
        f"{source.get('file', source['kind'])} ({len(X_cur)} rows)"
    )
    print(
        format_table(["feature", "kind", "test", "statistic", "p", "p adjusted", "PSI", "Wasserstein", "verdict"], rows)
    )
    method = "Benjamini-Hochberg" if args.correction == "bh" else "Bonferroni"
    print(
        f"\n{len(result.drifted_features)} of {len(result.features)} features drifted ({method}-adjusted p < "
        f"{args.alpha}): share {result.share_drifted:.2f} vs threshold {args.share_threshold} -> "
        f"{'DATA SET DRIFT' if result.dataset_drift else 'no data-set drift'}"
    )
    out = Path(args.out_dir)
    json_path = write_json(
        out / "drift.json",
        {"reference": {"file": reference.source, "sha256": reference.sha256}, "current": source, **result.to_dict()},
    )
    png = plot_drift(
        reference.X,
        X_cur,
        result,
        out / "drift.png",
        title=f"Training data vs {source.get('file', source['kind'])}: "
        f"{len(result.drifted_features)}/{len(result.features)} features drifted",
    )
    print(f"wrote {json_path} and {png}")
    return cli.EXIT_FAILED if args.fail_on_drift and result.dataset_drift else 0


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
