"""The Open Inference Protocol (KServe V2, REST), for KServe, Triton and MLServer clients.

A second door onto the same model: tensors are turned into the same Patient rows /predict
validates (the contract's own validators: same rules, same wording), then go through the
same Inference (trace span, metrics, prediction log). Only the envelope differs: errors are
the protocol's {"error": "..."} (400; 404 for an unknown model or version; 503 not ready).

Inputs: one tensor per feature named as in the schema, shape [N] (or [N, 1]), datatype
FP64, FP32 or INT64 (BYTES for features that have text codes: gender), NaN = missing for an
optional feature; or one [N, 13] FP64/FP32 tensor named `input`, columns in schema order.
The metadata lists `input` (what a client should send) and describes the per-feature
tensors in its `parameters` as the alternative: either, never both.
Outputs: predicted_class (INT64), probability (FP64), label (BYTES) and prediction_id (BYTES: the
id POST /feedback takes the label by), each [N].
The binary tensor data extension is supported both ways (tritonclient's default).
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool

from .. import __version__
from ..schema import FEATURE_NAMES, FEATURES
from .contract import Patient
from .errors import MAX_MSG_CHARS, ErrorResponse, PredictionFailed, cut
from .middleware import THREADED_BODY_BYTES
from .state import NotReady
from .tensors import MATRIX_INPUT, NUMERIC, V2Error, columns, header_length, quote, tensors
from .tracing import SERVICE_NAME

MODEL_NAME = "heart-disease"
HEADER_LENGTH = "inference-header-content-length"  # binary tensor data extension
OUTPUTS = {"predicted_class": "INT64", "probability": "FP64", "label": "BYTES", "prediction_id": "BYTES"}
MAX_ERRORS = 5  # rule errors quoted in one {"error"} string
MAX_ID_CHARS = 256  # the request's `id`, echoed in the answer: a correlation id, not a payload

_patients = TypeAdapter(list[Patient])  # type: ignore[valid-type]
router = APIRouter(tags=["Open Inference Protocol (V2)"])


INPUT_NAMES = [*FEATURE_NAMES, MATRIX_INPUT]
DATATYPES = ["FP64", "FP32", "INT64", "BYTES"]


class InferTensor(BaseModel):
    """$request_input: a feature's [N] tensor, or the [N, 13] matrix named `input`."""

    name: str = Field(json_schema_extra={"enum": INPUT_NAMES})
    shape: list[StrictInt]  # "1" is not a dimension
    datatype: str = Field(json_schema_extra={"enum": DATATYPES})
    parameters: dict[str, Any] | None = None
    data: Any = None


class RequestedOutput(BaseModel):
    name: str = Field(json_schema_extra={"enum": list(OUTPUTS)})
    parameters: dict[str, Any] | None = None


class InferRequest(BaseModel):
    """$inference_request of the protocol (unknown keys are ignored, as the spec allows)."""

    model_config = ConfigDict(extra="ignore")
    id: str | None = Field(None, max_length=MAX_ID_CHARS, description="echoed in the answer")
    parameters: dict[str, Any] | None = None
    inputs: list[InferTensor] = Field(min_length=1)
    outputs: list[RequestedOutput] | None = None


class V2ErrorBody(BaseModel):
    """$inference_error_response: the reason, names and values from the request cut."""

    error: str


ERRORS = {
    400: {"model": V2ErrorBody, "description": "the request breaks a rule of the protocol or of the schema"},
    404: {"model": V2ErrorBody, "description": "no such model or version"},
}
INFER_ERRORS = {
    **ERRORS,
    413: {"description": "body over the size limit"},
    415: {"model": V2ErrorBody, "description": "the body is neither JSON nor JSON with binary tensors"},
    503: {"model": V2ErrorBody, "description": "the model is not ready"},
}


# ------------------------------------------------------------------------------ model identity


def _model_version(request: Request, require_ready: bool = True) -> str:
    """The served version after checking the path's name (and version): 404 / 503 otherwise."""
    name, version = request.path_params["name"], request.path_params.get("version")
    if name != MODEL_NAME:
        raise V2Error(f"unknown model {quote(name)}: this server serves {MODEL_NAME!r}", 404)
    state = request.app.state.serving
    if state.model is None:
        if not require_ready:
            return ""
        raise V2Error(f"model not ready: {state.reason}", 503)
    if version is not None and version != state.model.version:
        raise V2Error(
            f"unknown version {quote(version)} of model {MODEL_NAME!r}: this server serves version "
            f"{state.model.version!r}",
            404,
        )
    return state.model.version


def _error(e: V2Error) -> Response:
    return ErrorResponse(
        {"error": e.message}, status_code=e.status, headers={"Retry-After": "5"} if e.status == 503 else None
    )


def _routes(path: str, endpoint, methods: list[str], summary: str, responses=ERRORS, body: dict | None = None) -> None:
    """The route and its /versions/{version} twin, in the OpenAPI document with their path parameters."""
    for p in (path, path.replace("{name}", "{name}/versions/{version}")):
        names = ("name", "version") if "{version}" in p else ("name",)
        extra: dict = {
            "parameters": [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names]
        }
        if body is not None:
            extra["requestBody"] = body
        router.add_api_route(p, endpoint, methods=methods, summary=summary, responses=responses, openapi_extra=extra)


# ------------------------------------------------------------------------------------- health


@router.get("/v2", summary="Server metadata")
async def server_metadata():
    return {"name": SERVICE_NAME, "version": __version__, "extensions": ["binary_tensor_data"]}


@router.get("/v2/health/live", summary="Server liveness (public, like the probes)")
async def server_live():
    return {"live": True}


@router.get(
    "/v2/health/ready",
    summary="Server readiness (public, like the probes): 200 once the model is ready; else 400",
    responses={400: {"description": "not ready (the protocol: a 4xx means false)"}},
)
async def server_ready(request: Request):
    """200 once the model is ready; else 400, as the protocol says (a 4xx means false)."""
    state = request.app.state.serving
    if state.ready:
        return {"ready": True}
    return JSONResponse({"ready": False, "error": f"model not ready: {state.reason}"}, status_code=400)


async def model_ready(request: Request):
    try:
        _model_version(request, require_ready=False)
    except V2Error as e:
        return _error(e)
    state = request.app.state.serving
    if state.ready:
        return {"name": MODEL_NAME, "ready": True}
    return JSONResponse(
        {"name": MODEL_NAME, "ready": False, "error": f"model not ready: {state.reason}"}, status_code=400
    )


# The metadata lists the one input a generic client can build by reading it (the [-1, 13] matrix),
# as Triton and KServe list a model's inputs; the per-feature tensors are its alternative, described
# in `parameters` (MLServer's place for what the protocol has no field for): a client sending every
# listed tensor must get a 200, never "not both".
MATRIX_METADATA = {
    "name": MATRIX_INPUT,
    "datatype": "FP64",
    "shape": [-1, len(FEATURES)],
    "parameters": {"columns": list(FEATURE_NAMES), "datatypes": ["FP64", "FP32"], "missing": "NaN"},
}
PER_FEATURE_METADATA = [
    {
        "name": f.name,
        "datatype": "FP64",
        "shape": [-1],
        "parameters": {
            "datatypes": ["FP64", "FP32", "INT64", *(["BYTES"] if f.text_codes else [])],
            "required": f.required,
            "rule": f.rule(),
        },
    }
    for f in FEATURES
]
INPUTS_RULE = (
    f"send either `inputs` (the one [N, {len(FEATURES)}] tensor {MATRIX_INPUT!r}, columns as its "
    "parameters.columns say) or `parameters.alternative_inputs` (one [N] tensor per feature; the optional "
    "ones may be left out), never both; NaN is a missing value"
)


async def model_metadata(request: Request):
    try:
        version = _model_version(request)
    except V2Error as e:
        return _error(e)
    engine = request.app.state.serving.predictor.engine
    return {
        "name": MODEL_NAME,
        "versions": [version],
        "platform": f"{engine}_sklearn_pipeline",
        "inputs": [MATRIX_METADATA],
        "outputs": [{"name": n, "datatype": d, "shape": [-1]} for n, d in OUTPUTS.items()],
        "parameters": {"alternative_inputs": PER_FEATURE_METADATA, "inputs_rule": INPUTS_RULE},
    }


_routes("/v2/models/{name}/ready", model_ready, ["GET"], "Model readiness: 200 when ready; else 400")
_routes("/v2/models/{name}", model_metadata, ["GET"], "Model metadata: inputs and outputs")


# ---------------------------------------------------------------------------------- inference

# tritonclient posts with no Content-Type at all (JSON and binary alike), so a missing one is
# accepted; any other type than these two (text/plain, forms) is refused, as on /predict.
INFER_TYPES = (b"application/json", b"application/octet-stream")


def _check_content_type(request: Request) -> None:
    for name, value in request.scope["headers"]:
        if name == b"content-type" and value.split(b";", 1)[0].strip().lower() not in INFER_TYPES:
            raise V2Error(
                "the body must be JSON (application/json), or JSON with binary tensors (application/octet-stream)", 415
            )


async def infer(request: Request) -> Response:
    try:
        _check_content_type(request)
        version = _model_version(request)
        body, length = await request.body(), request.headers.get(HEADER_LENGTH)
        if len(body) > THREADED_BODY_BYTES:  # a big batch: decode and validate off the event loop
            req, patients = await run_in_threadpool(_parse, body, length)
        else:
            req, patients = _parse(body, length)
        try:
            trace_id, results = await request.app.state.inference.predict(patients, "v2")
        except NotReady:
            raise V2Error(f"model not ready: {request.app.state.serving.reason}", 503) from None
        except PredictionFailed as e:
            raise V2Error(f"internal error while predicting; trace_id {e.trace_id} finds it in the logs", 500) from None
    except V2Error as e:
        return _error(e)
    return _respond(req, results, version, trace_id)


_routes(
    "/v2/models/{name}/infer",
    infer,
    ["POST"],
    "Inference (Open Inference Protocol): JSON tensors, or JSON with binary tensors",
    responses=INFER_ERRORS,
    body={
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/InferRequest"}}},
    },
)


def _parse(body: bytes, length: str | None) -> tuple[InferRequest, list]:
    """The raw body -> (the request, validated Patients); V2Error (400) on anything wrong."""
    cut_at = header_length(length, len(body))
    header, binary = (body, b"") if cut_at is None else (body[:cut_at], body[cut_at:])
    try:
        req = InferRequest.model_validate_json(header)
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        if err["loc"] == ("id",) and err["type"] == "string_too_long":  # never echoed: it may be 1 MB
            raise V2Error(f"id: at most {MAX_ID_CHARS} characters, got {len(err['input']):,}") from None
        where = ".".join(str(p) for p in err["loc"])
        raise V2Error(cut(f"malformed inference request: {where + ': ' if where else ''}{err['msg']}", 300)) from None
    _check_parameters(req)
    cols = columns(tensors(req.inputs, binary))
    rows = [dict(zip(FEATURE_NAMES, values)) for values in zip(*(cols[n] for n in FEATURE_NAMES))]
    try:
        return req, _patients.validate_python(rows)
    except ValidationError as e:
        raise V2Error(_rule_errors(e)) from None


def _check_parameters(req: InferRequest) -> None:
    """The outputs asked for exist, and the binary flags are booleans ("no" is not false)."""
    flag = (req.parameters or {}).get("binary_data_output", False)
    if type(flag) is not bool:
        raise V2Error(f"parameters.binary_data_output must be true or false, got {quote(flag)}")
    asked: set[str] = set()
    for out in req.outputs or ():
        if out.name not in OUTPUTS:
            raise V2Error(f"unknown output {quote(out.name)}: expected one of {', '.join(OUTPUTS)}")
        if out.name in asked:  # each at most once: 2,000 copies of one output made a 38 MB answer
            raise V2Error(f"output {out.name!r} is asked for twice")
        asked.add(out.name)
        flag = (out.parameters or {}).get("binary_data", False)
        if type(flag) is not bool:
            raise V2Error(f"output {out.name!r}: parameters.binary_data must be true or false, got {quote(flag)}")


def _rule_errors(e: ValidationError) -> str:
    """The contract's messages (the same words as /predict's 422), each with its row, each cut."""
    errors = e.errors(include_url=False)
    parts = [f"row {err['loc'][0]}: {cut(err['msg'], MAX_MSG_CHARS)}" for err in errors[:MAX_ERRORS]]
    more = f" (and {len(errors) - MAX_ERRORS} more)" if len(errors) > MAX_ERRORS else ""
    return "; ".join(parts) + more


# ----------------------------------------------------------------------------------- response


def _respond(req: InferRequest, results: list[dict], version: str, trace_id: str) -> Response:
    """The requested outputs (all three by default), each as JSON data or binary, per the request."""
    binary_default = (req.parameters or {}).get("binary_data_output", False)
    wanted = req.outputs or [RequestedOutput(name=n) for n in OUTPUTS]
    outputs, chunks = [], []
    for out in wanted:
        values = [r[out.name] for r in results]
        tensor = {"name": out.name, "datatype": OUTPUTS[out.name], "shape": [len(values)]}
        if (out.parameters or {}).get("binary_data", binary_default):
            raw = _to_binary(OUTPUTS[out.name], values)
            tensor["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            tensor["data"] = values
        outputs.append(tensor)
    payload = {
        "model_name": MODEL_NAME,
        "model_version": version,
        **({"id": req.id} if req.id is not None else {}),
        "parameters": {"trace_id": trace_id},
        "outputs": outputs,
    }
    header = orjson.dumps(payload)
    if not chunks:
        return Response(header, media_type="application/json")
    return Response(
        header + b"".join(chunks),
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(len(header))},
    )


def _to_binary(datatype: str, values: list) -> bytes:
    if datatype == "BYTES":
        encoded = [v.encode() for v in values]
        return b"".join(struct.pack("<I", len(b)) + b for b in encoded)
    return np.asarray(values, dtype=NUMERIC[datatype]).tobytes()
