"""The prediction core (heart/serving/inference.py) on stand-ins: no model, no server.

A fake predictor answers set probabilities, so each value the core adds (rows, imputed
features, legacy codes, the card's decision rule, counts, spans, log records) is checked
exactly. The real model through the app is in test_serving_api.py and test_serving_legacy.py.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from types import SimpleNamespace

import numpy as np
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from starlette.exceptions import HTTPException

import heart.serving.inference as inference
from heart.artifact import ModelError
from heart.attribution import Explanation
from heart.schema import FEATURE_NAMES
from heart.serving.contract import EXAMPLE, Patient
from heart.serving.errors import PredictionFailed
from heart.serving.inference import INLINE_ROWS, Inference, to_rows
from heart.serving.metrics import Metrics
from heart.serving.state import NotReady

NAN = math.nan
# EXAMPLE as numbers, in schema order, written out by hand (gender "male" = 1)
EXAMPLE_ROW = [63.0, 1.0, 3.0, 145.0, 233.0, 1.0, 0.0, 150.0, 0.0, 2.3, 0.0, 0.0, 1.0]


def patients(*bodies):
    return [Patient.model_validate(b) for b in bodies]


def same_rows(got: np.ndarray, expected: list[list[float]]) -> bool:
    return (
        got.dtype == np.float64 and got.shape == (len(expected), 13) and np.array_equal(got, expected, equal_nan=True)
    )


# ------------------------------------------------------------------------------- to_rows


def test_a_complete_patient_is_one_row_with_nothing_imputed():
    rows = to_rows(patients(EXAMPLE))
    assert same_rows(rows.values, [EXAMPLE_ROW])
    assert rows.imputed == [[]] and rows.legacy == [{}]
    assert rows.inputs == [{**EXAMPLE, "gender": 1}]
    # codes and integer features are logged as ints, the other measurements as the floats read
    assert [type(v) for v in rows.inputs[0].values()] == [
        int,
        int,
        int,
        float,
        float,
        int,
        int,
        float,
        int,
        float,
        int,
        int,
        int,
    ]


def test_missing_features_are_nan_in_the_row_null_in_the_inputs_and_listed_in_schema_order():
    rows = to_rows(patients({"age": 54, "gender": "female", "chol": 250, "cp": None}))
    assert same_rows(rows.values, [[54.0, 0.0, NAN, NAN, 250.0] + [NAN] * 8])
    assert rows.imputed == [[n for n in FEATURE_NAMES if n not in ("age", "gender", "chol")]]
    assert rows.inputs == [{"age": 54, "gender": 0, "chol": 250.0, **{n: None for n in rows.imputed[0]}}]
    assert [type(rows.inputs[0][n]) for n in ("age", "gender", "chol")] == [int, int, float]
    assert list(rows.inputs[0]) == list(FEATURE_NAMES) and rows.legacy == [{}]


def test_legacy_codes_are_imputed_like_nulls_and_named_as_plain_ints():
    rows = to_rows(patients({**EXAMPLE, "ca": 4, "thal": 0, "chol": None}))
    assert same_rows(rows.values, [EXAMPLE_ROW[:4] + [NAN] + EXAMPLE_ROW[5:11] + [NAN, NAN]])
    assert rows.imputed == [["chol", "ca", "thal"]]
    assert rows.legacy == [{"ca": 4, "thal": 0}] and [type(v) for v in rows.legacy[0].values()] == [int, int]
    assert rows.inputs == [{**EXAMPLE, "gender": 1, "chol": None, "ca": None, "thal": None}]
    assert type(rows.inputs[0]["slope"]) is int


def test_a_single_legacy_code_and_nothing_else_missing():
    rows = to_rows(patients({**EXAMPLE, "thal": 0.0}))
    assert same_rows(rows.values, [EXAMPLE_ROW[:12] + [NAN]])
    assert rows.imputed == [["thal"]] and rows.legacy == [{"thal": 0}]
    assert rows.inputs[0]["thal"] is None and rows.inputs[0]["ca"] == 0 and type(rows.inputs[0]["ca"]) is int


def test_a_batch_keeps_its_order_row_by_row():
    rows = to_rows(patients({**EXAMPLE, "ca": 4}, EXAMPLE, {**EXAMPLE, "cp": None}))
    assert same_rows(
        rows.values, [EXAMPLE_ROW[:11] + [NAN, 1.0], EXAMPLE_ROW, EXAMPLE_ROW[:2] + [NAN] + EXAMPLE_ROW[3:]]
    )
    assert rows.imputed == [["ca"], [], ["cp"]]
    assert rows.legacy == [{"ca": 4}, {}, {}]
    assert [r["ca"] for r in rows.inputs] == [None, 0, 0] and [r["cp"] for r in rows.inputs] == [3, 3, None]


def test_no_patients_is_an_empty_13_column_matrix():
    rows = to_rows([])
    assert rows.values.shape == (0, 13) and rows.imputed == [] and rows.inputs == [] and rows.legacy == []


# ------------------------------------------------------------------------------ stand-ins


class FakePredictor:
    """Answers class 1 iff P >= 0.5 with P taken in turn from `probabilities`; records its calls."""

    def __init__(self, probabilities, inline=True, engine="fake-engine", error=None):
        self.probabilities, self.inline, self.engine, self.error = probabilities, inline, engine, error
        self.calls = []

    def predict(self, X):
        self.calls.append((X.copy(), threading.get_ident()))
        if self.error is not None:
            raise self.error
        p = np.array([self.probabilities[i % len(self.probabilities)] for i in range(len(X))])
        return (p >= 0.5).astype(np.int64), p


class FakeExplainer:
    def __init__(self, explanation, error=None):
        self.explanation, self.error, self.frames = explanation, error, []

    def explain(self, frame):
        self.frames.append(frame)
        if self.error is not None:
            raise self.error
        return self.explanation


class FakeState:
    def __init__(self, predictor=None, explainer=None, card=None, ready=True):
        self.model = SimpleNamespace(version="v-test", card=card)
        self.predictor, self.explainer, self.ready = predictor, explainer, ready

    def require_ready(self):
        if not self.ready:
            raise NotReady()

    def get_explainer(self):
        return self.explainer


class FakeWriter:
    def __init__(self, enabled=True):
        self.on, self.batches = enabled, []

    def enabled(self):
        return self.on

    def write(self, batch):
        self.batches.append(batch)


class FakeWindow:
    def __init__(self):
        self.appended = []

    def append(self, rows, classes):
        self.appended.append((rows.copy(), classes.copy()))


class Clock:
    """time.perf_counter for the module under test: each call returns the next of `ticks`."""

    def __init__(self, *ticks):
        self.ticks = list(ticks)

    def perf_counter(self):
        return self.ticks.pop(0)


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter, provider.get_tracer("test")


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def api_log():
    logger = logging.getLogger("heart.serving.inference")
    handler, level = Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler.records
    logger.removeHandler(handler)
    logger.setLevel(level)


def make(spans, state, writer=None, log_inputs=True, window=None, metrics=None):
    return Inference(state, metrics or Metrics(), spans[1], writer or FakeWriter(), log_inputs, window)


def value(metrics, name, **labels):
    got = metrics.registry.get_sample_value(name, labels)
    return 0.0 if got is None else got


# ------------------------------------------------------------------------------- predict


def test_predict_answers_each_patient_in_order_with_its_label_imputed_and_legacy_codes(spans, monkeypatch):
    monkeypatch.setattr(inference, "time", Clock(5.0, 5.01234567))  # 12.34567 ms, measured from t0 = 5 s
    predictor, writer, window, metrics = FakePredictor([0.8, 0.2, 0.5]), FakeWriter(), FakeWindow(), Metrics()
    core = make(spans, FakeState(predictor), writer, window=window, metrics=metrics)
    bodies = [EXAMPLE, {**EXAMPLE, "ca": 4, "chol": None}, {"age": 40, "gender": "female"}]
    trace_id, results = asyncio.run(core.predict(patients(*bodies), "batch"))

    rest = [n for n in FEATURE_NAMES if n not in ("age", "gender")]
    ids = [r.pop("prediction_id") for r in results]  # each row its own id, the same the record holds
    assert len(set(ids)) == 3 and all(len(i) == 32 and int(i, 16) for i in ids)
    assert results == [
        {"predicted_class": 1, "label": "heart disease", "probability": 0.8, "imputed": [], "legacy_codes": {}},
        {
            "predicted_class": 0,
            "label": "no heart disease",
            "probability": 0.2,
            "imputed": ["chol", "ca"],
            "legacy_codes": {"ca": 4},
        },
        {"predicted_class": 1, "label": "heart disease", "probability": 0.5, "imputed": rest, "legacy_codes": {}},
    ]
    assert [type(r["predicted_class"]) for r in results] == [int, int, int]  # plain ints, not numpy's
    assert same_rows(predictor.calls[0][0], to_rows(patients(*bodies)).values.tolist())

    # counted: the classes, each imputed feature, the inference time on its endpoint and engine
    assert value(metrics, "heart_predictions_total", predicted_class="1") == 2
    assert value(metrics, "heart_predictions_total", predicted_class="0") == 1
    assert value(metrics, "heart_imputed_fields_total", feature="chol") == 2
    assert value(metrics, "heart_imputed_fields_total", feature="ca") == 2
    assert value(metrics, "heart_imputed_fields_total", feature="age") == 0
    labels = {"endpoint": "batch", "engine": "fake-engine"}
    assert value(metrics, "heart_inference_duration_seconds_count", **labels) == 1
    assert value(metrics, "heart_inference_duration_seconds_sum", **labels) == pytest.approx(0.01234567, abs=1e-12)

    # the drift window gets the very rows and classes
    ((rows, classes),) = window.appended
    assert same_rows(rows, to_rows(patients(*bodies)).values.tolist()) and classes.tolist() == [1, 0, 1]

    # one log batch with the request's ids, the inputs, and the latency in ms to 4 places
    (batch,) = writer.batches
    span = spans[0].get_finished_spans()[0]
    assert batch.trace_id == trace_id == format(span.context.trace_id, "032x")
    assert batch.span_id == format(span.context.span_id, "016x")
    assert batch.model_version == "v-test" and batch.latency_ms == 12.3457  # 12.34567 ms to 4 places
    assert batch.inputs == to_rows(patients(*bodies)).inputs and batch.imputed == [[], ["chol", "ca"], rest]
    assert batch.predicted_class == [1, 0, 1] and batch.probability == [0.8, 0.2, 0.5]
    assert batch.timestamp.endswith("+00:00") and "T" in batch.timestamp
    assert batch.prediction_id == ids


def test_the_inference_span_names_version_size_engine_and_endpoint(spans):
    core = make(spans, FakeState(FakePredictor([0.9])))
    trace_id, _ = asyncio.run(core.predict(patients(EXAMPLE, EXAMPLE), "predict"))
    (span,) = spans[0].get_finished_spans()
    assert span.name == "inference" and format(span.context.trace_id, "032x") == trace_id
    assert dict(span.attributes) == {
        "model.version": "v-test",
        "batch.size": 2,
        "inference.engine": "fake-engine",
        "http.route.endpoint": "predict",
    }
    assert span.status.status_code == StatusCode.UNSET


def test_no_log_inputs_keeps_the_features_out_of_the_records(spans):
    writer = FakeWriter()
    asyncio.run(make(spans, FakeState(FakePredictor([0.3])), writer, log_inputs=False).predict(patients(EXAMPLE), "p"))
    assert writer.batches[0].inputs is None and writer.batches[0].imputed == [[]]


def test_a_disabled_writer_is_not_written(spans):
    writer = FakeWriter(enabled=False)
    _, results = asyncio.run(make(spans, FakeState(FakePredictor([0.3])), writer).predict(patients(EXAMPLE), "p"))
    assert writer.batches == [] and results[0]["predicted_class"] == 0


@pytest.mark.parametrize(
    "inline,n,on_the_loop",
    [(True, 1, True), (True, INLINE_ROWS, True), (True, INLINE_ROWS + 1, False), (False, 1, False)],
)
def test_small_inline_batches_run_on_the_loop_and_the_rest_in_a_worker_thread(spans, inline, n, on_the_loop):
    assert INLINE_ROWS == 64
    predictor, writer, metrics = FakePredictor([0.7], inline=inline), FakeWriter(), Metrics()
    core = make(spans, FakeState(predictor), writer, metrics=metrics)
    trace_id, results = asyncio.run(core.predict(patients(*[EXAMPLE] * n), "batch"))
    assert len(results) == n and (predictor.calls[0][1] == threading.get_ident()) is on_the_loop
    # either way, the same endpoint, rows and ids reach the counts and the log
    assert value(metrics, "heart_inference_duration_seconds_count", endpoint="batch", engine="fake-engine") == 1
    assert value(metrics, "heart_predictions_total", predicted_class="1") == n
    (span,) = spans[0].get_finished_spans()
    (batch,) = writer.batches
    assert (batch.trace_id, batch.span_id) == (trace_id, format(span.context.span_id, "016x"))
    assert len(batch.inputs) == n and batch.inputs[0] == {**EXAMPLE, "gender": 1}


def test_predict_when_not_ready_raises_not_ready_before_the_model_runs(spans):
    predictor = FakePredictor([0.7])
    with pytest.raises(NotReady):
        asyncio.run(make(spans, FakeState(predictor, ready=False)).predict(patients(EXAMPLE), "predict"))
    assert predictor.calls == [] and spans[0].get_finished_spans() == ()


@pytest.mark.parametrize("n", [1, INLINE_ROWS + 1])
def test_a_model_failure_is_prediction_failed_with_the_trace_id_counted_and_logged(spans, api_log, n):
    metrics, writer = Metrics(), FakeWriter()
    core = make(spans, FakeState(FakePredictor([0.5], error=RuntimeError("secret"))), writer, metrics=metrics)
    with pytest.raises(PredictionFailed) as e:
        asyncio.run(core.predict(patients(*[EXAMPLE] * n), "batch"))
    (span,) = spans[0].get_finished_spans()
    trace_id = format(span.context.trace_id, "032x")
    assert e.value.trace_id == trace_id and e.value.__cause__ is None and e.value.__suppress_context__
    # the span names the model's error, not the PredictionFailed that carries the reply out of it
    assert (span.status.status_code, span.status.description) == (StatusCode.ERROR, "RuntimeError")
    assert [ev.attributes["exception.type"] for ev in span.events] == ["RuntimeError"]
    assert span.events[0].attributes["exception.message"] == "secret"
    assert value(metrics, "heart_prediction_errors_total", endpoint="batch") == 1
    assert value(metrics, "heart_prediction_errors_total", endpoint="explain") == 0
    assert writer.batches == [] and value(metrics, "heart_predictions_total", predicted_class="1") == 0
    (record,) = [r for r in api_log if r.levelno >= logging.ERROR]
    assert record.getMessage() == "prediction_failed" and record.levelno == logging.ERROR
    assert record.exc_info[1].args == ("secret",)
    assert (record.trace_id, record.span_id) == (trace_id, format(span.context.span_id, "016x"))
    assert record.model_version == "v-test" and record.batch_size == n


# ------------------------------------------------------------------------------- explain


def explanation(p=0.65):
    return Explanation(probability=p, base_value=0.45, contributions=[("thal", 0.15), ("age", 0.05), ("ca", 0.0)])


@pytest.mark.parametrize(
    "card,p,cls",
    [
        ({"threshold": 0.7}, 0.65, 0),  # under the card's threshold, though over 0.5
        ({"threshold": 0.7}, 0.7, 1),  # exactly at it: class 1 (>=)
        ({"threshold": 0.3}, 0.35, 1),
        ({"threshold": 0.3}, 0.29, 0),
        (None, 0.5, 1),  # no card: 0.5
        ({}, 0.49, 0),
    ],
)
def test_explain_applies_the_cards_threshold(spans, card, p, cls):
    core = make(spans, FakeState(explainer=FakeExplainer(explanation(p)), card=card))
    body = asyncio.run(core.explain(patients(EXAMPLE)[0]))
    assert body["predicted_class"] == cls and type(body["predicted_class"]) is int
    assert body["label"] == {1: "heart disease", 0: "no heart disease"}[cls] and body["probability"] == p
    assert body["threshold"] == (card or {}).get("threshold", 0.5)  # the page states the rule that decided


def test_explain_answers_contributions_with_the_inputs_imputed_and_legacy_codes(spans, api_log, monkeypatch):
    monkeypatch.setattr(inference, "time", Clock(7.0, 7.25))  # 250 ms, measured from t0 = 7 s
    explainer, writer = FakeExplainer(explanation()), FakeWriter()
    core = make(spans, FakeState(explainer=explainer, card={"threshold": 0.6}), writer)
    body = asyncio.run(core.explain(patients({**EXAMPLE, "ca": 4, "chol": None})[0]))
    (span,) = spans[0].get_finished_spans()
    trace_id = format(span.context.trace_id, "032x")
    # an explained patient is a prediction like any other: recorded, so its label can come back
    (batch,) = writer.batches
    pid = body.pop("prediction_id")
    assert batch.prediction_id == [pid] and batch.probability == [0.65] and batch.latency_ms == 250.0
    assert batch.predicted_class == [1] and batch.trace_id == trace_id and batch.model_version == "v-test"
    assert batch.inputs == [{**EXAMPLE, "gender": 1, "ca": None, "chol": None}] and batch.imputed == [["chol", "ca"]]
    assert body == {
        "predicted_class": 1,
        "label": "heart disease",
        "probability": 0.65,
        "threshold": 0.6,
        "base_value": 0.45,
        "contributions": [
            {"feature": "thal", "value": 1, "contribution": 0.15},
            {"feature": "age", "value": 63, "contribution": 0.05},
            {"feature": "ca", "value": None, "contribution": 0.0},
        ],
        "imputed": ["chol", "ca"],
        "legacy_codes": {"ca": 4},
        "model_version": "v-test",
        "trace_id": trace_id,
    }
    (frame,) = explainer.frames
    assert list(frame.columns) == list(FEATURE_NAMES)
    assert same_rows(frame.to_numpy(), [EXAMPLE_ROW[:4] + [NAN] + EXAMPLE_ROW[5:11] + [NAN, 1.0]])
    assert span.name == "explain" and dict(span.attributes) == {"model.version": "v-test", "batch.size": 1}
    (record,) = [r for r in api_log if r.getMessage() == "explanation"]
    assert record.levelno == logging.INFO
    assert (record.trace_id, record.span_id) == (trace_id, format(span.context.span_id, "016x"))
    assert record.model_version == "v-test" and record.probability == 0.65 and record.prediction_id == pid
    assert record.inputs == {**EXAMPLE, "gender": 1, "ca": None, "chol": None}


def test_explain_refuses_a_model_file_it_cannot_trust_with_a_503_and_one_error_line(spans, api_log):
    """The Pipeline's file changed since it was verified (heart.artifact raises ModelError): a 503 that
    says why, one error line with the request's trace id, nothing recorded, no prediction error counted."""
    metrics, writer = Metrics(), FakeWriter()
    refused = FakeExplainer(None, error=ModelError("model.zip: sha256 0123 is no longer the one verified"))
    core = make(spans, FakeState(explainer=refused), writer, metrics=metrics)
    with pytest.raises(HTTPException) as e:
        asyncio.run(core.explain(patients(EXAMPLE)[0]))
    assert e.value.status_code == 503
    assert e.value.detail == "cannot explain: model.zip: sha256 0123 is no longer the one verified"
    (span,) = spans[0].get_finished_spans()
    (record,) = api_log
    assert (record.levelno, record.getMessage()) == (logging.ERROR, "explain_refused")
    assert record.trace_id == format(span.context.trace_id, "032x")
    assert record.reason == "model.zip: sha256 0123 is no longer the one verified"
    assert writer.batches == [] and value(metrics, "heart_prediction_errors_total", endpoint="explain") == 0


def test_explain_without_log_inputs_logs_no_features(spans, api_log):
    core = make(spans, FakeState(explainer=FakeExplainer(explanation())), log_inputs=False)
    asyncio.run(core.explain(patients(EXAMPLE)[0]))
    (record,) = [r for r in api_log if r.getMessage() == "explanation"]
    assert not hasattr(record, "inputs") and record.probability == 0.65


def test_explain_when_not_ready_raises_not_ready(spans):
    explainer = FakeExplainer(explanation())
    with pytest.raises(NotReady):
        asyncio.run(make(spans, FakeState(explainer=explainer, ready=False)).explain(patients(EXAMPLE)[0]))
    assert explainer.frames == []


def test_an_explainer_failure_is_prediction_failed_counted_on_explain(spans, api_log):
    metrics = Metrics()
    core = make(spans, FakeState(explainer=FakeExplainer(None, error=ValueError("shap broke"))), metrics=metrics)
    with pytest.raises(PredictionFailed) as e:
        asyncio.run(core.explain(patients(EXAMPLE)[0]))
    (span,) = spans[0].get_finished_spans()
    assert e.value.trace_id == format(span.context.trace_id, "032x")
    assert (span.status.status_code, span.status.description) == (StatusCode.ERROR, "ValueError")
    assert [ev.attributes["exception.type"] for ev in span.events] == ["ValueError"]
    assert value(metrics, "heart_prediction_errors_total", endpoint="explain") == 1
    (record,) = [r for r in api_log if r.levelno >= logging.ERROR]
    assert record.getMessage() == "explain_failed" and record.exc_info[1].args == ("shap broke",)
    assert (record.trace_id, record.span_id) == (e.value.trace_id, format(span.context.span_id, "016x"))
    assert record.model_version == "v-test" and not hasattr(record, "batch_size")
    assert not [r for r in api_log if r.getMessage() == "explanation"]


def test_the_core_keeps_what_it_was_given(spans):
    state, metrics, writer, window = FakeState(), Metrics(), FakeWriter(), FakeWindow()
    core = Inference(state, metrics, spans[1], writer, False, window)
    assert (core.state, core.metrics, core.tracer, core.writer) == (state, metrics, spans[1], writer)
    assert core.log_inputs is False and core.drift_window is window
    assert Inference(state, metrics, spans[1], writer, True).drift_window is None


class FakeSpan:
    def __init__(self):
        self.exceptions, self.statuses = [], []

    def record_exception(self, error):
        self.exceptions.append(error)

    def set_status(self, status):
        self.statuses.append(status)


def test_failed_marks_the_span_with_the_errors_type_counts_logs_and_raises(api_log):
    metrics, span, error = Metrics(), FakeSpan(), KeyError("k")
    core = Inference(FakeState(), metrics, None, FakeWriter(), True)
    with pytest.raises(PredictionFailed) as e:
        core._failed(span, error, "predict", "ab" * 16, "cd" * 8, "prediction_failed", batch_size=3, rows=7)
    assert e.value.trace_id == "ab" * 16 and e.value.args == ("ab" * 16,) and e.value.__cause__ is None
    assert span.exceptions == [error]
    (status,) = span.statuses
    assert status.status_code == StatusCode.ERROR and status.description == "KeyError"
    assert value(metrics, "heart_prediction_errors_total", endpoint="predict") == 1
    (record,) = api_log
    assert record.getMessage() == "prediction_failed" and record.levelno == logging.ERROR
    assert record.exc_info[1] is error
    assert (record.trace_id, record.span_id, record.model_version) == ("ab" * 16, "cd" * 8, "v-test")
    assert (record.batch_size, record.rows) == (3, 7)
