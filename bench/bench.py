"""Benchmark the API with wrk: python -m bench.bench [--duration 10] [--connections 16]

Starts the servers on free ports on 127.0.0.1 (one uvicorn worker each), waits for them to be
ready, warms them up, then drives each target with wrk in turn, for several rounds (other
work on a shared machine then weighs on all targets alike), stops them with SIGTERM, and
reports the median round's requests/s and p50/p95/p99 latency side by side:

  predict          heart_fastapi.py POST /predict with its defaults: validation, JSON logs, Prometheus
                   metrics, the prediction log and the inference table, trace ids; no collector is
                   configured, so no span is recorded
  predict_traced   the same with every request's spans recorded and exported to a stand-in OTLP
                   collector (bench.servers.Collector, in this process): the cost of full tracing
  predict_batch    the same server, POST /predict/batch with 1,000 patients (rows/s)
  v2_infer         the same server and patients, POST /v2/models/heart-disease/infer (the Open
                   Inference Protocol, JSON tensors: one FP64 [N] tensor per feature)
  bare             FastAPI with the same request model and a constant answer (bench/servers.py)
  original_style   a pandas DataFrame per request + sklearn predict on the event loop
  predict_sampled  predict_traced with OTEL_TRACES_SAMPLER=parentbased_traceidratio at 0.1 (the
                   deployment's setting): what trace sampling buys
  baseline_*       with --baseline DIR: /predict, /predict/batch and V2 infer of another
                   checkout's heart_fastapi.py (and its own model, --baseline-model), in the same rounds

Also measured: the full server's time from spawn to its first /ready_check 200 (median of 3, before
the load) and its RSS after the rounds. Needs wrk on PATH (`make bench` installs it if missing).
Writes a table to stdout, the figures with the machine's description to --out (JSON) and, with
--docs, the table (with the container figures of reports/container_check.json, if there) into
docs/performance.md between its bench:table markers. The machine is shared: run it more than once.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import requests

from bench.servers import Collector
from bench.startup import rss_mib, time_to_ready
from heart import cli
from heart.analyses.report import format_table, write_json
from heart.clients.harness import ApiServer
from heart.samples import sample, to_records
from heart.schema import FEATURE_NAMES
from heart.serving.contract import EXAMPLE

LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = io.open("%(body)s"):read("*a")
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
                 + summary.errors.status + summary.errors.timeout
  io.write(string.format("RESULT {\\"requests\\": %%d, \\"seconds\\": %%f, \\"errors\\": %%d, "
    .. "\\"non2xx\\": %%d, \\"p50\\": %%f, \\"p95\\": %%f, \\"p99\\": %%f, \\"mean\\": %%f}\\n",
    summary.requests, summary.duration / 1e6, errors, summary.errors.status,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    latency.mean / 1000))
end
"""


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path:
        return path
    sys.exit("error: wrk is not on PATH: `make bench` installs it (apt-get install wrk)")


def run_wrk(wrk: str, url: str, body: bytes, seconds: float, connections: int, threads: int, tmp: Path) -> dict:
    body_path = tmp / f"body-{abs(hash(body))}.json"
    body_path.write_bytes(body)
    script = tmp / f"post-{abs(hash(body))}.lua"
    script.write_text(LUA % {"body": body_path})
    out = subprocess.run(
        [
            wrk,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"^RESULT (\{.*\})$", out, re.M)
    if not match:
        raise RuntimeError(f"could not parse wrk's output:\n{out}")
    r = json.loads(match.group(1))
    r["rps"] = r["requests"] / r["seconds"]
    return r


def machine() -> dict:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in load] if load else None,
    }


def parse_args(argv):
    p = cli.parser(__doc__)
    p.add_argument("--model-path", default="model.zip", help="the model to serve (train it first: make train)")
    p.add_argument("--docs", default="", help="write the table into this file between its bench:table markers")
    p.add_argument(
        "--container-figures",
        default="reports/container_check.json",
        help="make container-check's figures (image size, ready, RSS), shown beside the table when the file exists",
    )
    p.add_argument("--duration", type=float, default=5, help="seconds of load per target and round")
    p.add_argument("--rounds", type=int, default=3, help="rounds over all targets; the median round is reported")
    p.add_argument("--warmup", type=float, default=2, help="seconds of unmeasured load before each run")
    p.add_argument("--connections", type=int, default=16, help="concurrent connections (wrk -c)")
    p.add_argument("--threads", type=int, default=1, help="wrk threads (1 leaves the other core to the server)")
    p.add_argument("--batch-size", type=int, default=1000, help="patients per /predict/batch request")
    p.add_argument("--out", default="bench/results.json", help="JSON file for the figures")
    p.add_argument(
        "--baseline",
        default="",
        help="another checkout of this project (e.g. a git worktree of main): its heart_fastapi.py is "
        "measured in the same rounds (baseline_predict, baseline_batch, baseline_v2) for a before/after figure",
    )
    p.add_argument("--baseline-model", default="", help="the baseline's model (default: model.joblib in --baseline)")
    p.add_argument(
        "--only",
        nargs="*",
        choices=[
            "predict",
            "predict_batch",
            "v2_infer",
            "bare",
            "original_style",
            "predict_traced",
            "predict_sampled",
            "baseline_predict",
            "baseline_batch",
            "baseline_v2",
        ],
        help="run only these (default: all)",
    )
    return p.parse_args(argv)


def plan_targets(args, tmp: Path, collector_url: str) -> tuple[dict, dict, list]:
    """(server key -> argv, server key -> env, [(target, server key, path, body, rows per request)])."""
    py = sys.executable
    env = {
        "PREDICTION_LOG": str(tmp / "predictions.jsonl"),
        "INFERENCE_DB": str(
            tmp / "inference.db"
        ),  # the inference table, as `make run` writes it (a checkout before it ignores this)
        "LOG_INPUTS": "true",
        "OTEL_EXPORTER_OTLP_ENDPOINT": None,
        "OTEL_TRACES_EXPORTER": None,
    }
    one = json.dumps(EXAMPLE).encode()
    patients = sample(args.batch_size, seed=1)
    batch = json.dumps({"instances": to_records(patients)}).encode()
    v2 = json.dumps(
        {
            "inputs": [
                {"name": n, "shape": [len(patients)], "datatype": "FP64", "data": patients[n].tolist()}
                for n in FEATURE_NAMES
            ]
        }
    ).encode()
    uvicorn = [
        py,
        "-m",
        "uvicorn",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        "--workers",
        "1",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    full = ["--host", "127.0.0.1", "--port", "{port}", "--workers", "1"]
    servers = {
        "full": [py, "heart_fastapi.py", *full],
        "traced": [py, "heart_fastapi.py", *full],
        "sampled": [py, "heart_fastapi.py", *full],
        "bare": uvicorn + ["bench.servers:bare_app"],
        "original": uvicorn + ["bench.servers:original_app"],
    }
    traced = {**env, "OTEL_EXPORTER_OTLP_ENDPOINT": collector_url}
    ratio = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}
    envs = {"traced": traced, "sampled": {**traced, **ratio}}
    plan = [
        ("predict", "full", "/predict", one, 1),
        ("predict_batch", "full", "/predict/batch", batch, args.batch_size),
        ("v2_infer", "full", "/v2/models/heart-disease/infer", v2, args.batch_size),
        ("bare", "bare", "/predict", one, 1),
        ("original_style", "original", "/predict/", one, 1),
        ("predict_traced", "traced", "/predict", one, 1),
        ("predict_sampled", "sampled", "/predict", one, 1),
    ]
    if args.baseline:  # another checkout's heart_fastapi.py, measured in the same rounds
        base = Path(args.baseline).resolve()
        servers["baseline"] = [py, str(base / "heart_fastapi.py"), *full]
        model = Path(args.baseline_model or base / "model.joblib").resolve()
        envs["baseline"] = {
            **env,
            "PYTHONPATH": str(base),
            "PREDICTION_LOG": str(tmp / "baseline.jsonl"),
            "MODEL_PATH": str(model),
        }
        plan += [
            ("baseline_predict", "baseline", "/predict", one, 1),
            ("baseline_batch", "baseline", "/predict/batch", batch, args.batch_size),
            ("baseline_v2", "baseline", "/v2/models/heart-disease/infer", v2, args.batch_size),
        ]
    plan = [p for p in plan if not args.only or p[0] in args.only]
    return servers, {key: envs.get(key, env) for key in servers}, plan


def measure(args, wrk: str, servers: dict, envs: dict, plan: list, tmp: Path) -> dict[str, list[dict]]:
    """Start the servers, check and warm each target, then run the rounds; every run of each target."""
    with ExitStack() as stack:
        up = {}
        for key in dict.fromkeys(p[1] for p in plan):
            print(f"starting {key} server ...", file=sys.stderr, flush=True)
            up[key] = stack.enter_context(
                ApiServer(
                    Path(args.model_path).resolve(),
                    log=tmp / f"{key}.log",
                    command=servers[key],
                    extra_env=envs[key],
                    ready_timeout=120,
                )
            )
        for name, key, path, body, rows in plan:
            url = up[key].url + path
            check = requests.post(url, data=body, headers={"content-type": "application/json"}, timeout=30)
            if check.status_code != 200:
                raise RuntimeError(f"{name}: {path} answered {check.status_code}: {check.text[:300]}")
            if args.warmup > 0:
                run_wrk(wrk, url, body, args.warmup, args.connections, args.threads, tmp)
        # Other work shares this machine: interleave the targets in rounds, so that each sees
        # the same background load, and report the median round of each.
        rounds: dict[str, list[dict]] = {p[0]: [] for p in plan}
        for i in range(args.rounds):
            for name, key, path, body, rows in plan:
                r = run_wrk(wrk, up[key].url + path, body, args.duration, args.connections, args.threads, tmp)
                r.update(path=path, rows_per_request=rows, rows_per_s=r["rps"] * rows, load=os.getloadavg()[0])
                rounds[name].append(r)
                print(
                    f"round {i + 1}/{args.rounds} {name}: {r['rps']:.0f} req/s, p99 {r['p99']:.2f} ms "
                    f"(load average {r['load']:.1f})",
                    file=sys.stderr,
                    flush=True,
                )
        rss = {key: rss_mib(server.proc.pid) for key, server in up.items()}
    return rounds, rss


def goals_of(results: dict) -> dict[str, float]:
    goals = {}
    if "predict" in results:
        p = results["predict"]
        if "original_style" in results:
            goals["predict_vs_original_x"] = p["rps"] / results["original_style"]["rps"]
        if "bare" in results:
            goals["predict_vs_bare"] = p["rps"] / results["bare"]["rps"]
            for traced in ("predict_traced", "predict_sampled"):
                if traced in results:
                    goals[f"{traced}_vs_bare"] = results[traced]["rps"] / results["bare"]["rps"]
        goals["predict_p99_ms"] = p["p99"]
    if "predict_batch" in results:
        goals["batch_rows_per_s"] = results["predict_batch"]["rows_per_s"]
    for name, base in (
        ("predict", "baseline_predict"),
        ("predict_batch", "baseline_batch"),
        ("v2_infer", "baseline_v2"),
    ):
        if name in results and base in results:
            goals[f"{name}_vs_baseline"] = results[name]["rows_per_s"] / results[base]["rows_per_s"]
    return goals


TARGETS = {
    "predict_vs_original_x": (">=", 15),
    "predict_vs_bare": (">=", 0.5),  # issue 22; 0.6 and 0.7 reported too
    "predict_traced_vs_bare": (">=", 0.5),  # the same goal with every request traced and exported
    "predict_sampled_vs_bare": (">=", 0.5),
    "predict_p99_ms": ("<", 25),
    "batch_rows_per_s": (">=", 20000),
    "predict_vs_baseline": (">=", 1.0),
    "predict_batch_vs_baseline": (">=", 1.0),
    "v2_infer_vs_baseline": (">=", 1.0),
}


def print_summary(results: dict, goals: dict, ready: list[float], rss: dict) -> None:
    rows = [
        [n, r["path"], round(r["rps"]), round(r["rows_per_s"]), r["p50"], r["p95"], r["p99"], r["errors"] + r["non2xx"]]
        for n, r in results.items()
    ]
    print(format_table(["server", "path", "req/s", "rows/s", "p50 ms", "p95 ms", "p99 ms", "errors"], rows, digits=2))
    print()
    for k, v in goals.items():
        op, target = TARGETS[k]
        met = v >= target if op == ">=" else v < target
        print(f"{k:26s} {v:10.2f}   goal {op} {target}: {'met' if met else 'MISSED'}")
    if "predict_vs_bare" in goals:
        ratio = goals["predict_vs_bare"]
        print(
            f"{'':37s}0.6x {'reached' if ratio >= 0.6 else 'not reached'}, 0.7x {'reached' if ratio >= 0.7 else 'not reached'}"
        )
    print(
        f"\nfull server: ready {statistics.median(ready):.2f} s after spawn (median of {len(ready)}), "
        f"RSS {rss.get('full') or float('nan'):.0f} MiB after the rounds"
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    machine_info = machine()  # the load average before our own load
    if not Path(args.model_path).is_file():
        raise FileNotFoundError(f"{args.model_path}: no model to serve (run `make train` first)")
    wrk = ensure_wrk()
    tmp = Path(tempfile.mkdtemp(prefix="heart-bench-"))
    started = time.time()
    with Collector() as collector:
        servers, envs, plan = plan_targets(args, tmp, collector.url)
        ready = time_to_ready(servers["full"], envs["full"], Path(args.model_path).resolve())
        rounds, rss = measure(args, wrk, servers, envs, plan, tmp)
    print(f"the collector received {collector.spans:,} spans in {collector.exports:,} exports", file=sys.stderr)
    results = {}
    for name, runs in rounds.items():
        median = sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]
        results[name] = {**median, "rounds": runs}
    goals = goals_of(results)
    print_summary(results, goals, ready, rss)
    report = {
        "command": "python -m bench.bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {**machine_info, "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "wrk": {
            "connections": args.connections,
            "threads": args.threads,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "rounds": args.rounds,
        },
        "results": results,
        "goals": goals,
        "ready_seconds": ready,
        "rss_mib_after_rounds": rss,
        "collector": {"spans": collector.spans, "exports": collector.exports},
    }
    if args.docs:
        from bench.docs import bench_table, replace_block

        replace_block(args.docs, "bench:table", bench_table(report, args.container_figures))
    write_json(args.out, report)
    print(f"\nwrote {args.out}", file=sys.stderr)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run_main(main))
