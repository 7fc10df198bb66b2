"""The prediction record: one JSON line per served patient, its writers and its reader (which alone needs pandas).

The API writes the same line to two places: the PREDICTION_LOG file (the drift analysis
reads it back as live traffic) and stdout, as a JSON log record among the others. A line:

  {"event": "prediction", "prediction_id": ..., "timestamp": ..., "trace_id": ..., "span_id": ...,
   "model_version": ..., "inputs": {feature: schema code or null}, "imputed": [...],
   "predicted_class": 0|1, "probability": ..., "latency_ms": ...}

"inputs" is left out when the server runs with LOG_INPUTS=false. "prediction_id" (32 lowercase hex,
new_prediction_ids) names one served patient: a label that comes back later is joined by it (the
inference table, heart.inference_table). Lines written before it existed have none; the readers
take them as they are.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import orjson

from .schema import FEATURE_NAMES

if TYPE_CHECKING:
    from .data import Dataset

log = logging.getLogger(__name__)
MAX_LOG_BYTES = 256 * 10**6  # read whole: a few rotated 64 MiB files, never /dev/zero
LOST_LOG_SECONDS = 60.0  # at most one warning a minute about lost records (with the count since the last)

EVENT = "prediction"
FIELDS = (
    "event",
    "prediction_id",
    "timestamp",
    "trace_id",
    "span_id",
    "model_version",
    "inputs",
    "imputed",
    "predicted_class",
    "probability",
    "latency_ms",
)  # the order of the keys in every line


def new_prediction_ids(n: int) -> list[str]:
    """n fresh prediction ids: 32 lowercase hex digits laid out as a UUIDv7 (RFC 9562): the first 48
    bits are the Unix time in milliseconds, then the version (7), 74 random bits and the variant.
    Time first, so new rows land at the end of the table's primary-key index, and a time cut-off
    is a key range (retention); 74 random bits make a clash within one millisecond negligible
    (a batch of 1,000 ids: about 1 in 10^16). A batch is made in one numpy pass (~0.2 µs an id)."""
    stamp = (time.time_ns() // 1_000_000).to_bytes(6, "big")
    if n == 1:  # the common case, without numpy's overhead
        r = os.urandom(10)
        return [(stamp + bytes((0x70 | r[0] & 0x0F, r[1], 0x80 | r[2] & 0x3F)) + r[3:]).hex()]
    raw = np.frombuffer(os.urandom(16 * n), dtype=np.uint8).reshape(n, 16).copy()
    raw[:, :6] = np.frombuffer(stamp, dtype=np.uint8)
    raw[:, 6] = raw[:, 6] & 0x0F | 0x70
    raw[:, 8] = raw[:, 8] & 0x3F | 0x80
    text = raw.tobytes().hex()
    return [text[i : i + 32] for i in range(0, 32 * n, 32)]


def id_floor(when_ms: int) -> str:
    """The smallest prediction id of the millisecond `when_ms`: ids below it are older (retention)."""
    return f"{when_ms:012x}" + "0" * 20


_second: list = [None, ""]  # the last whole second formatted, and its text


def now_iso() -> str:
    """The records' timestamp: UTC, milliseconds, ISO 8601 with +00:00 (as datetime.isoformat
    gives it). The whole second is formatted once per second: 0.3 µs a call instead of 1.2."""
    now = time.time()
    second = int(now)
    if _second[0] != second:
        _second[:] = second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{_second[1]}.{int((now - second) * 1000):03d}+00:00"


@dataclass
class PredictionRecords:
    """The records of one request: what its patients share, then one entry per patient.

    One object per request, not one per patient: a dataclass per patient costs about 2.5 µs
    more than the dict the line is made from anyway (of ~21 µs per row in a batch), so the
    per-patient records are dicts built here, in FIELDS order, and serialised with orjson
    (~3 µs a line, against ~25 µs for json.dumps).
    """

    timestamp: str
    trace_id: str
    span_id: str
    model_version: str
    latency_ms: float
    inputs: list[dict] | None  # None: LOG_INPUTS=false, the key is left out
    imputed: list[list[str]]
    predicted_class: list[int]
    probability: list[float]
    prediction_id: list[str]

    def records(self) -> list[dict]:
        """One dict per patient, keys in FIELDS order."""
        head = {
            "timestamp": self.timestamp,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "model_version": self.model_version,
        }
        inputs = self.inputs if self.inputs is not None else [None] * len(self.imputed)
        out = []
        for pid, coded, miss, cls, p in zip(
            self.prediction_id, inputs, self.imputed, self.predicted_class, self.probability
        ):
            record = {"event": EVENT, "prediction_id": pid, **head}
            if coded is not None:
                record["inputs"] = coded
            record.update(imputed=miss, predicted_class=cls, probability=p, latency_ms=self.latency_ms)
            out.append(record)
        return out

    def lines(self) -> list[bytes]:
        """Each record as JSON bytes, without the newline."""
        dumps = orjson.dumps
        return [dumps(r) for r in self.records()]


# ---------------------------------------------------------------------------------- writers


class PredictionLogError(OSError):
    """The prediction log cannot be opened for appending; str() names the path and why."""


class PredictionLog:
    """Append-only JSON-lines file of served predictions.

    One os.write per request on an O_APPEND descriptor: lines from several requests, threads
    or worker processes never interleave or overwrite each other, and a crash loses whole
    lines, never half of one. The file is opened at start-up, so a path that cannot be
    appended to is a PredictionLogError then, not a failure per request.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:  # its directory is not made: a mistyped path is said at start, not a tree quietly created
            # O_NONBLOCK: a FIFO without a reader fails at once (ENXIO) instead of blocking start-up forever
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK, 0o644)
        except OSError as e:
            why = (
                "a parent is not a directory"
                if isinstance(e, (FileExistsError, NotADirectoryError))
                else f"its directory {self.path.parent} does not exist"
                if isinstance(e, FileNotFoundError)
                else "not a regular file"
                if e.errno == errno.ENXIO
                else (e.strerror or str(e))
            )
            raise PredictionLogError(e.errno, f"{self.path}: cannot be opened for appending ({why})") from None
        if not stat.S_ISREG(os.fstat(self.fd).st_mode):  # a FIFO with a reader, a device, a socket
            os.close(self.fd)
            raise PredictionLogError(errno.EINVAL, f"{self.path}: cannot be opened for appending (not a regular file)")
        os.set_blocking(self.fd, True)
        self.lock = threading.Lock()
        self.torn = False  # a failed write may have left half a line: the next write ends it first

    def write(self, lines: Iterable[bytes]) -> None:
        """Append serialised records (JSON bytes of each, without the newline) in one write."""
        blob = b"".join(line + b"\n" for line in lines)
        with self.lock:
            view = memoryview(b"\n" + blob if self.torn else blob)
            self.torn = False
            try:
                while view:
                    view = view[os.write(self.fd, view) :]
            except BaseException:
                self.torn = len(view) != len(blob)  # something went out: the line on disk may be cut
                raise

    def close(self) -> None:
        with self.lock:
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1


class PredictionLines:
    """The records as JSON log lines on stdout, written in one go per request.

    A batch of 1,000 patients through logging.Logger would cost a LogRecord and a formatter
    pass each (tens of ms). A log line is the record with "level" and "logger" first, so it
    is spliced from the record's own bytes: 0.4 µs a line, against 3.7 µs for a second
    orjson.dumps. It goes through the JSON log handler's lock to stdout; when that handler
    is not installed, each record goes through ordinary logging instead.
    """

    def __init__(self, handler: logging.Handler | None = None, logger_name: str = "heart.predictions"):
        self.handler = handler  # the JSON log handler whose lock and stream the lines share
        self.logger = logging.getLogger(logger_name)
        self.prefix = b'{"level":"INFO","logger":"%s",' % logger_name.encode()

    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)

    def write(self, lines: list[bytes], batch: PredictionRecords) -> None:
        handler = self.handler
        if handler is None or (
            handler not in self.logger.handlers and handler not in logging.getLogger("heart").handlers
        ):
            for record in batch.records():
                self.logger.info(EVENT, extra={k: v for k, v in record.items() if k not in ("event", "timestamp")})
            return
        blob = b"".join(self.prefix + line[1:] + b"\n" for line in lines).decode()  # line[1:]: the record after "{"
        handler.acquire()
        try:
            handler.stream.write(blob)
            handler.stream.flush()
        except Exception:  # noqa: BLE001 - a closed stdout must not fail the request
            pass
        finally:
            handler.release()


class PredictionWriter:
    """Every destination: each record is serialised once, for the file and stdout, whichever is on;
    the inference table (`table`: anything with put(batch), the server's heart.serving.table_writer)
    takes the batch as it is and writes it from its own thread.

    A file that stops taking writes (disk full, /dev/full) does not fail the prediction: the
    answer is the product, the log a record of it. The records lost are counted in
    heart_prediction_log_lost_total and logged at most once a minute (docs/serving.md,
    "When the prediction log fails").
    """

    def __init__(self, path: str | Path | None, registry=None, log_handler: logging.Handler | None = None, table=None):
        from prometheus_client import Counter

        self.file = PredictionLog(path) if path else None
        self.table = table
        self.stdout = PredictionLines(log_handler)
        self.lost = Counter(
            "heart_prediction_log_lost_total",
            "Prediction records the PREDICTION_LOG file "
            "failed to take (disk full, I/O error); the predictions were still served",
            registry=registry,
        )
        self._lost_since_warning, self._warned_at = 0, -LOST_LOG_SECONDS

    def enabled(self) -> bool:
        return self.file is not None or self.table is not None or self.stdout.enabled()

    def write(self, batch: PredictionRecords) -> None:
        if self.table is not None:
            self.table.put(batch)
        if self.file is None and not self.stdout.enabled():
            return
        lines = batch.lines()
        if self.file is not None:
            try:
                self.file.write(lines)
            except OSError as e:
                self._count_lost(len(lines), e)
        if self.stdout.enabled():
            self.stdout.write(lines, batch)

    def _count_lost(self, n: int, error: OSError) -> None:
        self.lost.inc(n)
        self._lost_since_warning += n
        now = time.monotonic()
        if now - self._warned_at >= LOST_LOG_SECONDS:
            log.error(
                "prediction_log_write_failed",
                extra={
                    "prediction_log": str(self.file.path),
                    "error": f"{type(error).__name__}: {error.strerror or error}",
                    "records_lost": self._lost_since_warning,
                    "next_report_in_s": LOST_LOG_SECONDS,
                },
            )
            self._warned_at, self._lost_since_warning = now, 0

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


# ----------------------------------------------------------------------------------- reader


def load_prediction_log(path: str | Path) -> Dataset:
    """The served patients of a PREDICTION_LOG, as a Dataset without labels.

    Each record's "inputs" (schema codes, null = not given) goes through the same checks as
    a CSV cell, so a bad log line is named like a bad CSV line. Other events are skipped. A
    log written with LOG_INPUTS=false has no inputs: that is an error here. pandas and
    heart.data are imported here, not by the server, which only writes.
    """
    import pandas as pd

    from .artifact import sha256_file
    from .data import DataError, Dataset, Problem, json_lines, parse_features, read_text

    source = str(path)
    rows, lines, problems, without_inputs = [], [], [], 0
    for number, record in json_lines(read_text(source, "a JSON-lines log", MAX_LOG_BYTES), problems):
        if not isinstance(record, dict) or record.get("event", EVENT) != EVENT:
            continue
        inputs = record.get("inputs")
        if inputs is None:
            without_inputs += 1
            continue
        if not isinstance(inputs, dict):
            problems.append(Problem(number, "inputs", "must be a JSON object of feature: value"))
            continue
        rows.append({name: "" if inputs.get(name) is None else str(inputs[name]) for name in FEATURE_NAMES})
        lines.append(number)
    if problems:
        raise DataError(source, problems)
    if not rows:
        why = (
            f'none of its {without_inputs} prediction records has "inputs" (the API was run with '
            "LOG_INPUTS=false), so there is nothing to compare"
            if without_inputs
            else 'no prediction records (expected JSON lines with "event": "prediction" and "inputs")'
        )
        raise DataError(source, why)
    X, missing, sentinels, problems = parse_features(pd.DataFrame(rows, index=lines, dtype=str))
    if problems:
        raise DataError(source, problems)
    return Dataset(X=X, y=None, source=source, sha256=sha256_file(source), missing=missing, sentinels=sentinels)
