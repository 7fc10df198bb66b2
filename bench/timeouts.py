"""Request-timeout analysis: python -m bench.timeouts [--users 10,50,200] [--request-timeout 1]

Starts one API process (unless --host is given) and loads it with Locust at each user count
in turn, every request with the same client timeout, then prints one table: throughput,
p50/p95/p99 latency, failures and timeouts per step (and writes it as JSON). It shows where
a single process stops keeping up: past that point extra users only queue, latency grows
with the queue, and requests start to time out.
"""

from __future__ import annotations

import math
import os
import platform
import sys
from pathlib import Path

from heart import cli
from heart.analyses.report import format_table, write_json
from heart.clients.harness import ApiServer, LoadTestError, run_locust


def user_counts(value: str) -> list[int]:
    try:
        counts = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise cli.argparse.ArgumentTypeError(f"expected comma-separated user counts like 10,50,200, got {value!r}")
    if not counts or min(counts) < 1:
        raise cli.argparse.ArgumentTypeError(f"user counts must be >= 1, got {value!r}")
    return counts


def parse_args(argv):
    p = cli.parser(__doc__)
    p.add_argument("--model", default="model.zip", help="model the started API serves (make train writes it)")
    p.add_argument("--host", default="", help="load an API already running here instead of starting one")
    p.add_argument("--users", type=user_counts, default=[10, 50, 200], help="user counts, one step each")
    p.add_argument("--run-time", default="20s", help="load duration of each step (Locust syntax)")
    p.add_argument(
        "--request-timeout", type=cli.number(0, low_open=True), default=1.0, help="client timeout per request (s)"
    )
    p.add_argument(
        "--wait-min", type=cli.number(0), default=0.1, help="shortest think time between a user's requests (s)"
    )
    p.add_argument(
        "--wait-max", type=cli.number(0), default=0.5, help="longest think time between a user's requests (s)"
    )
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes of the started API")
    p.add_argument("--out-dir", default="reports", help="where the per-step CSV/summary files and timeouts.json go")
    return p.parse_args(argv)


def run_steps(host: str, args, out: Path, server: ApiServer | None = None) -> list[dict]:
    steps = []
    extra = [
        "--request-timeout",
        str(args.request_timeout),
        "--wait-min",
        str(args.wait_min),
        "--wait-max",
        str(args.wait_max),
    ]
    for users in args.users:
        prefix = out / f"timeouts_{users}u"
        print(f"{users} users for {args.run_time} ...", file=sys.stderr, flush=True)
        load = os.getloadavg()[0]  # other work on the machine skews every figure: keep it beside them
        before = server.cpu_seconds() if server else math.nan
        _, s, _ = run_locust(
            host, users, max(users / 2, 1), args.run_time, prefix, None, f"{prefix}.summary.json", extra
        )
        server_cpu = (server.cpu_seconds() - before) if server else math.nan
        steps.append(
            {
                "users": users,
                **s,
                "load_avg_1m": load,
                "server_cpu_s": server_cpu,
                "server_cpu_pct": 100 * server_cpu / s["duration_s"] if s["duration_s"] > 0 else math.nan,
            }
        )
    return steps


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    try:
        if args.host:
            steps = run_steps(args.host, args, out)
        else:
            if not Path(args.model).exists():
                raise FileNotFoundError(f"{args.model} not found: train one first (make train)")
            with ApiServer(Path(args.model).resolve(), log=out / "timeouts_server.log", workers=args.workers) as api:
                steps = run_steps(api.url, args, out, api)
    except LoadTestError as e:
        print(f"error: {e}", file=sys.stderr)
        return cli.EXIT_FAILED
    rows = [
        [
            s["users"],
            s["requests"],
            s["throughput_per_s"],
            s["successful_per_s"],
            s["latency_ms"]["p50"],
            s["latency_ms"]["p95"],
            s["latency_ms"]["p99"],
            s["failures"],
            s["timeouts"],
            s["server_cpu_pct"],
            s["client_cpu_pct"],
            f"{s['load_avg_1m']:.1f}",
        ]
        for s in steps
    ]
    print(
        format_table(
            [
                "users",
                "requests",
                "req/s",
                "ok/s",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "failures",
                "timeouts",
                "server CPU %",
                "Locust CPU %",
                "load avg",
            ],
            rows,
            digits=0,
        )
    )
    machine = {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()}
    settings = {k: getattr(args, k) for k in ("run_time", "request_timeout", "wait_min", "wait_max", "workers")}
    path = write_json(out / "timeouts.json", {"machine": machine, "settings": settings, "steps": steps})
    print(
        f"\nclient timeout {args.request_timeout:g} s, think time {args.wait_min:g}-{args.wait_max:g} s, "
        f"{args.workers} worker(s); wrote {path}"
    )
    return cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
