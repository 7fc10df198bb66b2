"""The inference table from the server's side: writes off the request path, labels, realized gauges.

The request path only hands over the records it built anyway (put: an append under a lock,
well under a microsecond). One writer thread per worker wakes every FLUSH_SECONDS, turns what
arrived into rows and writes them in one transaction (heart.inference_table): batching comes
from the load itself. SQLAlchemy, Alembic and the database driver are imported by that thread,
never by a request.

The database being down never fails a prediction, and readiness does not depend on it: the rows
wait in memory (at most MAX_PENDING_ROWS per worker) and are written when it is back, counted
as delayed; past the bound, new rows are counted as lost. heart_inference_table_up says
whether the last attempt reached it. Connecting, and applying the migrations under their
lock, are retried by the same thread with a backoff, so a database that is down at start is
the same case as one that goes down later.

The same thread deletes what the retention settings say (every RETENTION_SECONDS), and feeds
the realized-performance gauges (live_drift.record_labelled_window) from the most recent
labelled predictions of the served model, every `refresh` seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from ..predlog import PredictionRecords
from .live_drift import record_labelled_window
from .metrics import Metrics

log = logging.getLogger(__name__)
FLUSH_SECONDS = 0.2  # the writer's sleep between two writes: the most a row waits while all is well
MAX_PENDING_ROWS = 20_000  # per worker, ~1 KB each: what a database outage may hold in memory
MAX_WRITE_ROWS = 2_000  # rows per transaction
RETRY_SECONDS = (0.5, 1, 2, 5, 10, 15)  # backoff while the database cannot be reached
RETENTION_SECONDS = 600.0
LABELLED_WINDOW = 1000  # the realized gauges: the most recent labelled predictions of the served model
ERROR_LOG_SECONDS = 60.0  # at most one error line a minute while the database stays down


class TableUnavailable(Exception):
    """The inference table cannot be reached now: a 503 with the reason, retry later."""


def is_transient(error: BaseException) -> bool:
    """A failure that may go away (connection refused or lost, locked, timed out, disk full):
    keep the rows and retry. Anything else (a row the database refuses) will not."""
    import sqlalchemy.exc as sa_exc

    if isinstance(error, sa_exc.DBAPIError):
        return error.connection_invalidated or isinstance(error, (sa_exc.OperationalError, sa_exc.InterfaceError))
    return isinstance(error, (sa_exc.TimeoutError, OSError))


class TableWriter:
    """One worker's writer: start() with the app, stop() at shutdown; put() on the request path."""

    def __init__(
        self,
        url: str,
        metrics: Metrics,
        *,
        retention_days: float,
        retention_rows: int,
        refresh: float,
        served: Callable[[], tuple[str, float] | None] = lambda: None,
        after: threading.Event | None = None,
    ):
        """`served()` gives (model_version, threshold) of the loaded model, None while none is;
        `after`: the thread starts its work once this is set (the model's load: the two would
        otherwise contend for the interpreter, and no prediction comes before it)."""
        self.url, self.metrics, self.refresh, self.served = url, metrics, refresh, served
        self._after = after
        self.retention = (retention_days, retention_rows)
        self.engine = None
        self.ready = False  # connected and migrated
        self.last_error = ""
        self._queue: deque[PredictionRecords] = deque()  # arrived, not yet taken by the thread
        self._unwritten: deque[PredictionRecords] = deque()  # taken, waiting for a write that works
        self._pending = 0  # rows in both
        self._unwritten_rows = 0
        self._counted_delayed = 0  # rows of _unwritten already counted as delayed
        self._lock = threading.Lock()
        self._connect_lock = threading.Lock()
        self._write_lock = threading.Lock()  # the thread's writes and flush() by a request, one at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures, self._retry_at = 0, 0.0
        self._next = {"retention": 0.0, "refresh": 0.0, "error_log": 0.0}

    # ------------------------------------------------------------------ the request path

    def put(self, batch: PredictionRecords) -> None:
        n = len(batch.prediction_id)
        with self._lock:
            if self._pending + n <= MAX_PENDING_ROWS:
                self._queue.append(batch)
                self._pending += n
                return
        self.metrics.table_lost.labels(reason="buffer_full").inc(n)

    # ------------------------------------------------------------------ the thread

    def start(self) -> None:
        self._stop.clear()  # an app's lifespan may run more than once (tests, schemathesis)
        self._thread = threading.Thread(target=self._run, name="inference-table", daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Write what is left (within `timeout` seconds); what could not be is counted as lost."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._lock:
            left, self._pending = max(0, self._pending), 0
            self._queue.clear()
            if self._thread is None or not self._thread.is_alive():
                self._unwritten.clear()
                self._unwritten_rows = self._counted_delayed = 0
        if left:
            self.metrics.table_lost.labels(reason="shutdown").inc(left)
            log.error("inference_table_rows_lost_at_shutdown", extra={"rows": left, "error": self.last_error})
        if self.engine is not None and (self._thread is None or not self._thread.is_alive()):
            self.engine.dispose()

    def _run(self) -> None:
        while self._after is not None and not self._after.wait(FLUSH_SECONDS) and not self._stop.is_set():
            pass
        while not self._stop.is_set():
            wait = self.step()
            self._stop.wait(wait)
        self.step(final=True)

    def step(self, final: bool = False) -> float:
        """One round: take what arrived; unless backing off after a failure, connect if need be, write
        it, then the periodic work. The seconds to sleep before the next round: FLUSH_SECONDS."""
        try:
            with self._write_lock:
                self._take()
                if final and not self._unwritten:
                    return FLUSH_SECONDS  # nothing to write: no connection attempt at shutdown
                if not final and time.monotonic() < self._retry_at:
                    self._count_delayed()  # still down: what arrived meanwhile waits too
                    return FLUSH_SECONDS
                self.ensure_ready()
                self._write_all()
            if not final:
                self._periodic()
        except Exception as e:  # noqa: BLE001 - the writer must outlive any failure of the database
            self._failed(e)
            return FLUSH_SECONDS
        self._failures, self._retry_at = 0, 0.0
        self.metrics.table_up.set(1)
        return FLUSH_SECONDS

    def flush(self) -> None:
        """Write what this worker holds now, in the caller's thread: a label may follow its prediction
        at once (a script's curl), and must find it. Raises what the write raises."""
        with self._write_lock:
            self._take()
            self.ensure_ready()
            self._write_all()

    def _take(self) -> None:
        with self._lock:
            self._unwritten_rows += sum(len(b.prediction_id) for b in self._queue)
            self._unwritten.extend(self._queue)
            self._queue.clear()

    def ensure_ready(self):
        """The engine, connected and migrated (once; retried after a failure); raises if it cannot be."""
        if self.ready:
            return self.engine
        with self._connect_lock:
            if not self.ready:
                from .. import inference_table

                if self.engine is None:
                    self.engine = inference_table.engine_for(self.url)
                revision = inference_table.migrate(self.engine)
                self.ready = True
                log.info(
                    "inference_table_ready", extra={"database": inference_table.display(self.url), "revision": revision}
                )
        return self.engine

    def _write_all(self) -> None:
        while self._unwritten:
            batches, rows = [], 0
            for batch in self._unwritten:
                if batches and rows + len(batch.prediction_id) > MAX_WRITE_ROWS:
                    break
                batches.append(batch)
                rows += len(batch.prediction_id)
            self._write(batches, rows)
            for _ in batches:
                self._unwritten.popleft()
            self._unwritten_rows -= rows
            with self._lock:
                self._pending = max(0, self._pending - rows)
            self._counted_delayed = max(0, self._counted_delayed - rows)
        self.metrics.table_pending.set(self._pending)

    def _write(self, batches: list[PredictionRecords], rows: int) -> None:
        from .. import inference_table

        try:
            with self.engine.begin() as conn:
                inference_table.insert(conn, [row for batch in batches for row in inference_table.rows_of(batch)])
        except Exception as e:
            if is_transient(e):
                raise
            self.metrics.table_lost.labels(reason="rejected").inc(rows)
            log.error("inference_table_rows_rejected", extra={"rows": rows, "error": _short(e)})
            return
        self.metrics.table_written.inc(rows)

    def _failed(self, error: Exception) -> None:
        """Count the rows that now wait as delayed (once each), say so at most once a minute, back off."""
        self.last_error = _short(error)
        self.metrics.table_up.set(0)
        self._count_delayed()
        now = time.monotonic()
        if now >= self._next["error_log"]:
            self._next["error_log"] = now + ERROR_LOG_SECONDS
            log.error(
                "inference_table_unavailable",
                extra={"error": self.last_error, "pending_rows": self._pending, "transient": is_transient(error)},
            )
        self._failures += 1
        self._retry_at = now + RETRY_SECONDS[min(self._failures, len(RETRY_SECONDS)) - 1]

    def _count_delayed(self) -> None:
        waiting = self._unwritten_rows
        if waiting > self._counted_delayed:
            self.metrics.table_delayed.inc(waiting - self._counted_delayed)
            self._counted_delayed = waiting
        self.metrics.table_pending.set(self._pending)

    def _periodic(self) -> None:
        from .. import inference_table

        now = time.monotonic()
        if now >= self._next["retention"]:
            self._next["retention"] = now + RETENTION_SECONDS
            deleted = inference_table.apply_retention(self.engine, *self.retention)
            if deleted:
                log.info("inference_table_retention", extra={"deleted_rows": deleted, "days_rows": self.retention})
        served = self.served()
        if served is not None and now >= self._next["refresh"]:
            self._next["refresh"] = now + self.refresh
            version, threshold = served
            probability, label = inference_table.recent_labelled(self.engine, version, LABELLED_WINDOW)
            if label:
                record_labelled_window(self.metrics, probability, label, threshold)

    # ------------------------------------------------------------------ labels (POST /feedback)

    def store_labels(self, items: list[tuple[str, int]]):
        """heart.inference_table.store_labels, in a worker thread; TableUnavailable when the
        database cannot be reached (nothing was stored then)."""
        from .. import inference_table

        try:
            self.flush()  # this worker's predictions not yet written: now, before their labels
            return inference_table.store_labels(self.ensure_ready(), items)
        except Exception as e:
            if is_transient(e):
                raise TableUnavailable(_short(e)) from None
            raise


def _short(error: BaseException) -> str:
    """One line of a database error, without SQLAlchemy's appended SQL and parameters (health data)."""
    orig = getattr(error, "orig", None)
    text = str(orig if orig is not None else error).strip().splitlines()
    return f"{type(orig or error).__name__}: {text[0] if text else ''}"[:300]


def table_writer_for(settings, state, metrics: Metrics) -> TableWriter:
    """The app's writer from its Settings; the realized gauges use the card of whichever model `state` has."""
    from ..decision import threshold_of
    from .database import table_url

    def served() -> tuple[str, float] | None:
        return (state.model.version, threshold_of(state.model.card)) if state.ready else None

    return TableWriter(
        table_url(settings),
        metrics,
        retention_days=settings.retention_days,
        retention_rows=settings.retention_rows,
        refresh=settings.drift_interval,
        served=served,
        after=state.loaded,
    )
