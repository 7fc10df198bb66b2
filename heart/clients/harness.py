"""Load-test plumbing: run the API as a real process, drive Locust headless, read its figures.

Shared by bench/load_test.py, bench/timeouts.py and the tests, so the server is started,
awaited and stopped one way, and a run's pass/fail rules are stated once. Locust itself only
runs as a subprocess (`locust -f locustfile.py ...`), exactly as a user would run it.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_MARKERS = ("Timeout", "timed out")


class LoadTestError(RuntimeError):
    """The load test could not run (server never became ready, Locust crashed); str() says why."""


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system) of a process and its reaped children, from /proc; NaN off Linux."""
    if pid is None:
        import resource

        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1 (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ApiServer:
    """`python heart_fastapi.py` on 127.0.0.1:<free port>, awaited until /ready_check says 200.

    Use as a context manager; on exit the server gets SIGTERM (graceful) and, if it lingers,
    SIGKILL. Its output goes to `log` (a file), never to the caller's terminal. `command`
    runs another server the same way (the benchmark's comparison servers, `uvicorn
    heart_fastapi:app`): its argv, with "{port}" standing for the port. In `extra_env`, None
    removes a variable.
    """

    model_path: str | Path
    log: str | Path | None = None
    port: int = 0
    workers: int = 1
    log_level: str = "info"
    ready_timeout: float = 60.0
    script: str | Path = ROOT / "heart_fastapi.py"
    extra_env: dict | None = None
    command: list[str] | None = None

    def __post_init__(self):
        self.port = self.port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> ApiServer:
        if self.command is None and not Path(self.script).exists():
            raise LoadTestError(f"{self.script} not found: the API is not in this checkout")
        env = {
            **os.environ,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "MODEL_PATH": str(self.model_path),
            "WEB_CONCURRENCY": str(self.workers),
            "LOG_LEVEL": self.log_level,
            **(self.extra_env or {}),
        }
        env = {k: v for k, v in env.items() if v is not None}
        argv = [a.replace("{port}", str(self.port)) for a in self.command or [sys.executable, str(self.script)]]
        self._logfile = open(self.log, "wb") if self.log else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=self._logfile, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            self._await_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _await_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise LoadTestError(
                    f"the API exited with code {self.proc.returncode} before it was ready"
                    + (f" (see {self.log})" if self.log else "")
                )
            try:
                resp = requests.get(self.url + "/ready_check", timeout=2)
                if resp.status_code == 200:
                    return
                last = f"HTTP {resp.status_code}: {resp.text[:200]}"
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise LoadTestError(f"the API at {self.url} was not ready within {self.ready_timeout:g} s ({last})")

    def cpu_seconds(self) -> float:
        """The server's CPU time so far (one worker: the process itself)."""
        return cpu_seconds(self.proc.pid) if self.proc else math.nan

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self._logfile not in (None, subprocess.DEVNULL):
            self._logfile.close()

    def __exit__(self, *exc) -> None:
        self.stop()


# --- Locust: run headless, summarise -------------------------------------------------------


def locust_summary(stats, client_cpu_s: float = math.nan) -> dict:
    """Figures of a finished run from Locust's RequestStats (called by the locustfile at quit).

    Percentiles are Locust's (response times bucketed to ~2 significant digits), in ms.
    """
    total = stats.total
    errors: dict[str, int] = {}
    for err in stats.errors.values():
        key = f"{err.method} {err.name}: {err.error}"
        errors[key] = errors.get(key, 0) + err.occurrences
    timeouts = sum(n for k, n in errors.items() if any(m in k for m in TIMEOUT_MARKERS))

    def pct(entry, q):
        return float(entry.get_response_time_percentile(q)) if entry.num_requests else math.nan

    duration = (stats.last_request_timestamp or 0) - (stats.start_time or 0)
    return {
        "duration_s": duration,
        "requests": total.num_requests,
        "failures": total.num_failures,
        "timeouts": timeouts,
        "throughput_per_s": float(total.total_rps),
        "successful_per_s": (total.num_requests - total.num_failures) / duration if duration > 0 else math.nan,
        "latency_ms": {
            "min": float(total.min_response_time or 0) if total.num_requests else math.nan,
            "p50": pct(total, 0.50),
            "p95": pct(total, 0.95),
            "p99": pct(total, 0.99),
            "max": float(total.max_response_time) if total.num_requests else math.nan,
        },
        "by_endpoint": {
            f"{e.method} {e.name}": {
                "requests": e.num_requests,
                "failures": e.num_failures,
                "p95_ms": pct(e, 0.95),
                "p99_ms": pct(e, 0.99),
            }
            for e in stats.entries.values()
            if e.num_requests
        },
        "errors": dict(sorted(errors.items(), key=lambda kv: -kv[1])),
        # Locust's own CPU during the load: near 1 s per second means the client, not the
        # server, may be what limits throughput (Locust runs on one core).
        "client_cpu_s": client_cpu_s,
        "client_cpu_pct": 100 * client_cpu_s / duration if duration > 0 else math.nan,
    }


def run_locust(
    host: str,
    users: int,
    spawn_rate: float,
    run_time: str,
    csv_prefix: str | Path | None = None,
    html: str | Path | None = None,
    summary: str | Path | None = None,
    extra: list[str] = (),
    timeout: float = 600,
) -> tuple[int, dict, str]:
    """Run `locust -f locustfile.py --headless` and return (exit code, summary dict, its output)."""
    summary = Path(summary) if summary else Path(csv_prefix or "locust").with_suffix(".summary.json")
    summary.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(ROOT / "locustfile.py"),
        "--headless",
        "--host",
        host,
        "-u",
        str(users),
        "-r",
        str(spawn_rate),
        "-t",
        run_time,
        "--stop-timeout",
        "5",
        "--only-summary",
        "--summary-json",
        str(summary),
        *extra,
    ]
    if csv_prefix:
        cmd += ["--csv", str(csv_prefix)]
    if html:
        cmd += ["--html", str(html)]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise LoadTestError(f"locust did not finish within {timeout:g} s") from None
    output = proc.stdout + proc.stderr
    if not summary.exists():
        tail = "\n".join(output.strip().splitlines()[-5:])
        raise LoadTestError(f"locust exited with code {proc.returncode} and wrote no summary:\n{tail}")
    return proc.returncode, json.loads(summary.read_text()), output


def gate(summary: dict, max_p95_ms: float | None) -> list[str]:
    """Why a run fails the load test's bar (any failed request, p95 over the limit); [] = passed."""
    reasons = []
    if summary["requests"] == 0:
        reasons.append("no request was made")
    if summary["failures"]:
        top = "; ".join(f"{n}x {k}" for k, n in list(summary["errors"].items())[:5])
        reasons.append(f"{summary['failures']} of {summary['requests']} requests failed: {top}")
    p95 = summary["latency_ms"]["p95"]
    if max_p95_ms and p95 == p95 and p95 > max_p95_ms:
        reasons.append(f"p95 {p95:.0f} ms is over the limit of {max_p95_ms:g} ms")
    return reasons
