"""Train the heart-disease model: python train.py [--data data/data.csv] [--out model.zip]

Checks first that the labels agree with the known risk factors (heart/label_check.py; a file
whose target is inverted is refused with exit 2 and nothing written: --flip-target fixes
such a file). Then fits the calibrated RandomForest Pipeline on a stratified 80/20 split,
cross-validates it (5x5) on the training part beside a logistic-regression baseline, prints
both, and writes model.zip (the Pipeline, its ONNX graph, reference probabilities and the card) with
a copy of the card beside it (model.card.json), atomically.
"""

from __future__ import annotations

import argparse
import sys

from heart import cli
from heart.analyses.report import format_table, mean_sd
from heart.artifact import card_path_for
from heart.data import MAX_DATA_BYTES, check_class_sizes, load_dataset
from heart.export import save_model
from heart.model import (
    CV_SPLITS,
    DEFAULT_SEED,
    DEFAULT_TEST_SIZE,
    FOREST_DEFAULTS,
    METRICS,
    TUNING_GRID,
    build_card,
    train,
)


def max_features(value: str):
    """--max-features takes an int (columns per split), a float fraction, or sqrt/log2."""
    if value in ("sqrt", "log2"):
        return value
    try:
        return int(value)
    except ValueError:
        try:
            return float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an int, a fraction, 'sqrt' or 'log2', got {value!r}")


def parse_args(argv):
    p = cli.parser(__doc__)
    p.add_argument("--data", default="data/data.csv", help="training CSV (see readme.md, 'Data card')")
    p.add_argument(
        "--out",
        type=cli.output_file,
        default="model.zip",
        help="model path; the card goes beside it as <name>.card.json",
    )
    p.add_argument(
        "--seed",
        type=cli.seed,
        default=DEFAULT_SEED,
        help=f"seed for the split, the CV folds and the forest (0 to {cli.SEED_MAX})",
    )
    p.add_argument("--test-size", type=cli.number(0.05, 0.5), default=DEFAULT_TEST_SIZE, help="held-out fraction")
    p.add_argument(
        "--n-estimators", type=cli.integer(1), default=FOREST_DEFAULTS["n_estimators"], help="trees in the forest"
    )
    p.add_argument(
        "--max-depth", type=cli.integer(0), default=FOREST_DEFAULTS["max_depth"], help="tree depth limit (0 = none)"
    )
    p.add_argument(
        "--min-samples-leaf",
        type=cli.integer(1),
        default=FOREST_DEFAULTS["min_samples_leaf"],
        help="fewest training rows in a leaf",
    )
    p.add_argument(
        "--max-features",
        type=max_features,
        default=FOREST_DEFAULTS["max_features"],
        help="columns tried per split: int, fraction, sqrt or log2",
    )
    p.add_argument(
        "--tune",
        action="store_true",
        help=f"grid-search {', '.join(TUNING_GRID)} on the training part's CV folds first "
        "(never on the test split); overrides those flags",
    )
    p.add_argument(
        "--no-cv", action="store_true", help="skip cross-validation (faster; the card then has test metrics only)"
    )
    cli.add_jobs_arg(p, "parallel CV fits")
    cli.add_quiet_arg(p)
    cli.add_label_args(p)
    p.add_argument(
        "--max-data-mb",
        type=cli.number(0, low_open=True),
        default=MAX_DATA_BYTES / 1e6,
        help="refuse a data file larger than this (it is read whole)",
    )
    args = p.parse_args(argv)
    cli.check_outputs(p, "--out", [card_path_for(args.out)])
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    data, labels = cli.checked_labels(load_dataset(args.data, max_bytes=int(args.max_data_mb * 1e6)), args)
    check_class_sizes(data, args.test_size, CV_SPLITS if args.tune or not args.no_cv else 1)
    balance = ", ".join(f"{k} {v}" for k, v in data.class_balance().items())
    print(
        f"data: {data.source}: {data.n_rows} rows ({balance}); "
        f"missing cells: {sum(data.missing.values())}"
        + (f"; legacy sentinels read as missing: {data.sentinels}" if data.sentinels else "")
        + (f"; ignored columns: {', '.join(data.ignored_columns)}" if data.ignored_columns else "")
    )
    print(
        f"labels: {'flipped by --flip-target; ' if labels['flipped'] else ''}"
        + (
            f"direction check {labels['verdict']}: {labels['summary']}"
            if "verdict" in labels
            else "direction check off (--no-label-check)"
        )
    )
    params = dict(
        n_estimators=args.n_estimators,
        max_depth=args.max_depth or None,
        min_samples_leaf=args.min_samples_leaf,
        max_features=args.max_features,
    )
    if args.tune:
        print("tuning on the training part's CV folds ...", flush=True)
    result = train(
        data,
        seed=args.seed,
        test_size=args.test_size,
        params=params,
        cv=not args.no_cv,
        tune_grid=TUNING_GRID if args.tune else None,
        n_jobs=args.jobs,
        stages=cli.stages(args),
    )
    if result.tuning:
        keys = list(TUNING_GRID)
        print(
            format_table(
                [*keys, "CV ROC AUC", "sd"],
                [[str(r[k]) for k in keys] + [r["cv_roc_auc"], r["cv_roc_auc_sd"]] for r in result.tuning[:10]],
            )
        )
        print()
    print(metrics_table(result.metrics))
    card = save_model(result.pipeline, build_card(result, data, args.seed, args.test_size, labels), args.out, data.X)
    print(
        f"\nwrote {args.out} and {card_path_for(args.out)} (model_version {card['model_version']}, "
        f"sha256 {card['artifact']['sha256'][:16]}...)"
    )
    return 0


def metrics_table(metrics: dict) -> str:
    models = list(metrics)
    headers = ["metric"]
    for m in models:
        headers += [f"{m} test"] + ([f"{m} CV (mean ± sd)"] if "cv" in metrics[m] else [])
    rows = []
    for metric in METRICS:
        row = [metric + (" (lower is better)" if metric == "brier" else "")]
        for m in models:
            row.append(metrics[m]["test"][metric])
            if "cv" in metrics[m]:
                row.append(mean_sd(metrics[m]["cv"][metric]))
        rows.append(row)
    return format_table(headers, rows)


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
