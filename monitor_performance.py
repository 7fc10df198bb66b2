"""Performance in production: python monitor_performance.py [--table URL | --log FILE ...] [--labels FILE]

Per time window (--window, daily by default, UTC) at the model card's decision threshold:
realized ROC AUC, Brier, recall, specificity and accuracy over the predictions that have a
label, with bootstrap 95% intervals and the label coverage; and the same figures estimated from
the served probabilities alone (CBPE), for every window, labelled or not. The estimate assumes
the model stays calibrated and the disease given the features has not changed (docs/monitoring.md).

Predictions: the server's inference table by default (--table: a database URL or a SQLite file;
default $DATABASE_URL, else the file $DATABASE_URL_FILE names, else $INFERENCE_DB, else
inference.db beside the card, where `make run` writes it), with the labels it holds; or the
API's prediction log(s) (--log, repeatable). Labels: --labels FILE, a CSV or JSON lines of
prediction_id and label (yes/no or 1/0, as the training data): stored into the table as POST
/feedback stores them (a label that contradicts a stored one is an error and nothing is
stored), or, with --log, joined to the logs in memory. Writes <out-dir>/performance.json and performance.png, and <out-dir>/index.html with its
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
    p.add_argument(
        "--table",
        help="the inference table: a database URL (postgresql://...) or a SQLite file (default $DATABASE_URL, "
        "$DATABASE_URL_FILE's, $INFERENCE_DB, else inference.db beside --card)",
    )
    p.add_argument("--log", action="append", help="prediction log(s) (JSON lines) instead of the table; repeatable")
    p.add_argument(
        "--labels", help="CSV or JSON lines of prediction_id and label: stored into the table (or joined to --log)"
    )
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
    p.add_argument("--seed", type=cli.seed, default=0, help=f"seed of the resampling (0 to {cli.SEED_MAX})")
    p.add_argument(
        "--out-dir", type=cli.output_dir, default="reports", help="where performance.json and performance.png go"
    )
    p.add_argument("--fail-on-degradation", action="store_true", help="exit 1 when a window is below a minimum")
    args = p.parse_args(argv)
    if args.log and args.table:
        p.error("--table and --log are two sources of predictions: give one")
    cli.check_report_files(p, args, "performance.json", "performance.png")
    return args


def table_url(args) -> str:
    """--table, else the server's own settings' order: DATABASE_URL, DATABASE_URL_FILE, INFERENCE_DB, the default."""
    given = args.table or os.environ.get("DATABASE_URL", "").strip()
    url_file = os.environ.get("DATABASE_URL_FILE", "").strip()
    if not given and url_file and Path(url_file).is_file():
        given = Path(url_file).read_text(encoding="utf-8-sig").strip()
    if not given:
        given = os.environ.get("INFERENCE_DB", "").strip() or str(Path(args.card).parent / "inference.db")
    return given if "://" in given else f"sqlite:///{Path(given).expanduser().resolve()}"


def read_predictions(args) -> pd.DataFrame:
    """The predictions of every source given, as one frame (heart.analyses.outcomes' columns): the
    prediction logs (--log), or the inference table with its labels."""
    if args.log:
        return outcomes.combine([outcomes.read_prediction_log(path) for path in args.log])
    return outcomes.read_table(table_url(args))


def store_labels(args, frame: pd.DataFrame | None, source: dict) -> pd.DataFrame | None:
    """--labels: joined to the logs in memory, or stored into the table (before it is read)."""
    labels = outcomes.read_labels(args.labels)
    source["labels"] = args.labels
    if args.log:
        frame, counts = outcomes.attach_labels(frame, labels)
        source["label_counts"] = vars(counts)
        print(
            f"labels: {args.labels}: {counts.given} rows, {counts.matched} matched a prediction, {counts.repeated} "
            f"repeated, {len(counts.unknown)} for predictions not in these logs"
        )
        return frame
    counts = outcomes.label_table(table_url(args), labels)
    source["label_counts"] = counts
    print(
        f"labels: {args.labels}: {labels.rows} rows, {counts['accepted']} stored, {counts['duplicate']} already "
        f"stored, {counts['unknown']} for predictions not in the inference table"
    )
    return None


def read_card(path: str) -> dict:
    try:
        card = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(
            path, "file not found: the decision threshold is the model card's (train.py writes it)"
        ) from None
    except (ValueError, IsADirectoryError) as e:
        raise DataError(path, f"not a JSON model card ({e})") from None
    if not isinstance(card, dict):
        raise DataError(path, "not a model card: expected a JSON object (train.py writes one)")
    missing = [key for key in ("model_version", "threshold") if key not in card]
    if missing:
        raise DataError(path, f"not a model card: no {' and no '.join(missing)} (train.py writes both)")
    threshold = card["threshold"]
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold < 1:
        raise DataError(path, f"'threshold' must be a number between 0 and 1, got {threshold!r}")
    return card


def main(argv=None) -> int:
    args = parse_args(argv)
    card = read_card(args.card)
    source: dict = {"card": args.card, "model_version": card.get("model_version")}
    frame = read_predictions(args) if args.log else None
    if args.labels:
        frame = store_labels(args, frame, source)
    if frame is None:
        frame = read_predictions(args)
    source["logs" if args.log else "table"] = sorted(set(frame["source"]))
    kind = "logs" if args.log else "table"
    minimums = args.minimum or list(performance.DEFAULT_MINIMUMS)
    report = performance.analyze(
        frame, threshold_of(card), args.window, args.bootstrap, args.seed, minimums, args.min_rows
    )
    versions = sorted(set(frame["model_version"]))
    print(f"predictions: {', '.join(source[kind])}: {len(frame)} records of model {', '.join(versions)}")
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
