"""The Open Inference Protocol (KServe V2, REST), for KServe, Triton and MLServer clients.

A second door onto the same model: tensors are turned into the same Patient rows /predict
validates (the contract's own validators: same rules, same wording), then go through the
same Inference (trace span, metrics, prediction log). Only the envelope differs: errors are
the protocol's {"error": "..."} (400; 404 for an unknown model or version; 503 not ready).

Inputs: one tensor per feature named as in the schema, shape [N] (or [N, 1]), datatype
FP64, FP32 or INT64 (BYTES for features that have text codes: gender), NaN = missing for an
optional feature; or one [N, 13] FP64/FP32 tensor named `input`, columns in schema order.
Outputs: predicted_class (INT64), probability (FP64), label (BYTES), each [N].
The binary tensor data extension is supported both ways (tritonclient's default).
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool

from .. import __version__
from ..schema import BY_NAME, FEATURE_NAMES, FEATURES
from .contract import MAX_BATCH, Patient
from .errors import PredictionFailed
from .middleware import THREADED_BODY_BYTES
from .state import NotReady
from .tracing import SERVICE_NAME

MODEL_NAME = "heart-disease"
MATRIX_INPUT = "input"  # the [N, 13] alternative to one tensor per feature
HEADER_LENGTH = "inference-header-content-length"  # binary tensor data extension
OUTPUTS = {"predicted_class": "INT64", "probability": "FP64", "label": "BYTES"}
NUMERIC = {"FP64": "<f8", "FP32": "<f4", "INT64": "<i8"}
TEXT_FEATURES = frozenset(f.name for f in FEATURES if f.text_codes)
MAX_ERRORS = 5  # rule errors quoted in one {"error"} string

_patients = TypeAdapter(list[Patient])  # type: ignore[valid-type]
router = APIRouter(tags=["Open Inference Protocol (V2)"])


class V2Error(Exception):
    """An answer in the protocol's error shape: {"error": message} with an HTTP status."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message, self.status = message, status


class _Tensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: Any = None


class _Output(BaseModel):
    name: str
    parameters: dict[str, Any] | None = None


class InferRequest(BaseModel):
    """$inference_request of the protocol (unknown keys are ignored, as the spec allows)."""

    model_config = ConfigDict(extra="ignore")
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[_Tensor] = Field(min_length=1)
    outputs: list[_Output] | None = None


# ------------------------------------------------------------------------------ model identity


def _model_version(request: Request, require_ready: bool = True) -> str:
    """The served version after checking the path's name (and version): 404 / 503 otherwise."""
    name, version = request.path_params["name"], request.path_params.get("version")
    if name != MODEL_NAME:
        raise V2Error(f"unknown model {name!r}: this server serves {MODEL_NAME!r}", 404)
    state = request.app.state.serving
    if state.model is None:
        if not require_ready:
            return ""
        raise V2Error(f"model not ready: {state.reason}", 503)
    if version is not None and version != state.model.version:
        raise V2Error(
            f"unknown version {version!r} of model {MODEL_NAME!r}: this server serves version {state.model.version!r}",
            404,
        )
    return state.model.version


def _error(e: V2Error) -> JSONResponse:
    return JSONResponse(
        {"error": e.message}, status_code=e.status, headers={"Retry-After": "5"} if e.status == 503 else None
    )


def _routes(path: str, endpoint, methods: list[str]) -> None:
    for p in (path, path.replace("{name}", "{name}/versions/{version}")):
        router.add_api_route(p, endpoint, methods=methods, include_in_schema=False)


# ------------------------------------------------------------------------------------- health


@router.get("/v2", include_in_schema=False)
async def server_metadata():
    return {"name": SERVICE_NAME, "version": __version__, "extensions": ["binary_tensor_data"]}


@router.get("/v2/health/live", include_in_schema=False)
async def server_live():
    return {"live": True}


@router.get("/v2/health/ready", include_in_schema=False)
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


async def model_metadata(request: Request):
    try:
        version = _model_version(request)
    except V2Error as e:
        return _error(e)
    engine = request.app.state.serving.predictor.engine
    features = [{"name": f.name, "datatype": "FP64", "shape": [-1]} for f in FEATURES]
    return {
        "name": MODEL_NAME,
        "versions": [version],
        "platform": f"{engine}_sklearn_pipeline",
        "inputs": [*features, {"name": MATRIX_INPUT, "datatype": "FP64", "shape": [-1, len(FEATURES)]}],
        "outputs": [{"name": n, "datatype": d, "shape": [-1]} for n, d in OUTPUTS.items()],
    }


_routes("/v2/models/{name}/ready", model_ready, ["GET"])
_routes("/v2/models/{name}", model_metadata, ["GET"])


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
        body, header_length = await request.body(), request.headers.get(HEADER_LENGTH)
        if len(body) > THREADED_BODY_BYTES:  # a big batch: decode and validate off the event loop
            req, patients = await run_in_threadpool(_parse, body, header_length)
        else:
            req, patients = _parse(body, header_length)
        try:
            trace_id, results = await request.app.state.inference.predict(patients, "v2")
        except NotReady:
            raise V2Error(f"model not ready: {request.app.state.serving.reason}", 503) from None
        except PredictionFailed as e:
            raise V2Error(f"internal error while predicting; trace_id {e.trace_id} finds it in the logs", 500) from None
    except V2Error as e:
        return _error(e)
    return _respond(req, results, version, trace_id)


_routes("/v2/models/{name}/infer", infer, ["POST"])


def _parse(body: bytes, header_length: str | None) -> tuple[InferRequest, list]:
    """The raw body -> (the request, validated Patients); V2Error (400) on anything wrong."""
    header, binary = _split(body, header_length)
    try:
        req = InferRequest.model_validate_json(header)
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        where = ".".join(str(p) for p in err["loc"])
        raise V2Error(f"malformed inference request: {where + ': ' if where else ''}{err['msg']}") from None
    for out in req.outputs or ():
        if out.name not in OUTPUTS:
            raise V2Error(f"unknown output {out.name!r}: expected one of {', '.join(OUTPUTS)}")
    columns = _columns(_tensors(req.inputs, binary))
    rows = [dict(zip(FEATURE_NAMES, values)) for values in zip(*(columns[n] for n in FEATURE_NAMES))]
    try:
        return req, _patients.validate_python(rows)
    except ValidationError as e:
        raise V2Error(_rule_errors(e)) from None


def _split(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    if not header_length.strip().isdigit() or int(header_length) > len(body):
        raise V2Error(
            f"Inference-Header-Content-Length must be a whole number of bytes up to the body's "
            f"{len(body)}, got {header_length!r}"
        )
    return body[: int(header_length)], body[int(header_length) :]


def _rule_errors(e: ValidationError) -> str:
    """The contract's messages (the same words as /predict's 422), each with its row."""
    errors = e.errors(include_url=False)
    parts = [f"row {err['loc'][0]}: {err['msg']}" for err in errors[:MAX_ERRORS]]
    more = f" (and {len(errors) - MAX_ERRORS} more)" if len(errors) > MAX_ERRORS else ""
    return "; ".join(parts) + more


# ------------------------------------------------------------------------------------- tensors


def _tensors(inputs: list[_Tensor], binary: bytes) -> dict[str, tuple[list, list[int]]]:
    """Each input's name -> (its elements flat, as Python values; its shape), datatype-checked."""
    out, offset = {}, 0
    for t in inputs:
        if t.name != MATRIX_INPUT and t.name not in BY_NAME:
            raise V2Error(
                f"unknown input {t.name!r}: expected the features ({', '.join(FEATURE_NAMES)}) "
                f"or one [N, {len(FEATURES)}] tensor named {MATRIX_INPUT!r}"
            )
        if t.name in out:
            raise V2Error(f"input {t.name!r} is given twice")
        allowed = ("FP64", "FP32", "INT64", "BYTES") if t.name in TEXT_FEATURES else ("FP64", "FP32", "INT64")
        if t.name == MATRIX_INPUT:
            allowed = ("FP64", "FP32")
        if t.datatype not in allowed:
            raise V2Error(f"input {t.name!r}: datatype {t.datatype} is not accepted: use {' or '.join(allowed)}")
        if any(d < 0 for d in t.shape):
            raise V2Error(f"input {t.name!r}: shape {t.shape} has a negative dimension")
        size = (t.parameters or {}).get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0 or offset + size > len(binary):
                raise V2Error(
                    f"input {t.name!r}: binary_data_size {size!r} does not fit the "
                    f"{len(binary) - offset} bytes of binary data left"
                )
            values = _from_binary(t, binary[offset : offset + size])
            offset += size
        elif t.data is None:
            raise V2Error(f"input {t.name!r} has no data (neither `data` nor binary_data_size)")
        else:
            values = _from_json(t)
        if len(values) != math.prod(t.shape):
            raise V2Error(f"input {t.name!r}: shape {t.shape} needs {math.prod(t.shape)} elements, got {len(values)}")
        out[t.name] = (_to_python(t.datatype, values), t.shape)
    if offset != len(binary):
        raise V2Error(f"{len(binary) - offset} bytes of binary data after the last input's binary_data_size")
    return out


def _from_json(t: _Tensor) -> list:
    """The `data` flattened (row-major: nested or flat are both allowed), each element typed."""
    data = t.data if isinstance(t.data, list) else [t.data]
    while data and isinstance(data[0], list):
        if not all(isinstance(row, list) for row in data):
            raise V2Error(f"input {t.name!r}: `data` mixes lists and scalars")
        data = [x for row in data for x in row]
    ok = {"FP64": (int, float), "FP32": (int, float), "INT64": (int,), "BYTES": (str,)}[t.datatype]
    for i, x in enumerate(data):
        if type(x) not in ok:
            raise V2Error(f"input {t.name!r}: element {i} is {x!r}, not {t.datatype}"[:300])
    return data


def _from_binary(t: _Tensor, raw: bytes) -> list:
    if t.datatype != "BYTES":
        dtype = np.dtype(NUMERIC[t.datatype])
        if len(raw) % dtype.itemsize:
            raise V2Error(f"input {t.name!r}: {len(raw)} bytes is not a whole number of {t.datatype} elements")
        return np.frombuffer(raw, dtype=dtype)  # type: ignore[return-value]  # converted by _to_python
    values, i = [], 0
    while i < len(raw):
        if i + 4 > len(raw) or i + 4 + struct.unpack_from("<I", raw, i)[0] > len(raw):
            raise V2Error(f"input {t.name!r}: BYTES data is cut short at byte {i}")
        n = struct.unpack_from("<I", raw, i)[0]
        try:
            values.append(raw[i + 4 : i + 4 + n].decode())
        except UnicodeDecodeError:
            raise V2Error(f"input {t.name!r}: element {len(values)} is not UTF-8 text") from None
        i += 4 + n
    return values


def _to_python(datatype: str, values) -> list:
    """Python values for the contract's validators: FP32 as the decimal it stands for
    (2.3, not 2.299999952316284), NaN as None (= missing, as null is on /predict)."""
    if datatype == "FP32":
        values = np.asarray(values, dtype=np.float32).astype(str).astype(np.float64)
    if isinstance(values, np.ndarray):
        values = values.tolist()
    if datatype in ("FP64", "FP32"):
        return [None if x != x else x for x in values]
    return values


def _columns(tensors: dict[str, tuple[list, list[int]]]) -> dict[str, list]:
    """One list per feature (None where not given), all of one length N, 1 <= N <= MAX_BATCH."""
    width = len(FEATURE_NAMES)
    if MATRIX_INPUT in tensors:
        if len(tensors) > 1:
            raise V2Error(f"send either the [N, {width}] tensor {MATRIX_INPUT!r} or one tensor per feature, not both")
        values, shape = tensors[MATRIX_INPUT]
        if len(shape) != 2 or shape[1] != width:
            raise V2Error(
                f"input {MATRIX_INPUT!r}: shape must be [N, {width}] (columns in schema order: "
                f"{', '.join(FEATURE_NAMES)}), got {shape}"
            )
        n = shape[0]
        columns = {name: values[j::width] for j, name in enumerate(FEATURE_NAMES)}
    else:
        for name, (_, shape) in tensors.items():
            if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
                raise V2Error(f"input {name!r}: shape must be [N] (or [N, 1]), got {shape}")
        lengths = {name: shape[0] for name, (_, shape) in tensors.items()}
        if len(set(lengths.values())) > 1:
            raise V2Error(f"inputs disagree on the number of rows N: {lengths}")
        n = next(iter(lengths.values()))
        for f in FEATURES:
            if f.required and f.name not in tensors:
                raise V2Error(f"input {f.name!r} is missing: {f.name} is required: must be {f.rule()}")
        columns = {name: tensors[name][0] if name in tensors else [None] * n for name in FEATURE_NAMES}
    if not 1 <= n <= MAX_BATCH:
        raise V2Error(f"N = {n} rows: send 1 to {MAX_BATCH} rows per request")
    return columns


# ----------------------------------------------------------------------------------- response


def _respond(req: InferRequest, results: list[dict], version: str, trace_id: str) -> Response:
    """The requested outputs (all three by default), each as JSON data or binary, per the request."""
    binary_default = bool((req.parameters or {}).get("binary_data_output", False))
    wanted = req.outputs or [_Output(name=n) for n in OUTPUTS]
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
