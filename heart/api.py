"""The prediction API: FastAPI routes over the verified model, with request models built from the schema.

Every rule a request is checked against (ranges, codes, the integer rule, required fields,
gender as text in any case) comes from heart/schema.py, so the API, the data loader and the
docs cannot disagree. The model is loaded in the background at start-up: sha256-verified by
heart.model.load_model, then converted to the ONNX fast path (heart.fast) and parity-checked
against the sklearn Pipeline; /ready_check answers 503 with the reason until all of that
has passed, and the prediction routes refuse to serve until then.
"""
from __future__ import annotations

import asyncio
import gc
import logging
import math
import os
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Mapping

import numpy as np
import orjson
import pandas as pd
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from opentelemetry import trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationError, WithJsonSchema, create_model
from pydantic_core import PydanticCustomError
from starlette.concurrency import run_in_threadpool
from starlette.routing import Route

from . import __version__
from .decision import decide, threshold_of
from .fast import Parity, build_predictor, parity_rows
from .model import LoadedModel, ModelError, load_model
from .schema import BY_NAME, FEATURE_NAMES, FEATURES, TARGET, Feature
from .telemetry import (SERVICE_NAME, Metrics, ObservabilityMiddleware, PredictionLines, PredictionLog, current_ids, now_iso,
                        setup_logging, tracer_provider)

log = logging.getLogger("heart.api")
ROOT = Path(__file__).resolve().parent.parent
MAX_BATCH = 1000
INLINE_ROWS = 64  # up to this many rows, ONNX inference (~tens of µs) runs on the event loop
THREADED_BODY_BYTES = 32_000  # larger bodies are validated in a worker thread
TRACE_FLUSH_SECONDS = 5.0  # at most this long flushing spans at shutdown
HOT_PATHS = ("/predict", "/predict/", "/predict/batch")  # served as plain Starlette routes
LABELS = {int(k): v for k, v in TARGET.labels.items()}


# ------------------------------------------------------------------------------------ settings

def _env_bool(value: str | None, default: bool) -> bool:
    if value is None or value.strip() == "":
        return default
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


@dataclass(frozen=True)
class Settings:
    """Server configuration; from_env() reads the 12-factor environment variables."""

    model_path: Path = Path("model.joblib")
    prediction_log: Path | None = None     # PREDICTION_LOG: JSON lines of served predictions
    log_inputs: bool = True                # LOG_INPUTS=false leaves patients' inputs out of all logs
    log_level: str = "info"                # LOG_LEVEL
    engine: str = "onnx"                   # INFERENCE_ENGINE: onnx (parity-checked) or sklearn
    parity_samples: int = 2000             # schema samples checked at load, besides data/data.csv
    parity_data: Path | None = ROOT / "data" / "data.csv"  # rows checked at load if the file exists
    background_load: bool = True           # load after start-up, so probes answer while loading
    max_body_bytes: int = 4_000_000        # larger bodies get a JSON 413 (BodyLimit)
    configure_logging: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, **overrides) -> "Settings":
        values: dict[str, Any] = {}
        if environ.get("MODEL_PATH"):
            values["model_path"] = Path(environ["MODEL_PATH"])
        if environ.get("PREDICTION_LOG"):
            values["prediction_log"] = Path(environ["PREDICTION_LOG"])
        values["log_inputs"] = _env_bool(environ.get("LOG_INPUTS"), True)
        if environ.get("LOG_LEVEL"):
            values["log_level"] = environ["LOG_LEVEL"].lower()
        if environ.get("INFERENCE_ENGINE"):
            values["engine"] = environ["INFERENCE_ENGINE"].lower()
        values.update({k: v for k, v in overrides.items() if v is not None})
        if values.get("model_path") is not None:
            values["model_path"] = Path(values["model_path"])
        if values.get("prediction_log") is not None:
            values["prediction_log"] = Path(values["prediction_log"])
        return cls(**values)


# ------------------------------------------------------------------------------ request models

def _error(kind: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(kind, "{message}", {"message": message})


def _validator(f: Feature):
    """Validate one feature by the schema's rule; return its numeric code/value (float) or None.

    The common case (a valid JSON number) takes one comparison chain; anything else goes the
    slow way, through Feature.check, which words the rule for the error message.
    """
    text_codes = {k.lower(): v for k, v in f.text_codes.items()}
    continuous = f.kind == "continuous"
    low, high, integer = f.low, f.high, f.integer
    codes = frozenset(f.codes)

    def validate(value: Any) -> float | None:
        kind = type(value)
        if kind is int or kind is float:  # the hot path; NaN and out-of-range fall through
            if continuous:
                if low <= value <= high and (not integer or value == int(value)):
                    return float(value)
            elif value in codes:
                return float(value)
        if value is None:
            if f.required:
                raise _error("missing", f"{f.name} is required and cannot be null: must be {f.rule()}")
            return None
        if isinstance(value, str):
            if text_codes:
                code = text_codes.get(value.strip().lower())
                if code is not None:
                    return float(code)
                raise _error("schema_rule", f"{f.name} must be {f.rule()} (text in any case), got {value!r}")
            raise _error("wrong_type", f"{f.name} must be {f.rule()}, not text: got {value!r}"[:300])
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _error("wrong_type", f"{f.name} must be {f.rule()}, got {type(value).__name__} {value!r}"[:300])
        try:
            number = float(value)
        except OverflowError:
            raise _error("schema_rule", f"{f.name} must be {f.rule()}, got a number too large") from None
        why = f.check(number)
        if why is not None:
            raise _error("finite_number" if not math.isfinite(number) else "schema_rule", f"{f.name} {why}")
        return number

    return validate


def _json_schema(f: Feature) -> dict:
    """What /docs and the OpenAPI schema (and so schemathesis) say about one feature."""
    desc = f"{f.description}" + (f" ({f.unit})" if f.unit else "") + f". Rule: {f.rule()}."
    if f.kind == "continuous":
        schema: dict = {"type": "integer" if f.integer else "number", "minimum": f.low, "maximum": f.high}
    else:
        schema = {"type": "integer", "enum": sorted(f.codes)}
    if f.text_codes:
        variants = sorted({v for t in f.text_codes for v in (t, t.upper(), t.capitalize())})
        schema = {"anyOf": [schema, {"type": "string", "enum": variants}]}
    if not f.required:
        desc += " Optional: null or omitted is imputed by the model."
        schema = {"anyOf": [*(schema["anyOf"] if "anyOf" in schema else [schema]), {"type": "null"}]}
    return {**schema, "title": f.name, "description": desc}


EXAMPLE = {"age": 63, "gender": "male", "cp": 3, "trestbps": 145, "chol": 233, "fbs": 1, "restecg": 0,
           "thalach": 150, "exang": 0, "oldpeak": 2.3, "slope": 0, "ca": 0, "thal": 1}


def build_patient_model() -> type[BaseModel]:
    """The request model for one patient, generated from FEATURES (unknown fields are refused)."""
    fields: dict[str, Any] = {}
    for f in FEATURES:
        annotation = Annotated[Any, PlainValidator(_validator(f)), WithJsonSchema(_json_schema(f))]
        fields[f.name] = (annotation, ... if f.required else None)
    config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE]})
    return create_model("Patient", __config__=config, __doc__="One patient's 13 clinical features.", **fields)


Patient = build_patient_model()


class Batch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    instances: Annotated[list[Patient], Field(min_length=1, max_length=MAX_BATCH,  # type: ignore[valid-type]
                                              description=f"1 to {MAX_BATCH} patients")]


class PredictionResult(BaseModel):
    predicted_class: int = Field(description="1 = heart disease, 0 = no heart disease")
    label: str
    probability: float = Field(description="P(heart disease)")
    imputed: list[str] = Field(description="features that were missing and imputed by the model")


class PredictResponse(PredictionResult):
    model_version: str
    trace_id: str = Field(description="OpenTelemetry trace id (32 hex): find this request's spans and logs")


class BatchResponse(BaseModel):
    model_version: str
    trace_id: str
    predictions: list[PredictionResult]


class Contribution(BaseModel):
    feature: str
    value: float | None = Field(description="the input value (schema code); null if imputed")
    contribution: float = Field(description="SHAP value: change in P(heart disease)")


class ExplainResponse(BaseModel):
    predicted_class: int
    label: str
    probability: float
    base_value: float = Field(description="mean P(heart disease) of the forest; base + contributions = probability")
    contributions: list[Contribution]
    imputed: list[str]
    model_version: str
    trace_id: str


_INT_FEATURES = tuple(f.discrete or f.integer for f in FEATURES)


def to_rows(patients: list[BaseModel]) -> tuple[np.ndarray, list[list[str]], list[dict]]:
    """Validated patients -> (n, 13) floats with NaN for missing, imputed names, schema-coded inputs."""
    values, imputed, inputs = [], [], []
    names, as_int, nan = FEATURE_NAMES, _INT_FEATURES, math.nan
    for p in patients:
        d = p.__dict__
        row = [d[n] for n in names]
        if None in row:
            imputed.append([n for n, v in zip(names, row) if v is None])
            inputs.append({n: (None if v is None else int(v) if i else v) for n, v, i in zip(names, row, as_int)})
            row = [nan if v is None else v for v in row]
        else:
            imputed.append([])
            inputs.append({n: int(v) if i else v for n, v, i in zip(names, row, as_int)})
        values.append(row)
    return np.array(values, dtype=float).reshape(len(patients), len(names)), imputed, inputs


async def parse_body(request: Request, model: type[BaseModel]) -> BaseModel:
    """Validate the raw JSON body with pydantic's own parser (no json.loads + dependency pass).

    Errors are FastAPI's standard RequestValidationError with "body" first in loc, so the 422
    looks exactly like FastAPI's own; this only skips work on the hot path.
    """
    body = await request.body()
    if not body.strip():
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "a JSON body is required",
                                       "input": None}])
    try:
        if len(body) > THREADED_BODY_BYTES:  # a big batch: validate off the event loop
            return await run_in_threadpool(model.model_validate_json, body)
        return model.model_validate_json(body)
    except ValidationError as e:
        raise RequestValidationError([{**err, "loc": ("body", *err["loc"])} for err in e.errors(include_url=False)],
                                     body=body) from None


def _body_doc(model: type[BaseModel]) -> dict:
    """openapi_extra declaring a JSON request body the route parses itself (see parse_body)."""
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}}


class ValidationErrorItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorResponse(BaseModel):
    detail: list[ValidationErrorItem]


# ------------------------------------------------------------------------------------ serving

def _json(payload: dict, status_code: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status_code, media_type="application/json")


class BodyLimit:
    """A 413 in JSON, like every other error, for a body over the limit: FastAPI's own
    max_body_size answers plain text when Content-Length is over. A declared length is checked
    once, before anything is read; only chunked bodies pay for counting."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes
        self.detail = (f"request body over the limit of {max_bytes:,} bytes; "
                       f"send at most {MAX_BATCH:,} patients per batch")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit():  # else: counted as it arrives
                if int(value) > self.max_bytes:
                    return await JSONResponse({"detail": self.detail}, status_code=413)(scope, receive, send)
                return await self.app(scope, receive, send)
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:  # raised inside the route's body read: a JSON 413 response
                raise HTTPException(status_code=413, detail=self.detail)
            return message

        await self.app(scope, counted, send)


class NotReady(Exception):
    pass


class PredictionFailed(Exception):
    def __init__(self, trace_id: str):
        super().__init__(trace_id)
        self.trace_id = trace_id


@dataclass
class ServingState:
    """What the app serves. load() fills every field before status turns "ready", and requests
    check status first, so none ever sees half a model."""

    settings: Settings
    metrics: Metrics
    status: str = "loading"
    reason: str = "the model is loading"
    model: LoadedModel | None = None
    predictor: Any = None
    parity: Parity | None = None
    explainer: Any = None
    loaded: threading.Event = field(default_factory=threading.Event)

    @property
    def ready(self) -> bool:
        return self.status == "ready"

    def load(self) -> None:
        """Verify and load the model, build the fast path and the explainer; ready only if all pass."""
        from .explain import PipelineExplainer  # shap is slow to import: only when a model loads

        path = self.settings.model_path
        t0 = time.perf_counter()
        try:
            log.info("model_loading", extra={"model_path": str(path), "engine": self.settings.engine})
            model = load_model(path)
            data = None
            if self.settings.parity_data is not None and Path(self.settings.parity_data).is_file():
                from .data import load_dataset
                data = load_dataset(self.settings.parity_data).X
            rows = parity_rows(self.settings.parity_samples, seed=0, data=data)
            predictor, parity = build_predictor(model.pipeline, rows, self.settings.engine, threshold_of(model.card))
            explainer = PipelineExplainer(model.pipeline)
        except ModelError as e:
            self._fail(f"model refused: {e}")
            return
        except Exception as e:  # noqa: BLE001 - readiness must say why, whatever it was
            self._fail(f"model could not be loaded: {type(e).__name__}: {e}")
            return
        finally:
            self.loaded.set()
        self.model, self.predictor, self.parity, self.explainer = model, predictor, parity, explainer
        self.metrics.model_info.labels(model_version=model.version, engine=predictor.engine).set(1)
        self.metrics.ready.set(1)
        self.status, self.reason = "ready", ""
        # Everything loaded so far (libraries, the forest, SHAP) lives as long as the process:
        # move it out of the collector's view, so full collections stay short (p99 latency).
        gc.collect()
        gc.freeze()
        log.info("model_loaded", extra={"model_version": model.version, "model_path": str(path),
                                        "sha256": model.card["artifact"]["sha256"], "engine": predictor.engine,
                                        "parity": parity.as_dict(), "seconds": round(time.perf_counter() - t0, 3)})

    def _fail(self, reason: str) -> None:
        self.status, self.reason = "failed", reason
        self.metrics.ready.set(0)
        log.error("model_load_failed", extra={"reason": reason, "model_path": str(self.settings.model_path)})

    def wait(self, timeout: float = 60) -> bool:
        """Block until the load attempt has finished (tests, scripts); True if ready."""
        self.loaded.wait(timeout)
        return self.ready


def _sanitize(value: Any, depth: int = 0) -> Any:
    """Error inputs as valid JSON: NaN/Infinity become strings, big containers are elided."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_sanitize(v, depth + 1) for v in value] if len(value) <= 20 and depth < 4 else f"<{len(value)} items>"
    if isinstance(value, dict):
        return {str(k): _sanitize(v, depth + 1) for k, v in value.items()} if depth < 4 else "<object>"
    if isinstance(value, (str, int, type(None), bool, float)):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value[:200]).decode("utf-8", "replace")
    return str(value)


def create_app(model_path: str | Path | None = None, settings: Settings | None = None,
               tracer_provider_: TracerProvider | None = None, **overrides) -> FastAPI:
    """Build the API. Configuration: `settings`, else the environment; keyword overrides win.

    A TracerProvider may be passed in (tests use an in-memory exporter); otherwise one is made
    from the OTEL_* environment variables and shut down (flushed) with the app.
    """
    settings = settings or Settings.from_env()
    if model_path is not None:
        overrides["model_path"] = Path(model_path)
    if overrides:
        settings = replace(settings, **overrides)
    if settings.configure_logging:
        setup_logging(settings.log_level)
    own_provider = tracer_provider_ is None
    provider = tracer_provider_ or tracer_provider(__version__)
    tracer = provider.get_tracer("heart.api", __version__)
    metrics = Metrics()
    state = ServingState(settings=settings, metrics=metrics)
    prediction_log = PredictionLog(settings.prediction_log) if settings.prediction_log else None
    log_inputs = settings.log_inputs
    prediction_lines = PredictionLines()
    dumps = orjson.dumps  # ~10x json.dumps: it is per patient, on the hot path

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        log.info("startup", extra={"service": SERVICE_NAME, "version": __version__, "pid": os.getpid(),
                                   "model_path": str(settings.model_path), "log_inputs": log_inputs,
                                   "prediction_log": str(settings.prediction_log or "")})
        task = None
        if settings.background_load:
            task = asyncio.create_task(asyncio.to_thread(state.load))
        else:
            state.load()
        try:
            yield
        finally:
            log.info("shutdown", extra={"service": SERVICE_NAME, "pid": os.getpid()})
            if task is not None and not task.done():
                await asyncio.wait([task], timeout=30)
            if prediction_log is not None:
                prediction_log.close()
            if own_provider:  # flush the spans, but never hold up shutdown for an unreachable collector
                flusher = threading.Thread(target=provider.shutdown, name="otel-shutdown", daemon=True)
                flusher.start()
                flusher.join(TRACE_FLUSH_SECONDS)
                if flusher.is_alive():
                    log.warning("trace_flush_timeout", extra={"seconds": TRACE_FLUSH_SECONDS})

    app = FastAPI(title="Heart-disease prediction API", version=__version__, lifespan=lifespan,
                  description="Predicts angiographic heart disease from 13 clinical features "
                              "(UCI Cleveland data). Not a medical device.")
    app.state.serving = state
    app.state.metrics = metrics
    app.state.tracer_provider = provider
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(ObservabilityMiddleware, metrics=metrics, static_paths=HOT_PATHS)

    # ------------------------------------------------------------------ error handlers
    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        detail = []
        for err in exc.errors():
            item = {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
            field_name = item["loc"][-1] if item["loc"] else None
            if item["type"] == "missing" and field_name in BY_NAME:
                item["msg"] = f"{field_name} is required: must be {BY_NAME[field_name].rule()}"
            elif item["type"] == "missing" and item["loc"] == ["body"]:
                item["msg"] = "a JSON body is required"
            elif item["type"] == "json_invalid":
                item["msg"] = f"malformed JSON: {(err.get('ctx') or {}).get('error', 'decode error')}"
            if "input" in err:
                item["input"] = _sanitize(err["input"])
            detail.append(item)
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(NotReady)
    async def not_ready(request: Request, exc: NotReady):
        return JSONResponse({"detail": f"model not ready: {state.reason}", "status": state.status},
                            status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(PredictionFailed)
    async def prediction_failed(request: Request, exc: PredictionFailed):
        return JSONResponse({"detail": "internal error while predicting; the trace_id finds it in the logs",
                             "trace_id": exc.trace_id}, status_code=500)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        trace_id, span_id = current_ids()
        log.error("unhandled_error", exc_info=exc, extra={"trace_id": trace_id, "span_id": span_id,
                                                          "path": request.url.path})
        return JSONResponse({"detail": "internal server error", "trace_id": trace_id}, status_code=500)

    # ------------------------------------------------------------------ prediction core
    def serve_sync(rows: np.ndarray, imputed: list[list[str]], inputs: list[dict], endpoint: str,
                   trace_id: str, span_id: str) -> tuple[list[dict], float]:
        """Predict, then log and count: runs inline for small ONNX calls, else in a worker thread."""
        predictor, version = state.predictor, state.model.version
        t0 = time.perf_counter()
        classes, proba = predictor.predict(rows)
        seconds = time.perf_counter() - t0
        latency_ms = round(seconds * 1000, 4)
        metrics.observe_inference(endpoint, predictor.engine, seconds)
        classes, proba = classes.tolist(), proba.tolist()
        ones = classes.count(1)
        metrics.count_classes(ones, len(classes))
        results = [{"predicted_class": c, "label": LABELS[c], "probability": p, "imputed": miss}
                   for c, p, miss in zip(classes, proba, imputed)]
        emit = prediction_lines.enabled()
        if emit or prediction_log is not None:
            timestamp = now_iso()
            records, lines = [], []
            for result, coded in zip(results, inputs):
                record = {"event": "prediction", "timestamp": timestamp, "trace_id": trace_id, "span_id": span_id,
                          "model_version": version}
                if log_inputs:
                    record["inputs"] = coded
                record.update(imputed=result["imputed"], predicted_class=result["predicted_class"],
                              probability=result["probability"], latency_ms=latency_ms)
                records.append(record)
                lines.append(dumps(record))
            if prediction_log is not None:
                prediction_log.write(lines)
            if emit:
                prediction_lines.write(lines, records)
        return results, seconds

    async def serve(patients: list[BaseModel], endpoint: str) -> tuple[str, list[dict]]:
        if not state.ready:
            raise NotReady()
        rows, imputed, inputs = to_rows(patients)
        with tracer.start_as_current_span("inference", attributes={
                "model.version": state.model.version, "batch.size": len(patients),
                "inference.engine": state.predictor.engine, "http.route.endpoint": endpoint}) as span:
            trace_id, span_id = current_ids()
            try:
                if state.predictor.inline and len(patients) <= INLINE_ROWS:
                    results, _ = serve_sync(rows, imputed, inputs, endpoint, trace_id, span_id)
                else:
                    results, _ = await run_in_threadpool(serve_sync, rows, imputed, inputs, endpoint,
                                                         trace_id, span_id)
            except Exception as e:  # noqa: BLE001 - a model failure is a 500 with the trace_id, never a crash
                span.record_exception(e)
                span.set_status(trace.Status(trace.StatusCode.ERROR, type(e).__name__))
                metrics.errors.labels(endpoint=endpoint).inc()
                log.error("prediction_failed", exc_info=e, extra={"trace_id": trace_id, "span_id": span_id,
                                                                   "model_version": state.model.version,
                                                                   "batch_size": len(patients)})
                raise PredictionFailed(trace_id) from None
        return trace_id, results

    # ------------------------------------------------------------------ routes
    responses_err = {422: {"model": ValidationErrorResponse, "description": "the body breaks a rule; each "
                           "error's loc names the field (and the row of a batch), msg the rule"},
                     503: {"description": "the model is not loaded (yet), or was refused; the body says why"},
                     500: {"description": "failure inside the model; the body carries the trace_id"}}

    async def predict(request: Request) -> Response:
        patient = await parse_body(request, Patient)
        trace_id, results = await serve([patient], "predict")
        return _json({**results[0], "model_version": state.model.version, "trace_id": trace_id})

    app.post("/predict", response_model=PredictResponse, responses=responses_err, tags=["predict"],
             summary="Predict one patient", openapi_extra=_body_doc(Patient))(predict)
    # The original course clients post to /predict/: answer it directly, no redirect.
    app.post("/predict/", response_model=PredictResponse, responses=responses_err, tags=["predict"],
             summary="Predict one patient (same as /predict)", operation_id="predict_trailing_slash",
             openapi_extra=_body_doc(Patient))(predict)

    @app.post("/predict/batch", response_model=BatchResponse, responses=responses_err, tags=["predict"],
              summary=f"Predict 1 to {MAX_BATCH} patients, results in input order", openapi_extra=_body_doc(Batch))
    async def predict_batch(request: Request) -> Response:
        batch = await parse_body(request, Batch)
        trace_id, results = await serve(batch.instances, "batch")
        return _json({"model_version": state.model.version, "trace_id": trace_id, "predictions": results})

    @app.post("/explain", response_model=ExplainResponse, responses=responses_err, tags=["predict"],
              summary="One patient's probability and each feature's SHAP contribution", openapi_extra=_body_doc(Patient))
    async def explain(request: Request) -> Response:
        patient = await parse_body(request, Patient)
        if not state.ready:
            raise NotReady()
        rows, imputed, inputs = to_rows([patient])
        with tracer.start_as_current_span("explain", attributes={"model.version": state.model.version,
                                                                 "batch.size": 1}) as span:
            trace_id, span_id = current_ids()
            try:
                frame = pd.DataFrame(rows, columns=list(FEATURE_NAMES))
                explanation = await run_in_threadpool(state.explainer.explain, frame)
            except Exception as e:  # noqa: BLE001
                span.record_exception(e)
                span.set_status(trace.Status(trace.StatusCode.ERROR, type(e).__name__))
                metrics.errors.labels(endpoint="explain").inc()
                log.error("explain_failed", exc_info=e, extra={"trace_id": trace_id, "span_id": span_id})
                raise PredictionFailed(trace_id) from None
        cls = int(decide(explanation.probability, threshold_of(state.model.card))[0])
        log.info("explanation", extra={"trace_id": trace_id, "span_id": span_id,
                                       "model_version": state.model.version, "probability": explanation.probability,
                                       **({"inputs": inputs[0]} if log_inputs else {})})
        return JSONResponse({
            "predicted_class": cls, "label": LABELS[cls], "probability": explanation.probability,
            "base_value": explanation.base_value,
            "contributions": [{"feature": name, "value": inputs[0][name], "contribution": value}
                              for name, value in explanation.contributions],
            "imputed": imputed[0], "model_version": state.model.version, "trace_id": trace_id})

    # The prediction routes read their bodies themselves, so FastAPI's per-request machinery
    # (dependency solving, query parsing: ~50 µs a request) buys them nothing. Plain Starlette
    # routes placed first serve them; the APIRoutes behind stay for /docs and the OpenAPI schema.
    for api_route in [r for r in app.router.routes if isinstance(r, APIRoute) and r.path in HOT_PATHS]:
        app.router.routes.insert(0, Route(api_route.path, endpoint=api_route.endpoint, methods=["POST"],
                                          name=api_route.name, include_in_schema=False))

    @app.get("/live_check", tags=["operations"], summary="Liveness: the process is up")
    async def live_check():
        return {"status": "alive"}

    @app.get("/ready_check", tags=["operations"],
             summary="Readiness: 200 once the model is loaded, sha256-verified and parity-checked; 503 with the reason",
             responses={503: {"description": "not ready; `reason` says why"}})
    async def ready_check():
        if not state.ready:
            return JSONResponse({"status": state.status, "reason": state.reason}, status_code=503)
        return {"status": "ready", "model_version": state.model.version, "engine": state.predictor.engine,
                "parity": state.parity.as_dict()}

    @app.get("/model", tags=["operations"], summary="The model card of the model being served",
             responses={503: {"description": "no model loaded"}})
    async def model_card():
        if state.model is None:
            raise NotReady()
        return state.model.card

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics (text exposition format)")
    async def prometheus_metrics():
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", tags=["operations"], summary="Service name, version and where the docs are")
    async def root():
        return {"name": SERVICE_NAME, "version": __version__,
                "model_version": state.model.version if state.model else None,
                "status": state.status, "docs": "/docs", "openapi": "/openapi.json"}

    def openapi() -> dict:
        """FastAPI's schema plus the request bodies the routes parse themselves (Patient, Batch)."""
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            batch = Batch.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(batch.pop("$defs", {}))
            components["Batch"] = batch
            components["Patient"] = Patient.model_json_schema(ref_template="#/components/schemas/{model}")
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi

    # Metrics come from Prometheus (/metrics): the instrumentation's own OTel metrics would only
    # cost time per request, so it gets a no-op meter provider.
    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider, meter_provider=NoOpMeterProvider(),
                                       exclude_spans=["receive", "send"],
                                       excluded_urls="metrics,live_check,ready_check")
    return app
