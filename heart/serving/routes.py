"""The routes: predictions (/predict, /predict/, /predict/batch, /explain) and operations.

The prediction routes read and validate their own bodies (middleware.parse_body) and write
their answers with orjson; the OpenAPI document still declares those bodies (openapi()).
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.routing import Route

from .. import __version__
from . import feedback
from .auth import PUBLIC
from .contract import MAX_BATCH, Batch, BatchResponse, ExplainResponse, Patient, PredictResponse
from .errors import RESPONSES
from .metrics import metrics_payload
from .middleware import parse_body
from .state import NotReady
from .tracing import SERVICE_NAME
from .v2 import InferRequest

predictions = APIRouter(tags=["predict"], responses=RESPONSES)
operations = APIRouter(tags=["operations"])


def _body_doc(model) -> dict:
    """openapi_extra declaring a JSON request body the route parses itself (see parse_body)."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
        }
    }


# ---------------------------------------------------------------------------------- predictions


async def predict(request: Request) -> Response:
    patient = await parse_body(request, Patient)
    shared = request.app.state
    trace_id, results = await shared.inference.predict([patient], "predict")
    return json_response({**results[0], "model_version": shared.serving.model.version, "trace_id": trace_id})


predictions.add_api_route(
    "/predict",
    predict,
    methods=["POST"],
    response_model=PredictResponse,
    summary="Predict one patient",
    openapi_extra=_body_doc(Patient),
)
# The original course clients post to /predict/: answer it directly, no redirect.
predictions.add_api_route(
    "/predict/",
    predict,
    methods=["POST"],
    response_model=PredictResponse,
    summary="Predict one patient (same as /predict)",
    operation_id="predict_trailing_slash",
    openapi_extra=_body_doc(Patient),
)


@predictions.post(
    "/predict/batch",
    response_model=BatchResponse,
    openapi_extra=_body_doc(Batch),
    summary=f"Predict 1 to {MAX_BATCH} patients, results in input order",
)
async def predict_batch(request: Request) -> Response:
    batch = await parse_body(request, Batch)
    shared = request.app.state
    trace_id, results = await shared.inference.predict(batch.instances, "batch")
    return json_response({"model_version": shared.serving.model.version, "trace_id": trace_id, "predictions": results})


@predictions.post(
    "/explain",
    response_model=ExplainResponse,
    openapi_extra=_body_doc(Patient),
    summary="One patient's probability and each feature's SHAP contribution",
)
async def explain(request: Request) -> Response:
    patient = await parse_body(request, Patient)
    return JSONResponse(await request.app.state.inference.explain(patient))


# ----------------------------------------------------------------------------------- operations


@operations.get("/live_check", summary="Liveness: the process is up")
async def live_check():
    return {"status": "alive"}


@operations.get(
    "/ready_check",
    responses={503: {"description": "not ready; `reason` says why"}},
    summary="Readiness: 200 once the model is loaded, sha256-verified and parity-checked; 503 with the reason",
)
async def ready_check(request: Request):
    status, body = request.app.state.serving.readiness()
    return JSONResponse(body, status_code=status)


@operations.get(
    "/model", responses={503: {"description": "no model loaded"}}, summary="The model card of the model being served"
)
async def model_card(request: Request):
    state = request.app.state.serving
    if state.model is None:
        raise NotReady()
    return state.model.card


@operations.get("/metrics", summary="Prometheus metrics (text exposition format)")
async def prometheus_metrics(request: Request):
    return Response(metrics_payload(request.app.state.metrics), media_type=CONTENT_TYPE_LATEST)


def about(state) -> dict:
    """The root's JSON (browsers asking for HTML get the page instead: heart.serving.pages)."""
    return {
        "name": SERVICE_NAME,
        "version": __version__,
        "model_version": state.model.version if state.model else None,
        "status": state.status,
        "docs": "/docs",
        "openapi": "/openapi.json",
    }


def openapi(app: FastAPI) -> dict:
    """FastAPI's schema plus the request bodies the routes parse themselves (Patient, Batch, InferRequest,
    the feedback)."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        batch = Batch.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(batch.pop("$defs", {}))
        components["Batch"] = batch
        components["Patient"] = Patient.model_json_schema(ref_template="#/components/schemas/{model}")
        infer = InferRequest.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(infer.pop("$defs", {}))
        components["InferRequest"] = infer
        components.update(feedback.schemas())
        if getattr(app.state, "auth", "open") == "tokens":
            _declare_bearer_auth(schema)
        app.openapi_schema = schema
    return app.openapi_schema


def _declare_bearer_auth(schema: dict) -> None:
    """Deny by default, in the document too: every operation needs the bearer token but the public
    ones (auth.PUBLIC), so Swagger UI's Authorize button and generated clients send it."""
    schema["components"]["securitySchemes"] = {"bearerAuth": {"type": "http", "scheme": "bearer"}}
    schema["security"] = [{"bearerAuth": []}]
    for path, operations in schema.get("paths", {}).items():
        if path in PUBLIC:
            for operation in operations.values():
                operation["security"] = []


# -------------------------------------------------------------------------- measured speed tricks
# Both are kept for a figure measured on this API (bench/bench.py; docs/serving.md):

HOT_PATHS = ("/predict", "/predict/", "/predict/batch")


def json_response(payload: dict, status_code: int = 200) -> Response:
    """orjson: ~10x json.dumps (3 µs against 25 µs for a prediction-sized dict); a batch answer
    is 1,000 of them."""
    return Response(orjson.dumps(payload), status_code=status_code, media_type="application/json")


def serve_hot_paths_plainly(app: FastAPI) -> None:
    """Serve HOT_PATHS with plain Starlette routes placed first.

    The prediction routes read their bodies themselves, so FastAPI's per-request machinery
    (dependency solving, query parsing: ~50 µs a request, of ~400 µs for a whole /predict)
    buys them nothing. The APIRoutes behind stay for /docs and the OpenAPI schema.
    """
    for api_route in [r for r in app.router.routes if isinstance(r, APIRoute) and r.path in HOT_PATHS]:
        app.router.routes.insert(
            0,
            Route(
                api_route.path,
                endpoint=api_route.endpoint,
                methods=["POST"],
                name=api_route.name,
                include_in_schema=False,
            ),
        )
