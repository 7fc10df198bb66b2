"""Live drift: the recent inputs this worker served, tested against the training data.

The request path only copies its already-built (n, 13) rows and predicted classes into a ring
buffer (DriftWindow.append: a slice assignment under a lock, about a microsecond). A
background thread (LiveDrift) wakes every `drift_interval` seconds and, if new rows arrived,
runs heart.analyses.drift.drift_report, the very tests drift_analysis_ks.py runs (KS or chi-squared
per feature, Benjamini-Hochberg adjusted; NumPy alone, no SciPy or pandas in the server), on a
copy of the window against the training data. It then sets the heart_drift_* gauges and
heart_predicted_positive_rate.

The same run estimates performance without labels (heart.analyses.performance.expected, CBPE):
the window's rows are scored again by the served predictor, which gives back the probabilities
it served them (same rows, same model), so the request path stays as it was; the
heart_performance_estimated gauges follow. Realized figures need labels: whoever holds the
labelled predictions (the inference table) calls record_labelled_window(metrics, ...) with them.

The reference is the model's own training data: the rows train.py stored in the artifact
(heart.artifact.Reference.data), verified with it. A model saved without them gets no drift
gauges rather than wrong ones (the log line says why).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import numpy as np

from ..schema import FEATURE_NAMES
from .metrics import Metrics

log = logging.getLogger(__name__)


class DriftWindow:
    """The last `size` patients' rows (NaN = imputed) and predicted classes, oldest overwritten."""

    def __init__(self, size: int, n_features: int = len(FEATURE_NAMES)):
        if size < 1:
            raise ValueError(f"the drift window needs at least 1 row, got {size}")
        self.size = size
        self._rows = np.empty((size, n_features), dtype=float)
        self._classes = np.empty(size, dtype=np.int8)
        self._next = 0  # where the next row goes
        self.seen = 0  # rows appended since start (the trigger compares it with the last run's)
        self._lock = threading.Lock()

    def append(self, rows: np.ndarray, classes: np.ndarray) -> None:
        """On the request path: copy, nothing else."""
        n = len(rows)
        with self._lock:
            i = self._next
            self.seen += n
            if n == 1:
                self._rows[i] = rows[0]
                self._classes[i] = classes[0]
            else:
                if n > self.size:
                    rows, classes, n = rows[-self.size :], classes[-self.size :], self.size
                at = np.arange(i, i + n) % self.size
                self._rows[at] = rows
                self._classes[at] = classes
            self._next = (i + n) % self.size

    def snapshot(self) -> tuple[np.ndarray, np.ndarray, int]:
        """(rows, classes, seen) copied under the lock; row order does not matter to the tests."""
        with self._lock:
            filled = min(self.seen, self.size)
            return self._rows[:filled].copy(), self._classes[:filled].copy(), self.seen


class LiveDrift:
    """The background computation: start() with the app, stop() at shutdown."""

    def __init__(
        self,
        window: DriftWindow,
        metrics: Metrics,
        interval: float,
        reference: Callable[[], np.ndarray | None],
        score: Callable[[np.ndarray], tuple[np.ndarray, float] | None] | None = None,
    ):
        """`reference()` gives the loaded model's training rows, or None while no model is loaded;
        `score(rows)` the served probabilities of the rows and the threshold, None while no model is."""
        self.window, self.metrics, self.interval = window, metrics, interval
        self.training_rows, self.score = reference, score
        self.reference = None  # the training features, taken on the first run after the model
        self.disabled = ""  # why no gauges are computed, once that is known for good
        self._last_seen = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="live-drift", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.compute()
            except Exception as e:  # noqa: BLE001 - drift is a report: never take the worker down
                log.error("live_drift_failed", exc_info=e)

    def compute(self) -> bool:
        """One run if there is anything new to test; True if the gauges were set."""
        if self.window.seen == self._last_seen:
            return False
        rows, classes, seen = self.window.snapshot()
        if len(rows) < 2:
            return False
        done = self._estimate(rows)
        if not self.disabled and self._reference_ready():
            done = self._drift(rows, classes) or done
        if done:
            self._last_seen = seen
        return done

    def _estimate(self, rows: np.ndarray) -> bool:
        """heart_performance_estimated from the window's served probabilities (CBPE)."""
        scored = self.score(rows) if self.score is not None else None
        if scored is None:
            return False
        from ..analyses.performance import expected

        proba, threshold = scored
        for metric, value in expected(proba, threshold).items():
            self.metrics.performance_estimated.labels(metric=metric).set(value)
        self.metrics.performance_estimated_rows.set(len(proba))
        return True

    def _drift(self, rows: np.ndarray, classes: np.ndarray) -> bool:
        from ..analyses.drift import drift_report

        report = drift_report(self.reference, rows)
        m = self.metrics
        for f in report.features:
            m.drift_statistic.labels(feature=f.feature).set(f.statistic)
            m.drift_p_adjusted.labels(feature=f.feature).set(f.p_adjusted)
        m.drift_share.set(report.share_drifted)
        m.positive_rate.set(float(classes.mean()))
        m.drift_rows.set(len(rows))
        return True

    def _reference_ready(self) -> bool:
        """Take the model's training rows once a model is loaded."""
        if self.reference is not None:
            return True
        rows = self.training_rows()
        if rows is None:
            return False
        if len(rows) < 2:
            return self._disable("the model carries no training rows to compare with (saved without data)")
        self.reference = rows
        log.info(
            "live_drift_ready",
            extra={"reference_rows": len(rows), "window": self.window.size, "interval_s": self.interval},
        )
        return True

    def _disable(self, reason: str) -> bool:
        self.disabled = reason
        log.error("live_drift_disabled", extra={"reason": reason})
        return False


def record_labelled_window(metrics: Metrics, probability, label, threshold: float) -> dict[str, float]:
    """The realized-performance hook: the served probabilities of the most recent labelled
    predictions and their labels (0/1) -> heart_performance_realized{metric} and
    heart_performance_labelled_rows; returns the figures. For whoever holds the labels (the
    inference table's reader), off the request path (about 1 ms for 10,000 rows); it needs no
    drift window, so it works with DRIFT_WINDOW=0 too."""
    from ..analyses.performance import realized

    probability, label = np.asarray(probability, dtype=float), np.asarray(label, dtype=float)
    if probability.ndim != 1 or probability.shape != label.shape or not np.isin(label, (0, 1)).all():
        raise ValueError("the labelled window needs one 0/1 label per probability")
    figures = realized(probability, label, threshold)
    for metric, value in figures.items():
        metrics.performance_realized.labels(metric=metric).set(value)
    metrics.performance_labelled_rows.set(len(label))
    return figures


def live_drift_for(settings, state, metrics: Metrics) -> LiveDrift | None:
    """The app's LiveDrift from its Settings (None when DRIFT_WINDOW=0), on the training rows of
    whichever model `state` has loaded."""
    if settings.drift_window == 0:
        return None

    def training_rows() -> np.ndarray | None:
        return state.model.reference.data if state.ready else None

    def score(rows: np.ndarray) -> tuple[np.ndarray, float] | None:
        if not state.ready:
            return None
        predictor = state.predictor
        return predictor.predict(rows)[1], predictor.threshold

    window = DriftWindow(settings.drift_window)
    return LiveDrift(window, metrics, settings.drift_interval, training_rows, score)
