"""Validated patients -> predictions: run the model, then trace, count and log each one.

Single rows on the ONNX fast path run on the event loop (tens of µs: cheaper than a thread
hop); batches over INLINE_ROWS and the sklearn fallback run in a worker thread. Nothing here
imports pandas or scikit-learn: only /explain does, on its first call.
"""

from __future__ import annotations

import logging
import time
from typing import NamedTuple

import numpy as np
from opentelemetry import trace
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from ..artifact import ModelError
from ..decision import decide, threshold_of
from ..predlog import PredictionRecords, PredictionWriter, new_prediction_ids, now_iso
from ..schema import FEATURE_NAMES, FEATURES
from .contract import LABELS, LegacyCode
from .errors import PredictionFailed
from .live_drift import DriftWindow
from .metrics import Metrics
from .state import ServingState
from .tracing import current_ids

log = logging.getLogger(__name__)
# Every error inside a span is caught and recorded by _failed (its real type); the PredictionFailed
# that carries the 500 out must not overwrite that status with its own name.
SPAN_ERRORS_BY_HAND = {"record_exception": False, "set_status_on_exception": False}
INLINE_ROWS = 64  # up to this many rows, ONNX inference (~tens of µs) runs on the event loop
_INT_FEATURES = tuple(f.discrete or f.integer for f in FEATURES)
_LEGACY_NAMES = tuple(f.name for f in FEATURES if f.missing_codes)  # where a LegacyCode can be


class Rows(NamedTuple):
    values: np.ndarray  # (n, 13) floats, NaN = missing (a null, an omitted field or a legacy code)
    imputed: list[list[str]]  # per row, the features the model imputes
    inputs: list[dict]  # per row, schema codes with null for imputed: what the prediction log records
    legacy: list[dict[str, int]]  # per row, the legacy codes read as unknown: {"ca": 4}


def to_rows(patients: list[BaseModel]) -> Rows:
    """Validated patients -> model input, with what was imputed (legacy codes included, as nulls)."""
    values, imputed, inputs, legacy = [], [], [], []
    names, as_int = FEATURE_NAMES, _INT_FEATURES
    for p in patients:
        d = p.__dict__
        row = [d[n] for n in names]
        if any(type(d[n]) is LegacyCode for n in _LEGACY_NAMES):  # rare: read as unknown, like a null
            legacy.append({n: int(v) for n, v in zip(names, row) if type(v) is LegacyCode})
            row = [None if type(v) is LegacyCode else v for v in row]
        else:
            legacy.append({})
        if None in row:
            imputed.append([n for n, v in zip(names, row) if v is None])
            inputs.append({n: (None if v is None else int(v) if i else v) for n, v, i in zip(names, row, as_int)})
        else:
            imputed.append([])
            inputs.append({n: int(v) if i else v for n, v, i in zip(names, row, as_int)})
        values.append(row)
    # dtype=float reads None as NaN: the model imputes it
    return Rows(np.array(values, dtype=float).reshape(len(patients), len(names)), imputed, inputs, legacy)


def _ids(span: trace.Span) -> tuple[str, str]:
    """(trace_id, span_id) of `span` as lowercase hex; current_ids() when it has none (tracing off)."""
    ctx = span.get_span_context()
    if ctx.is_valid:
        return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")
    return current_ids()


class Inference:
    """The prediction core shared by /predict, /predict/batch and /explain."""

    def __init__(
        self,
        state: ServingState,
        metrics: Metrics,
        tracer: trace.Tracer,
        writer: PredictionWriter,
        log_inputs: bool,
        drift_window: DriftWindow | None = None,
    ):
        self.state, self.metrics, self.tracer, self.writer = state, metrics, tracer, writer
        self.log_inputs = log_inputs
        self.drift_window = drift_window

    async def predict(self, patients: list[BaseModel], endpoint: str) -> tuple[str, list[dict]]:
        """(trace_id, one result per patient in input order); NotReady or PredictionFailed otherwise."""
        state = self.state
        state.require_ready()
        rows = to_rows(patients)
        # Started, not made current: nothing inside opens a span, and the context switch would cost
        # more than the rest of the span (bench/breakdown.py). Its attributes only if it records.
        span = self.tracer.start_span("inference")  # not a context manager: errors are recorded by _failed
        try:
            if span.is_recording():
                span.set_attributes(
                    {
                        "model.version": state.model.version,
                        "batch.size": len(patients),
                        "inference.engine": state.predictor.engine,
                        "http.route.endpoint": endpoint,
                    }
                )
            trace_id, span_id = _ids(span)
            try:
                if state.predictor.inline and len(patients) <= INLINE_ROWS:
                    results = self._predict_sync(rows, endpoint, trace_id, span_id)
                else:
                    results = await run_in_threadpool(self._predict_sync, rows, endpoint, trace_id, span_id)
            except Exception as e:  # noqa: BLE001 - a model failure is a 500 with the trace_id, never a crash
                self._failed(span, e, endpoint, trace_id, span_id, "prediction_failed", batch_size=len(patients))
        finally:
            span.end()
        return trace_id, results

    def _predict_sync(self, rows: Rows, endpoint: str, trace_id: str, span_id: str) -> list[dict]:
        """Predict, then count and log: inline for small ONNX calls, else in a worker thread."""
        predictor, version = self.state.predictor, self.state.model.version
        imputed = rows.imputed
        t0 = time.perf_counter()
        classes, proba = predictor.predict(rows.values)
        seconds = time.perf_counter() - t0
        self.metrics.observe_inference(endpoint, predictor.engine, seconds)
        if self.drift_window is not None:
            self.drift_window.append(rows.values, classes)
        classes, proba = classes.tolist(), proba.tolist()
        ids = new_prediction_ids(len(classes))
        self.metrics.count_classes(classes.count(1), len(classes))
        self.metrics.count_imputed(imputed)
        if self.writer.enabled():
            self._record((trace_id, span_id), version, seconds, rows, classes, proba, ids)
        return [
            {
                "prediction_id": i,
                "predicted_class": c,
                "label": LABELS[c],
                "probability": p,
                "imputed": miss,
                "legacy_codes": codes,
            }
            for i, c, p, miss, codes in zip(ids, classes, proba, imputed, rows.legacy)
        ]

    async def explain(self, patient: BaseModel) -> dict:
        """One patient's probability with each feature's SHAP contribution (the sklearn Pipeline's)."""
        state = self.state
        state.require_ready()
        rows = to_rows([patient])  # legacy codes: imputed (NaN), inputs null
        with self.tracer.start_as_current_span(
            "explain", attributes={"model.version": state.model.version, "batch.size": 1}, **SPAN_ERRORS_BY_HAND
        ) as span:
            trace_id, span_id = current_ids()
            t0 = time.perf_counter()
            try:
                explanation = await run_in_threadpool(self._explain_sync, rows.values)
            except HTTPException:
                raise  # no explainer in this image: a 503 that says where /explain is served
            except ModelError as e:  # the file changed since it was loaded: never unpickle it
                log.error("explain_refused", extra={"trace_id": trace_id, "reason": str(e)})
                raise HTTPException(503, f"cannot explain: {e}") from None
            except Exception as e:  # noqa: BLE001
                self._failed(span, e, "explain", trace_id, span_id, "explain_failed")
        threshold = threshold_of(state.model.card)
        cls = int(decide(explanation.probability, threshold)[0])
        (pid,) = new_prediction_ids(1)
        # A prediction like any other: recorded (log, inference table), so its label can come back.
        seconds, inputs = time.perf_counter() - t0, rows.inputs[0]
        self._record((trace_id, span_id), state.model.version, seconds, rows, [cls], [explanation.probability], [pid])
        log.info(
            "explanation",
            extra={
                "prediction_id": pid,
                "trace_id": trace_id,
                "span_id": span_id,
                "model_version": state.model.version,
                "probability": explanation.probability,
                **({"inputs": inputs} if self.log_inputs else {}),
            },
        )
        return {
            "prediction_id": pid,
            "predicted_class": cls,
            "label": LABELS[cls],
            "probability": explanation.probability,
            "threshold": threshold,
            "base_value": explanation.base_value,
            "contributions": [
                {"feature": name, "value": inputs[name], "contribution": value}
                for name, value in explanation.contributions
            ],
            "imputed": rows.imputed[0],
            "legacy_codes": rows.legacy[0],
            "model_version": state.model.version,
            "trace_id": trace_id,
        }

    def _explain_sync(self, rows: np.ndarray):
        """SHAP on the Pipeline (a worker thread): shap and pandas are imported here, on first use."""
        explainer = self.state.get_explainer()  # a 503 where shap is not installed
        import pandas as pd

        return explainer.explain(pd.DataFrame(rows, columns=list(FEATURE_NAMES)))

    def _record(self, ids: tuple[str, str], version: str, seconds: float, rows: Rows, classes, proba, pids) -> None:
        """The prediction records of one request, to the log and the inference table (PredictionWriter)."""
        self.writer.write(
            PredictionRecords(
                timestamp=now_iso(),
                trace_id=ids[0],
                span_id=ids[1],
                model_version=version,
                latency_ms=round(seconds * 1000, 4),
                inputs=rows.inputs if self.log_inputs else None,
                imputed=rows.imputed,
                predicted_class=classes,
                probability=proba,
                prediction_id=pids,
            )
        )

    def _failed(self, span, error: Exception, endpoint: str, trace_id: str, span_id: str, event: str, **extra):
        span.record_exception(error)
        span.set_status(trace.Status(trace.StatusCode.ERROR, type(error).__name__))
        self.metrics.errors.labels(endpoint=endpoint).inc()
        log.error(
            event,
            exc_info=error,
            extra={"trace_id": trace_id, "span_id": span_id, "model_version": self.state.model.version, **extra},
        )
        raise PredictionFailed(trace_id) from None
