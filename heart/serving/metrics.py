"""Prometheus metrics: every metric of the service, multiprocess mode, and the metrics port.

One registry per app (tests build many). With several workers, prometheus_client's
multiprocess mode keeps every value in a per-process file of a fresh directory (made by
`multiprocess_metrics` in the supervisor, heart.serving.run) and metrics_payload() merges them.
With METRICS_PORT, /metrics is served on that port only (heart.serving.metrics_server): by the
worker when there is one, by the supervisor for all of them otherwise, so the public Service
never exposes it.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from contextlib import contextmanager

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from ..schema import FEATURE_NAMES

log = logging.getLogger(__name__)


REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
INFERENCE_BUCKETS = (
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
)


MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # set by heart_fastapi.py when it starts several workers


class Metrics:
    """The service's Prometheus metrics, in a registry of their own (one per app).

    With several workers (PROMETHEUS_MULTIPROC_DIR set), prometheus_client keeps every value in
    a per-process file of that directory and metrics_payload() merges them: counters and
    histograms are summed over the workers; each gauge says how (multiprocess_mode). The drift
    gauges describe one worker's window: the most recently computed one is exported.
    """

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = r = registry or CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "heart_http_requests_total",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "heart_http_request_duration_seconds",
            "HTTP request latency (server side)",
            ["route", "method", "status"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.predictions = Counter(
            "heart_predictions_total", "Patients predicted, by predicted class", ["predicted_class"], registry=r
        )
        self.inference = Histogram(
            "heart_inference_duration_seconds",
            "Model inference time per call",
            ["endpoint", "engine"],
            buckets=INFERENCE_BUCKETS,
            registry=r,
        )
        self.errors = Counter("heart_prediction_errors_total", "Failures inside the model", ["endpoint"], registry=r)
        self.model_info = Gauge(
            "heart_model_info",
            "The model being served (value 1)",
            ["model_version", "engine"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.ready = Gauge(
            "heart_ready",
            "1 once the model is loaded, verified and parity-checked (with several workers: all of them)",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.imputed = Counter(
            "heart_imputed_fields_total", "Patients whose feature was missing and imputed", ["feature"], registry=r
        )
        self.client_disconnects = Counter(
            "heart_client_disconnects_total",
            "Requests the client abandoned before they were read (also a 499 in heart_http_requests_total)",
            registry=r,
        )
        self._by_class = {c: self.predictions.labels(predicted_class=str(c)) for c in (0, 1)}
        self._imputed = {name: self.imputed.labels(feature=name) for name in FEATURE_NAMES}
        self._children: dict[tuple, tuple] = {}
        self._drift_gauges(r)
        self._performance_gauges(r)
        self._table_metrics(r)

    def _drift_gauges(self, r: CollectorRegistry) -> None:
        """Set by heart/serving/live_drift.py from the window of recent inputs."""
        mode = "livemostrecent"
        self.drift_statistic = Gauge(
            "heart_drift_statistic",
            "Drift test statistic per feature over the window "
            "of recent inputs (KS D for continuous features, chi-squared otherwise)",
            ["feature"],
            registry=r,
            multiprocess_mode=mode,
        )
        self.drift_p_adjusted = Gauge(
            "heart_drift_p_value_adjusted",
            "Benjamini-Hochberg adjusted p-value per feature over the window (drifted below 0.05)",
            ["feature"],
            registry=r,
            multiprocess_mode=mode,
        )
        self.drift_share = Gauge(
            "heart_drift_drifted_share",
            "Share of the features drifted in the window",
            registry=r,
            multiprocess_mode=mode,
        )
        self.drift_rows = Gauge(
            "heart_drift_window_rows",
            "Rows in the window the drift gauges were computed on",
            registry=r,
            multiprocess_mode=mode,
        )
        self.positive_rate = Gauge(
            "heart_predicted_positive_rate",
            "Share of the window's patients predicted positive",
            registry=r,
            multiprocess_mode=mode,
        )

    def _performance_gauges(self, r: CollectorRegistry) -> None:
        """Estimated from the drift window's probabilities (heart/serving/live_drift.py), realized from
        the labelled window the inference table gives (LiveDrift.record_labelled_window)."""
        mode = "livemostrecent"
        self.performance_estimated = Gauge(
            "heart_performance_estimated",
            "Performance expected from the window's served probabilities alone (CBPE: assumes the model is "
            "calibrated and no concept shift), at the card's threshold, by metric",
            ["metric"],
            registry=r,
            multiprocess_mode=mode,
        )
        self.performance_estimated_rows = Gauge(
            "heart_performance_estimated_rows",
            "Predictions the estimated performance was computed on",
            registry=r,
            multiprocess_mode=mode,
        )
        self.performance_realized = Gauge(
            "heart_performance_realized",
            "Performance on the most recent labelled predictions, at the card's threshold, by metric",
            ["metric"],
            registry=r,
            multiprocess_mode=mode,
        )
        self.performance_labelled_rows = Gauge(
            "heart_performance_labelled_rows",
            "Labelled predictions the realized performance was computed on",
            registry=r,
            multiprocess_mode=mode,
        )

    def _table_metrics(self, r: CollectorRegistry) -> None:
        """The inference table's writer (heart/serving/table_writer.py) and POST /feedback."""
        self.table_written = Counter(
            "heart_inference_table_rows_written_total", "Prediction rows written to the inference table", registry=r
        )
        self.table_delayed = Counter(
            "heart_inference_table_rows_delayed_total",
            "Prediction rows whose first write failed (database down, locked, unreachable): kept and retried",
            registry=r,
        )
        self.table_lost = Counter(
            "heart_inference_table_rows_lost_total",
            "Prediction rows never written to the inference table (the predictions were still served), by reason: "
            "buffer_full (the database was down too long), rejected (the database refused them), shutdown",
            ["reason"],
            registry=r,
        )
        self.table_pending = Gauge(
            "heart_inference_table_pending_rows",
            "Prediction rows waiting to be written (summed over the workers)",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.table_up = Gauge(
            "heart_inference_table_up",
            "1 when the last attempt to reach the inference table succeeded, 0 when it failed (with several "
            "workers: the lowest)",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.feedback = Counter(
            "heart_feedback_labels_total",
            "Labels given to POST /feedback, by outcome: accepted, duplicate, conflict, unknown",
            ["status"],
            registry=r,
        )

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:  # cache the labelled children: .labels() costs more than .inc()
            labels = dict(route=route, method=method, status=str(status))
            children = self._children[key] = (self.requests.labels(**labels), self.latency.labels(**labels))
        children[0].inc()
        children[1].observe(seconds)

    def observe_inference(self, endpoint: str, engine: str, seconds: float) -> None:
        key = ("inference", endpoint, engine)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.inference.labels(endpoint=endpoint, engine=engine)
        child.observe(seconds)

    def count_classes(self, ones: int, total: int) -> None:
        if ones:
            self._by_class[1].inc(ones)
        if total - ones:
            self._by_class[0].inc(total - ones)

    def count_imputed(self, imputed: list[list[str]]) -> None:
        """Per feature, the patients whose value was imputed (most patients have none: no work)."""
        for names in imputed:
            for name in names:
                self._imputed[name].inc()


def multiprocess_dir(environ: Mapping[str, str] = os.environ) -> str | None:
    """The directory of the per-worker metric files, or None in single-process mode."""
    return environ.get(MULTIPROC_ENV) or None


def metrics_payload(metrics: Metrics) -> bytes:
    """The text exposition of /metrics (and of the metrics port): every worker's values merged
    in multiprocess mode, else this app's registry (no file I/O on the single-process path)."""
    merged = multiprocess_registry()
    return generate_latest(metrics.registry if merged is None else merged)


class SettledFiles(multiprocess.MultiProcessCollector):
    """prometheus_client's merge, without the file of a worker that is starting: it exists empty
    until the worker has sized it, and prometheus_client's reader raises on it (a scrape's 500)."""

    def collect(self):
        return self.merge([f for f in glob.glob(os.path.join(self._path, "*.db")) if _sized(f)], accumulate=True)


def _sized(path: str) -> bool:
    try:
        return os.path.getsize(path) > 0
    except FileNotFoundError:  # a dead worker's live gauges, removed meanwhile
        return False


def mark_worker_dead(pid: int | None = None) -> None:
    """A worker's exit: its live* gauges (readiness, model info, drift) leave the merge; counters stay."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(pid or os.getpid())


@contextmanager
def multiprocess_metrics(workers: int):
    """Several workers share one /metrics: prometheus_client's multiprocess mode, in a fresh
    directory (stale files of an earlier run would be summed in), removed after the last worker.
    One worker keeps the plain in-memory registry (no per-sample file writes)."""
    if workers == 1:
        yield
        return
    path = tempfile.mkdtemp(prefix="heart-metrics-")
    os.environ[MULTIPROC_ENV] = path  # the workers are spawned after this: they inherit it
    try:
        yield
    finally:
        shutil.rmtree(path, ignore_errors=True)


def multiprocess_registry() -> CollectorRegistry | None:
    """A registry summing every worker's metrics, if PROMETHEUS_MULTIPROC_DIR is set; else None."""
    if multiprocess_dir() is None:
        return None
    registry = CollectorRegistry()
    SettledFiles(registry, path=multiprocess_dir())
    return registry
