"""Every error the API answers, in one JSON shape with the reason, never a traceback.

422: FastAPI's standard `detail` list, each item's msg worded by the schema's rule; 503: the
model is not ready, with the reason; 500: a failure inside the model or anywhere else, with
the trace_id that finds it in the logs.
"""
from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from ..schema import BY_NAME
from ..telemetry import current_ids
from .contract import ValidationErrorResponse
from .state import NotReady

log = logging.getLogger("heart.api")

RESPONSES = {422: {"model": ValidationErrorResponse, "description": "the body breaks a rule; each error's loc "
                   "names the field (and the row of a batch), msg the rule"},
             503: {"description": "the model is not loaded (yet), or was refused; the body says why"},
             500: {"description": "failure inside the model; the body carries the trace_id"}}


class PredictionFailed(Exception):
    """The model raised: a 500 carrying the trace_id (the details are in the log, not the answer)."""

    def __init__(self, trace_id: str):
        super().__init__(trace_id)
        self.trace_id = trace_id


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(NotReady, not_ready)
    app.add_exception_handler(PredictionFailed, prediction_failed)
    app.add_exception_handler(Exception, unexpected)


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
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


async def not_ready(request: Request, exc: NotReady) -> JSONResponse:
    state = request.app.state.serving
    return JSONResponse({"detail": f"model not ready: {state.reason}", "status": state.status},
                        status_code=503, headers={"Retry-After": "5"})


async def prediction_failed(request: Request, exc: PredictionFailed) -> JSONResponse:
    return JSONResponse({"detail": "internal error while predicting; the trace_id finds it in the logs",
                         "trace_id": exc.trace_id}, status_code=500)


async def unexpected(request: Request, exc: Exception) -> JSONResponse:
    trace_id, span_id = current_ids()
    log.error("unhandled_error", exc_info=exc, extra={"trace_id": trace_id, "span_id": span_id,
                                                      "path": request.url.path})
    return JSONResponse({"detail": "internal server error", "trace_id": trace_id}, status_code=500)


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
