"""Helpers the test files share (fixtures over them live in tests/conftest.py): apps built on the
test model with nothing taken from the developer's environment, and the Pipeline's own answer."""

from __future__ import annotations

import errno
import os
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd
import requests
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from heart import predlog
from heart.schema import FEATURE_NAMES
from heart.serving.app import create_app
from heart.serving.settings import ENV_NAMES, Settings
from heart.serving.tracing import tracer_provider

# create_app's keyword arguments (test and tool knobs); every other keyword is a setting.
APP_KNOBS = ("background_load", "configure_logging", "max_body_bytes")
# What a real server in a test must not inherit from the developer's shell.
CLEAN_SERVER_ENV = {
    name: None
    for name in ENV_NAMES.values()
    if name not in ("HOST", "PORT", "MODEL_PATH", "WEB_CONCURRENCY", "LOG_LEVEL")
} | {
    "OTEL_EXPORTER_OTLP_ENDPOINT": None,
    "OTEL_TRACES_EXPORTER": None,
    "PROMETHEUS_MULTIPROC_DIR": None,
}


def settings_for(model_path, **values) -> Settings:
    """Settings with every environment-backed field given, so the developer's env cannot leak in."""
    defaults = {name: Settings.model_fields[name].default for name in ENV_NAMES}
    return Settings(**{**defaults, "model_path": model_path, **values})


def make_app(model_path, tmp_path=None, spans=None, **values):
    """An app on the test model, loaded before it is returned; spans (an
    InMemorySpanExporter) receive every finished span; a tmp_path gets the prediction log."""
    provider = tracer_provider("test", exporters=[])
    if spans is not None:
        provider.add_span_processor(SimpleSpanProcessor(spans))
    knobs = {"background_load": False, **{k: values.pop(k) for k in APP_KNOBS if k in values}}
    if tmp_path is not None:
        values.setdefault("prediction_log", tmp_path / "predictions.jsonl")
        values.setdefault("inference_db", tmp_path / "inference.db")
    return create_app(settings_for(model_path, **values), tracer_provider_=provider, **knobs)


def proba(loaded, patients):
    """The Pipeline's P(disease) for patients given as the API takes them (gender as text)."""
    frame = pd.DataFrame([{n: p.get(n, np.nan) for n in FEATURE_NAMES} for p in patients])
    frame["gender"] = frame["gender"].map(lambda g: {"male": 1, "female": 0}.get(str(g).lower(), g)).astype(float)
    return loaded.pipeline.predict_proba(frame.astype(float))[:, 1]


def disk_full(monkeypatch, fd: int) -> None:
    """Writes to `fd` fail as on a full disk (ENOSPC), every other descriptor's as usual: a regular
    file standing in for a full one (PREDICTION_LOG must be a regular file, so not /dev/full)."""
    real_write = os.write

    def write(target: int, data) -> int:
        if target == fd:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(target, data)

    monkeypatch.setattr(predlog.os, "write", write)


def v2_tensors(records: list[dict], **datatypes) -> list[dict]:
    """JSON V2 inputs, one per feature present in any record (gender as BYTES, the rest FP64 unless
    `datatypes` says otherwise); a missing value is NaN."""
    names = [n for n in FEATURE_NAMES if any(n in r for r in records)]
    out = []
    for n in names:
        dt = datatypes.get(n, "BYTES" if n == "gender" else "FP64")
        out.append(
            {"name": n, "shape": [len(records)], "datatype": dt, "data": [r.get(n, float("nan")) for r in records]}
        )
    return out


def _status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def rss_kb(pid: int) -> int:
    return _status(pid, "VmRSS")


def peak_rss_kb(pid: int) -> int:
    return _status(pid, "VmHWM")


def thread_count(pid: int) -> int:
    return _status(pid, "Threads")


def open_files_for(n: int) -> int:
    """Raise this process's open-file limit towards n + 200 (as far as the hard limit allows); how many fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = n + 200 if hard == resource.RLIM_INFINITY else min(n + 200, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        soft = wanted
    return n if soft == resource.RLIM_INFINITY else min(n, soft - 200)


def wait_for_every_worker(api, tmpdir: Path, workers: int, timeout: float = 120) -> None:
    """Until every worker of a server started with TMPDIR=tmpdir is ready: /ready_check is answered by
    one worker only; heart_ready is the minimum over the live workers (each with its own file)."""
    if workers == 1:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = list(tmpdir.glob("heart-metrics-*/gauge_livemin_*.db"))
        if len(pids) == workers and "heart_ready 1.0" in requests.get(api.url + "/metrics", timeout=10).text:
            return
        time.sleep(0.2)
    raise AssertionError(f"{workers} workers were not all ready within {timeout:g} s")
