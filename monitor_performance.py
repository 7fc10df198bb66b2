"""Performance in production: python monitor_performance.py [--log FILE ...] [--labels FILE]

Per time window (--window, daily by default, UTC) at the model card's decision threshold:
realized ROC AUC, Brier, recall, specificity and accuracy over the predictions that have a
label, with bootstrap 95% intervals and the label coverage; and the same figures estimated from
the served probabilities alone (CBPE), for every window, labelled or not. The estimate assumes
the model stays calibrated and the disease given the features has not changed (docs/monitoring.md).

Predictions: the API's prediction log(s) (--log, repeatable; default $PREDICTION_LOG). Labels:
--labels FILE, a CSV or JSON lines of prediction_id and label (yes/no or 1/0, as the training
data). Writes <out-dir>/performance.json and performance.png, and <out-dir>/index.html with its
section (heart.analyses.html_report). --fail-on-degradation exits 1 when a window's figure is
below a --minimum (for a cron job or CI).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import pandas as pd

from heart import cli
from heart.analyses import html_report, outcomes, performance, performance_report
from heart.data import DataError
from heart.decision import threshold_of


def argument(parse, keep_text: bool = False):
    """An argparse type from a parser raising ValueError: its message becomes the usage error."""

    def convert(text: str):
        try:
            value = parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return text.strip() if keep_text else value

    convert.__name__ = parse.__name__.removeprefix("parse_")
    return convert


def parse_args(argv):
    p = cli.parser(__doc__)
    p.add_argument("--log", action="append", help="a prediction log (JSON lines); repeatable (default $PREDICTION_LOG)")
    p.add_argument("--labels", help="CSV or JSON lines of prediction_id and label, joined to the predictions by id")
    p.add_argument("--card", default="model.card.json", help="the model card: its decision threshold")
    p.add_argument(
        "--window",
        type=argument(performance.parse_window, keep_text=True),
        default=performance.DEFAULT_WINDOW,
        help="e.g. 1D, 6h",
    )
    p.add_argument(
        "--minimum",
        type=argument(performance.parse_minimum),
        action="append",
        help="KIND.METRIC=VALUE, KIND estimated or realized, e.g. realized.recall=0.7; repeatable "
        f"(default: {' '.join(map(str, performance.DEFAULT_MINIMUMS))})",
    )
    p.add_argument(
        "--min-rows", type=cli.integer(1), default=performance.MIN_ROWS, help="rows a window needs to be judged"
    )
    p.add_argument("--bootstrap", type=cli.integer(100), default=performance.N_BOOT, help="resamples and label draws")
    p.add_argument("--seed", type=int, default=0, help="seed of the resampling")
    p.add_argument("--out-dir", default="reports", help="where performance.json and performance.png go")
    p.add_argument("--fail-on-degradation", action="store_true", help="exit 1 when a window is below a minimum")
    return p.parse_args(argv)


def read_predictions(args) -> pd.DataFrame:
    """The predictions of every source given, as one frame (heart.analyses.outcomes' columns).
    A new source (the inference table) is one more entry in `frames`."""
    logs = args.log or ([os.environ["PREDICTION_LOG"]] if os.environ.get("PREDICTION_LOG") else [])
    frames = [outcomes.read_prediction_log(path) for path in logs]
    if not frames:
        raise DataError("--log", "no predictions to read: give --log FILE (the API's PREDICTION_LOG)")
    return outcomes.combine(frames)


def read_card(path: str) -> dict:
    try:
        card = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(
            path, "file not found: the decision threshold is the model card's (train.py writes it)"
        ) from None
    except (ValueError, IsADirectoryError) as e:
        raise DataError(path, f"not a JSON model card ({e})") from None
    if not isinstance(card, dict) or not 0 < threshold_of(card) < 1:
        raise DataError(path, "not a model card with a threshold between 0 and 1")
    return card


def main(argv=None) -> int:
    args = parse_args(argv)
    card = read_card(args.card)
    frame = read_predictions(args)
    source = {"logs": sorted(set(frame["source"])), "card": args.card, "model_version": card.get("model_version")}
    if args.labels:
        labels = outcomes.read_labels(args.labels)
        frame, counts = outcomes.attach_labels(frame, labels)
        source.update(labels=args.labels, label_counts=vars(counts))
        print(
            f"labels: {args.labels}: {counts.given} rows, {counts.matched} matched a prediction, {counts.repeated} "
            f"repeated, {len(counts.unknown)} for predictions not in these logs"
        )
    minimums = args.minimum or list(performance.DEFAULT_MINIMUMS)
    report = performance.analyze(
        frame, threshold_of(card), args.window, args.bootstrap, args.seed, minimums, args.min_rows
    )
    versions = sorted(set(frame["model_version"]))
    print(f"predictions: {', '.join(source['logs'])}: {len(frame)} records of model {', '.join(versions)}")
    if report.class_mismatches:
        print(f"note: {report.class_mismatches} served classes differ from the card's threshold", file=sys.stderr)
    if card.get("model_version") not in versions:
        print(
            f"note: {args.card} is model {card.get('model_version')}: is it the model that served these?",
            file=sys.stderr,
        )
    print("\n" + performance_report.text(report))
    json_path, png = performance_report.write(report, args.out_dir, source)
    page = html_report.refresh(Path(args.out_dir), args.card)
    print(f"wrote {json_path}, {png}" + (f" and {page}" if page else ""))
    return cli.EXIT_FAILED if args.fail_on_degradation and report.degraded else cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
