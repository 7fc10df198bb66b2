"""The server's start and memory, for the benchmark's table: time from spawn to ready, and RSS."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import requests


def rss_mib(pid: int) -> float | None:
    """A process's resident set (VmRSS), MiB."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            return next(int(line.split()[1]) / 1024 for line in fh if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return None


def time_to_ready(argv: list[str], env: dict, model: Path, runs: int = 3) -> list[float]:
    """Seconds from spawning the server to its first /ready_check 200 (polled every 10 ms), `runs` times."""
    from heart.clients.harness import free_port

    times = []
    for _ in range(runs):
        port = free_port()
        full_env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port), "MODEL_PATH": str(model), **env}
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [a.replace("{port}", str(port)) for a in argv],
            env={k: v for k, v in full_env.items() if v is not None},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            while time.perf_counter() - t0 < 60:
                try:
                    if requests.get(f"http://127.0.0.1:{port}/ready_check", timeout=1).status_code == 200:
                        times.append(time.perf_counter() - t0)
                        break
                except requests.RequestException:
                    pass
                if proc.poll() is not None:
                    raise RuntimeError(f"{argv}: exited with {proc.returncode} before it was ready")
                time.sleep(0.01)
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    return times
