"""Client side of the prediction API: what a valid answer looks like, and concurrent callers.

A valid /predict, /predict/batch and /ready_check response is what the API's own contract
(heart/serving/contract.py) says it is, so batch_predict.py, the locustfile and the server
agree on one definition. The callers keep one record per patient (status, latency, error)
and every summary figure is computed from those records, so the report can be checked
against its own rows.

Only connection failures are retried (the request never reached the server): an HTTP error
or a read timeout is the server's answer and is reported, never hidden by a retry.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from pydantic import BaseModel, ValidationError
from tqdm import tqdm

from ..serving.contract import MAX_BATCH, BatchResponse, PredictionResult, PredictResponse, ReadyResponse

DEFAULT_URL = "http://localhost:8000/predict"
DEFAULT_CONCURRENCY = 8
DEFAULT_TIMEOUT = 10.0
DEFAULT_RETRIES = 3
DEFAULT_BACKOFF = 0.2
TOKEN_ENV = "API_TOKEN"  # the bearer token the callers send, when the API requires one (API_AUTH=tokens)


def auth_headers(token: str | None) -> dict[str, str]:
    """The Authorization header for a bearer token; none without a token (an open API)."""
    return {"Authorization": f"Bearer {token.strip()}"} if token and token.strip() else {}


# --- what a valid response is: the API's own contract ---------------------------------------


def _problem(model: type[BaseModel], body: Any) -> str | None:
    """Why body does not validate as model, in one line, or None."""
    try:
        model.model_validate(body)
    except ValidationError as e:
        errors = e.errors(include_url=False)
        missing = [_where(err["loc"]) for err in errors if err["type"] == "missing"]
        if missing:
            return "missing field(s): " + ", ".join(missing)
        err = errors[0]
        if err["type"] == "model_type":
            return f"expected a JSON object, got {type(err['input']).__name__}"
        where = _where(err["loc"])
        return (f"{where}: " if where else "") + f"{err['msg']}" + (f", got {err['input']!r}" if where else "")
    return None


def _where(loc: tuple) -> str:
    """('predictions', 1, 'probability') -> 'predictions[1].probability'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def prediction_problem(body: Any) -> str | None:
    """Why a POST /predict response body is not a valid prediction, or None if it is."""
    return _problem(PredictResponse, body)


def row_problem(body: Any) -> str | None:
    """Why one row of a /predict/batch answer is not a valid prediction, or None."""
    return _problem(PredictionResult, body)


def batch_problem(body: Any, n_rows: int) -> str | None:
    """Why a POST /predict/batch response body is invalid for n_rows patients, or None."""
    why = _problem(BatchResponse, body)
    if why is None and len(body["predictions"]) != n_rows:
        return f"predictions must be a list of {n_rows} rows, got {len(body['predictions'])}"
    return why


def ready_problem(body: Any) -> str | None:
    """Why a GET /ready_check 200 body does not say ready, or None."""
    if _problem(ReadyResponse, body) is not None:
        return f"expected {{'status': 'ready', ...}}, got {body!r}"
    return None


def check_url(url: str) -> str | None:
    """Why url cannot be an API address (scheme, host), or None."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return f"expected an http(s) URL like {DEFAULT_URL}, got {url!r}"
    return None


def endpoints(url: str) -> dict[str, str]:
    """/predict, /predict/batch and /ready_check URLs from a /predict URL (or the server root)."""
    parts = urlsplit(url if "://" in url else "http://" + url)
    path = parts.path.rstrip("/")
    if path.endswith("/predict"):
        path = path[: -len("/predict")]
    root = urlunsplit((parts.scheme, parts.netloc, path, "", ""))
    return {
        "predict": url if parts.path.rstrip("/").endswith("/predict") else root + "/predict",
        "batch": root + "/predict/batch",
        "ready": root + "/ready_check",
        "root": root,
    }


# --- per-sample records ---------------------------------------------------------------------


@dataclass
class Record:
    """One patient's request and its outcome; error is None exactly when it succeeded."""

    index: int
    input: dict
    predicted_class: int | None = None
    probability: float | None = None
    trace_id: str | None = None
    status: int | None = None
    latency_ms: float | None = None
    error: str | None = None
    attempts: int = 0
    kind: str = "ok"  # ok | http | bad_response | timeout | connection | error
    prediction_id: str | None = None  # what POST /feedback takes the label by

    @property
    def ok(self) -> bool:
        return self.error is None


class Unreachable(ConnectionError):
    """Nothing answers at the URL: the whole run is pointless, say so in one line."""


@dataclass
class _Outcome:
    status: int | None = None
    body: Any = None
    latency_ms: float | None = None
    error: str | None = None
    kind: str = "ok"
    attempts: int = 0


def _post(
    session: requests.Session,
    url: str,
    payload: Any,
    timeout: float,
    retries: int,
    backoff: float,
    sleep: Callable[[float], None] = time.sleep,
) -> _Outcome:
    """POST with retries on connection errors only; latency is that of the last attempt.

    Not urllib3's Retry (through requests' HTTPAdapter), which would keep different semantics:
    when it gives up, its MaxRetryError carries no count of attempts (each record reports
    its attempts, and the summary how many were retried); its first retry has no backoff;
    and a connection dropped while the answer is awaited is a read error to it, not
    retried, where this loop retries every requests.ConnectionError.
    """
    attempt = 0
    while True:
        attempt += 1
        start = time.perf_counter()
        try:
            resp = session.post(url, json=payload, timeout=timeout)
        except requests.exceptions.ConnectTimeout as e:  # never connected: safe to retry
            error, kind = f"connection timed out: {_reason(e)}", "connection"
        except requests.exceptions.Timeout:
            return _Outcome(
                error=f"timeout after {timeout:g} s",
                kind="timeout",
                attempts=attempt,
                latency_ms=(time.perf_counter() - start) * 1000,
            )
        except requests.exceptions.ConnectionError as e:
            error, kind = f"connection error: {_reason(e)}", "connection"
        except requests.exceptions.RequestException as e:  # e.g. a broken chunked body: not retried
            return _Outcome(error=f"request failed: {type(e).__name__}: {e}", kind="error", attempts=attempt)
        else:
            latency = (time.perf_counter() - start) * 1000
            try:
                body = resp.json()
            except ValueError:
                body = None
            return _Outcome(status=resp.status_code, body=body, latency_ms=latency, attempts=attempt)
        if attempt > retries:
            return _Outcome(error=error, kind=kind, attempts=attempt)
        sleep(backoff * 2 ** (attempt - 1))


def _reason(e: Exception) -> str:
    """The innermost cause of a requests error (e.g. 'Connection refused'), not urllib3's repr."""
    text = str(e)
    m = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if m:
        return m.group(1).strip()
    for marker in ("Failed to resolve", "Connection refused", "Connection reset", "Max retries"):
        if marker in text:
            return marker.lower()
    return type(e).__name__


def _http_error(status: int, body: Any) -> str:
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        first = detail[0]
        detail = f"{'.'.join(map(str, first.get('loc', [])))}: {first.get('msg')}"
    return f"HTTP {status}" + (f": {detail}" if isinstance(detail, str) and detail else "")


def _fill(rec: Record, out: _Outcome, row: Any, problem: Callable[[Any], str | None], envelope: Any) -> Record:
    rec.status, rec.latency_ms, rec.attempts = out.status, out.latency_ms, out.attempts
    if out.error:
        rec.error, rec.kind = out.error, out.kind
        return rec
    if not 200 <= out.status < 300:
        rec.error, rec.kind = _http_error(out.status, out.body), "http"
        return rec
    why = problem(row)
    if why:
        rec.error, rec.kind = f"bad response: {why}", "bad_response"
        return rec
    rec.predicted_class, rec.probability = row["predicted_class"], float(row["probability"])
    rec.prediction_id = row["prediction_id"]
    rec.trace_id = envelope.get("trace_id")
    return rec


class _Sessions(threading.local):
    """One requests.Session (keep-alive pool) per worker thread: Session is not thread-safe."""

    def __init__(self, token: str | None = None):
        self.headers = auth_headers(token)

    def get(self) -> requests.Session:
        if not hasattr(self, "session"):
            self.session = requests.Session()
            self.session.headers.update(self.headers)
        return self.session


def predict_each(
    url: str,
    patients: Sequence[dict],
    concurrency: int = DEFAULT_CONCURRENCY,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = DEFAULT_RETRIES,
    backoff: float = DEFAULT_BACKOFF,
    progress: Callable[[int], None] | None = None,
    token: str | None = None,
) -> list[Record]:
    """POST each patient on its own to /predict, `concurrency` at a time; records in input order.

    The first patient goes alone: if nothing answers, Unreachable is raised at once instead
    of every request failing after its retries.
    """
    sessions = _Sessions(token)

    def one(i: int) -> Record:
        out = _post(sessions.get(), url, patients[i], timeout, retries, backoff)
        rec = _fill(Record(i, patients[i]), out, out.body, prediction_problem, out.body or {})
        if progress:
            progress(1)
        return rec

    return _run(one, len(patients), concurrency, url, retries)


def predict_batches(
    url: str,
    patients: Sequence[dict],
    batch_size: int = MAX_BATCH,
    concurrency: int = DEFAULT_CONCURRENCY,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = DEFAULT_RETRIES,
    backoff: float = DEFAULT_BACKOFF,
    progress: Callable[[int], None] | None = None,
    token: str | None = None,
) -> list[Record]:
    """POST the patients in chunks of batch_size to /predict/batch; one record per patient.

    A row's latency_ms is its whole request's; a failed request fails each of its rows.
    """
    if not 1 <= batch_size <= MAX_BATCH:
        raise ValueError(f"batch_size must be from 1 to {MAX_BATCH}, got {batch_size}")
    batch_url = endpoints(url)["batch"]
    chunks = [range(s, min(s + batch_size, len(patients))) for s in range(0, len(patients), batch_size)]
    sessions = _Sessions(token)

    def one(c: int) -> list[Record]:
        rows = chunks[c]
        out = _post(sessions.get(), batch_url, {"instances": [patients[i] for i in rows]}, timeout, retries, backoff)
        records = [Record(i, patients[i]) for i in rows]
        why = None
        if not out.error and 200 <= out.status < 300:
            why = batch_problem(out.body, len(rows))
        for k, rec in enumerate(records):
            if why:
                _fill(rec, out, None, lambda _: why, {})
            else:
                row = out.body["predictions"][k] if not out.error and 200 <= out.status < 300 else None
                _fill(rec, out, row, row_problem, out.body if isinstance(out.body, dict) else {})
        if progress:
            progress(len(rows))
        return records

    nested = _run(one, len(chunks), concurrency, batch_url, retries)
    return [rec for chunk in nested for rec in chunk]


def _run(one: Callable[[int], Any], n: int, concurrency: int, url: str, retries: int) -> list:
    if n == 0:
        return []
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    first = one(0)
    head = first[0] if isinstance(first, list) else first
    if head.kind == "connection":
        tries = f" (tried {head.attempts} times)" if head.attempts > 1 else ""
        raise Unreachable(f"cannot reach the API at {url}: {head.error}{tries}")
    results = [first] + [None] * (n - 1)
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        futures = {pool.submit(one, i): i for i in range(1, n)}
        for fut in as_completed(futures):
            results[futures[fut]] = fut.result()
    return results


# --- the progress bar (stderr, only on a terminal) -------------------------------------------


class Progress:
    """tqdm's bar, callable from the worker threads; silent when stderr is not a terminal."""

    def __init__(self, total: int, label: str = "requests", enabled: bool | None = None, stream: Any = None):
        self._lock = threading.Lock()
        # disable=None is tqdm's own "only on a terminal"
        self.bar = tqdm(
            total=total,
            unit=f" {label}",
            file=stream or sys.stderr,
            mininterval=0.1,
            disable=None if enabled is None else not enabled,
        )

    def __call__(self, n: int = 1) -> None:
        with self._lock:
            self.bar.update(n)

    def close(self) -> None:
        self.bar.close()
