"""Send random patients to the prediction API and measure it: python batch_predict.py [-n 100]

Draws N seeded patients from the feature schema (uniformly over each feature's typical range,
or from the training data's marginals), posts each as its own request to /predict with a
few requests in flight (or in chunks to /predict/batch with --batch), keeps one record per
patient (prediction, trace_id, HTTP status, latency, error) and writes them with a summary
to a JSON file. Exits 1 if any request failed (the reasons are grouped on stderr). An API
that requires a bearer token gets the one in the environment variable API_TOKEN.
"""

from __future__ import annotations

import os
import sys
import time

from heart import cli
from heart.analyses.report import format_table, write_json
from heart.clients.client import (
    DEFAULT_BACKOFF,
    DEFAULT_CONCURRENCY,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    DEFAULT_URL,
    TOKEN_ENV,
    Progress,
    Unreachable,
    check_url,
    predict_batches,
    predict_each,
)
from heart.clients.summary import records_json, summarize_records, summary_rows
from heart.data import load_dataset
from heart.samples import MODES, sample, to_records
from heart.serving.contract import MAX_BATCH

MAX_PATIENTS = 100_000  # all held in memory until the one report is written: ~0.9 GB RSS at this (docs/clients.md)


def api_url(value: str) -> str:
    why = check_url(value)
    if why:
        raise cli.argparse.ArgumentTypeError(why)
    return value


def parse_args(argv):
    p = cli.parser(__doc__)
    p.add_argument(
        "--url",
        type=api_url,
        default=os.environ.get("API_URL", DEFAULT_URL),
        help="the API's /predict URL (environment: API_URL); --batch derives /predict/batch from it",
    )
    p.add_argument(
        "-n",
        "--n",
        type=cli.integer(1, MAX_PATIENTS),
        default=100,
        help=f"number of random patients, at most {MAX_PATIENTS:,} (held in memory; for more, run again with "
        "another --seed)",
    )
    p.add_argument("--seed", type=cli.seed, default=0, help=f"seed of the random patients (0 to {cli.SEED_MAX})")
    p.add_argument(
        "--sampling",
        choices=MODES,
        default="uniform",
        help="uniform over each feature's typical range, or the training data's marginals",
    )
    p.add_argument("--data", default="data/data.csv", help="training CSV that --sampling marginal draws from")
    p.add_argument("--concurrency", type=cli.integer(1), default=DEFAULT_CONCURRENCY, help="requests in flight at once")
    p.add_argument(
        "--timeout",
        type=cli.number(0, low_open=True),
        default=DEFAULT_TIMEOUT,
        help="seconds to wait for each response (a timeout is a failure, never retried)",
    )
    p.add_argument(
        "--retries",
        type=cli.integer(0),
        default=DEFAULT_RETRIES,
        help=f"retries after a connection error only, with exponential backoff from {DEFAULT_BACKOFF} s",
    )
    p.add_argument("--batch", action="store_true", help="post the patients to /predict/batch instead, in chunks")
    p.add_argument(
        "--batch-size", type=cli.integer(1, MAX_BATCH), default=MAX_BATCH, help="rows per /predict/batch request"
    )
    p.add_argument(
        "--out",
        type=cli.output_file,
        default="batch_prediction_results.json",
        help="JSON report: summary and per-patient records (a new file, or a regular file to replace)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    reference = load_dataset(args.data).X if args.sampling == "marginal" else None
    patients = to_records(sample(args.n, seed=args.seed, mode=args.sampling, reference=reference))
    progress = Progress(len(patients), "patients", enabled=False if args.quiet else None)
    start = time.perf_counter()
    calls = dict(concurrency=args.concurrency, timeout=args.timeout, retries=args.retries, progress=progress)
    calls["token"] = os.environ.get(TOKEN_ENV)  # an API that requires a token (API_AUTH=tokens)
    try:
        if args.batch:
            records = predict_batches(args.url, patients, batch_size=args.batch_size, **calls)
        else:
            records = predict_each(args.url, patients, **calls)
    except Unreachable as e:
        progress.close()
        print(f"error: {e}", file=sys.stderr)
        return cli.EXIT_FAILED
    wall = time.perf_counter() - start
    progress.close()
    summary = summarize_records(records, wall)
    settings = {
        "url": args.url,
        "mode": "batch" if args.batch else "per-sample",
        "n": args.n,
        "seed": args.seed,
        "sampling": args.sampling,
        "concurrency": args.concurrency,
        "timeout_s": args.timeout,
        "retries": args.retries,
    }
    write_json(args.out, {"settings": settings, "summary": summary, "records": records_json(records)})
    print(format_table(["figure", "value"], summary_rows(summary), digits=2))
    print(f"\nwrote {args.out} ({len(records)} records)")
    if summary["failures"]:
        print(f"error: {summary['failures']} of {summary['requests']} requests failed:", file=sys.stderr)
        for reason, count in summary["failure_reasons"].items():
            print(f"  {count:5d}  {reason}", file=sys.stderr)
        return cli.EXIT_FAILED
    return cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
