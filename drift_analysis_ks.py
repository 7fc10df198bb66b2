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

import pandas as pd

from heart import cli
from heart.analyses import drift, drift_report
from heart.data import Dataset, load_dataset
from heart.model import DEFAULT_SEED
from heart.predlog import load_prediction_log
from heart.samples import MODES, sample


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
    p.add_argument(
        "--seed", type=cli.seed, default=DEFAULT_SEED, help=f"seed for the random patients (0 to {cli.SEED_MAX})"
    )
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
    p.add_argument("--out-dir", type=cli.output_dir, default="reports", help="where drift.json and drift.png go")
    p.add_argument("--fail-on-drift", action="store_true", help="exit 1 when the data set drifted (for CI / cron)")
    args = p.parse_args(argv)
    cli.check_report_files(p, args, "drift.json", "drift.png")
    return args


def read_current(args, reference: Dataset) -> tuple[pd.DataFrame, dict]:
    """The current data and how to name it in the report: a CSV, the prediction log or random patients."""
    if args.current:
        current = load_dataset(args.current, require_target=False)
        return current.X, {"kind": "csv", "file": current.source, "sha256": current.sha256}
    if args.from_log:
        current = load_prediction_log(args.from_log)
        return current.X, {"kind": "prediction_log", "file": current.source, "sha256": current.sha256}
    X_cur = sample(args.samples, seed=args.seed, mode=args.mode, reference=reference.X)
    return X_cur, {"kind": f"random samples ({args.mode})", "n": args.samples, "seed": args.seed}


def main(argv=None) -> int:
    args = parse_args(argv)
    reference = load_dataset(args.data)
    X_cur, source = read_current(args, reference)
    result = drift.drift_report(
        reference.X, X_cur, alpha=args.alpha, correction=args.correction, share_threshold=args.share_threshold
    )
    print(drift_report.text(result, reference, source))
    json_path, png = drift_report.write(result, args.out_dir, reference, X_cur, source)
    print(f"wrote {json_path} and {png}")
    return cli.EXIT_FAILED if args.fail_on_drift and result.dataset_drift else 0


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
