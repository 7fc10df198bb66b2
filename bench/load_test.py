"""Bounded load test of the API: python -m bench.load_test [--users 50] [--run-time 20s]

Starts `python heart_fastapi.py` on a free port of 127.0.0.1 (unless --host points at a
running API), runs `locust -f locustfile.py` headless against it, writes Locust's CSV and
HTML reports into --out-dir, stops the server, prints the figures and exits 1 if any request
failed or p95 is over --max-p95-ms. `make load` runs it after training a model if missing.
"""

from __future__ import annotations

import sys
from pathlib import Path

from heart import cli
from heart.analyses.report import format_table
from heart.clients.harness import ApiServer, LoadTestError, gate, run_locust


def parse_args(argv):
    p = cli.parser(__doc__)
    p.add_argument("--model", default="model.zip", help="model the started API serves (make train writes it)")
    p.add_argument("--host", default="", help="load an API already running here instead of starting one")
    p.add_argument("--users", type=cli.integer(1), default=50, help="simulated users")
    p.add_argument("--spawn-rate", type=cli.number(0, low_open=True), default=10, help="users started per second")
    p.add_argument("--run-time", default="20s", help="how long the load lasts (Locust syntax: 20s, 1m)")
    p.add_argument(
        "--max-p95-ms",
        type=cli.number(0, low_open=True),
        default=250.0,
        help="fail if the overall p95 latency is above this",
    )
    p.add_argument(
        "--request-timeout",
        type=cli.number(0, low_open=True),
        default=10.0,
        help="client timeout per request (s); a timeout fails",
    )
    p.add_argument("--workers", type=cli.integer(1), default=1, help="uvicorn worker processes of the started API")
    p.add_argument("--out-dir", default="reports", help="where the CSV, HTML, summary JSON and server log go")
    p.add_argument("--name", default="load", help="file name prefix of the reports")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prefix = out / args.name
    extra = ["--request-timeout", str(args.request_timeout)]
    try:
        if args.host:
            rc, summary, output = run_locust(
                args.host,
                args.users,
                args.spawn_rate,
                args.run_time,
                prefix,
                f"{prefix}.html",
                f"{prefix}.summary.json",
                extra,
            )
        else:
            if not Path(args.model).exists():
                raise FileNotFoundError(f"{args.model} not found: train one first (make train)")
            with ApiServer(Path(args.model).resolve(), log=f"{prefix}_server.log", workers=args.workers) as api:
                print(
                    f"API ready at {api.url} (model {args.model}, {args.workers} worker(s)); "
                    f"{args.users} users for {args.run_time} ...",
                    flush=True,
                )
                rc, summary, output = run_locust(
                    api.url,
                    args.users,
                    args.spawn_rate,
                    args.run_time,
                    prefix,
                    f"{prefix}.html",
                    f"{prefix}.summary.json",
                    extra,
                )
    except LoadTestError as e:
        print(f"error: {e}", file=sys.stderr)
        return cli.EXIT_FAILED
    rows = [
        [name, e["requests"], e["failures"], e["p95_ms"], e["p99_ms"]] for name, e in summary["by_endpoint"].items()
    ]
    lat = summary["latency_ms"]
    rows.append(["all", summary["requests"], summary["failures"], lat["p95"], lat["p99"]])
    print(format_table(["endpoint", "requests", "failures", "p95 ms", "p99 ms"], rows, digits=0))
    print(
        f"\nthroughput {summary['throughput_per_s']:.1f} req/s over {summary['duration_s']:.1f} s; "
        f"p50 {lat['p50']:.0f} ms, p95 {lat['p95']:.0f} ms, p99 {lat['p99']:.0f} ms, max {lat['max']:.0f} ms; "
        f"timeouts {summary['timeouts']}"
    )
    print(f"reports: {prefix}_stats.csv, {prefix}_failures.csv, {prefix}.html, {prefix}.summary.json")
    reasons = gate(summary, args.max_p95_ms)
    if reasons:
        for r in reasons:
            print(f"error: {r}", file=sys.stderr)
        return cli.EXIT_FAILED
    if rc != 0:  # Locust's own verdict (e.g. an exception in a task) even when the figures look fine
        print(f"error: locust exited with code {rc}", file=sys.stderr)
        return cli.EXIT_FAILED
    print(f"passed: no failed request, p95 within {args.max_p95_ms:g} ms")
    return cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
