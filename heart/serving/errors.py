"""Every error the API answers, in one JSON shape with the reason, never a traceback.

422: FastAPI's standard `detail` list, each item's msg worded by the schema's rule, bounded
(the first MAX_ERRORS problems, `more_errors` counting the rest, echoed values cut: at most
MAX_REPLY_BYTES whatever the input); 503: the model is not ready, with the reason; 500: a
failure inside the model or anywhere else, with the trace_id that finds it in the logs. A
client that leaves mid-request is a 499 in the metrics and one log line, not a 500.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from ..schema import BY_NAME
from .contract import ValidationErrorResponse
from .state import NotReady
from .tracing import current_ids

log = logging.getLogger(__name__)

MAX_ERRORS = 20  # problems listed in a 422; the rest are counted in more_errors
MAX_ECHO_CHARS = 80  # an echoed input, key or message is cut to this many characters
MAX_MSG_CHARS = 300  # a rule's message (some quote the input)
MAX_REPLY_BYTES = 16_384  # no error reply is larger, whatever the input
CLIENT_CLOSED = 499  # the common convention (nginx) for "the client went away"

RESPONSES = {
    422: {
        "model": ValidationErrorResponse,
        "description": "the body breaks a rule; each error's loc "
        "names the field (and the row of a batch), msg the rule",
    },
    503: {"description": "the model is not loaded (yet), or was refused; the body says why"},
    500: {"description": "failure inside the model; the body carries the trace_id"},
}


class PredictionFailed(Exception):
    """The model raised: a 500 carrying the trace_id (the details are in the log, not the answer)."""

    def __init__(self, trace_id: str):
        super().__init__(trace_id)
        self.trace_id = trace_id


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(ClientDisconnect, client_disconnected)
    app.add_exception_handler(NotReady, not_ready)
    app.add_exception_handler(PredictionFailed, prediction_failed)
    app.add_exception_handler(Exception, unexpected)


class BoundedValidationError(RequestValidationError):
    """A RequestValidationError holding the first MAX_ERRORS errors and the count of the rest."""

    def __init__(self, errors, more: int = 0):
        super().__init__(errors)
        self.more = more


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    more = getattr(exc, "more", 0) + max(0, len(errors) - MAX_ERRORS)
    detail = [_item(err) for err in errors[:MAX_ERRORS]]
    body = {"detail": detail}
    if more:
        body["more_errors"] = more
    response = JSONResponse(body, status_code=422)
    while len(response.body) > MAX_REPLY_BYTES and len(detail) > 1:  # a last guard; the cuts make it rare
        body["more_errors"] = body.get("more_errors", 0) + 1
        detail.pop()
        response = JSONResponse(body, status_code=422)
    return response


def _item(err: dict) -> dict:
    """One 422 item, worded by the schema's rule, with everything echoed from the input cut."""
    item = {
        "loc": [_cut(part) for part in err.get("loc", ())],
        "msg": _cut(str(err.get("msg", "")), MAX_MSG_CHARS),
        "type": _cut(str(err.get("type", ""))),
    }
    field_name = item["loc"][-1] if item["loc"] else None
    if item["type"] == "missing" and field_name in BY_NAME:
        item["msg"] = f"{field_name} is required: must be {BY_NAME[field_name].rule()}"
    elif item["type"] == "missing" and item["loc"] == ["body"]:
        item["msg"] = "a JSON body is required"
    elif item["type"] == "json_invalid":
        item["msg"] = _cut(f"malformed JSON: {(err.get('ctx') or {}).get('error', 'decode error')}", MAX_MSG_CHARS)
    if "input" in err:
        item["input"] = _sanitize(err["input"])
    return item


async def client_disconnected(request: Request, exc: ClientDisconnect) -> Response:
    """The client left before its request was read: no answer can reach it. Counted, logged
    once as what it is (no traceback), and recorded as a 499 by the metrics middleware."""
    request.app.state.metrics.client_disconnects.inc()
    log.info("client_disconnect", extra={"status": CLIENT_CLOSED, "method": request.method, "path": request.url.path})
    return Response(status_code=CLIENT_CLOSED)


async def not_ready(request: Request, exc: NotReady) -> JSONResponse:
    state = request.app.state.serving
    return JSONResponse(
        {"detail": f"model not ready: {state.reason}", "status": state.status},
        status_code=503,
        headers={"Retry-After": "5"},
    )


async def prediction_failed(request: Request, exc: PredictionFailed) -> JSONResponse:
    return JSONResponse(
        {"detail": "internal error while predicting; the trace_id finds it in the logs", "trace_id": exc.trace_id},
        status_code=500,
    )


async def unexpected(request: Request, exc: Exception) -> JSONResponse:
    trace_id, span_id = current_ids()
    log.error(
        "unhandled_error", exc_info=exc, extra={"trace_id": trace_id, "span_id": span_id, "path": request.url.path}
    )
    return JSONResponse({"detail": "internal server error", "trace_id": trace_id}, status_code=500)


def _cut(value: Any, limit: int = MAX_ECHO_CHARS) -> Any:
    """A string echoed from the input, cut to `limit` characters (its full length said)."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]}... ({len(value):,} characters)"
    return value


def _sanitize(value: Any, depth: int = 0) -> Any:
    """Error inputs as small valid JSON: NaN/Infinity become strings, strings are cut, and
    containers over a few items (or nested deeper than 2) are elided to their size."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_sanitize(v, depth + 1) for v in value] if len(value) <= 5 and depth < 2 else f"<{len(value)} items>"
    if isinstance(value, dict):
        if len(value) > 16 or depth >= 2:
            return f"<object of {len(value)} fields>"
        return {_cut(str(k)): _sanitize(v, depth + 1) for k, v in value.items()}
    if isinstance(value, str):
        return _cut(value)
    if isinstance(value, (int, type(None), bool, float)):
        return value if not isinstance(value, int) or abs(value) < 10**30 else _cut(str(value))
    if isinstance(value, (bytes, bytearray)):
        return _cut(bytes(value[: MAX_ECHO_CHARS + 1]).decode("utf-8", "replace"))
    return _cut(str(value))
