"""Every error the API answers, in one JSON shape with the reason, never a traceback.

One layer for every route family (v1, V2, the pages, the metrics port): each error reply is
an ErrorResponse (or error_json's bytes), at most MAX_REPLY_BYTES whatever the input, with
echoed names and values cut (cut()) and header values never echoed. The shape is chosen here,
by path, once (error_body): under /v2 the Open Inference Protocol's {"error": "..."}, whoever
answers (a route, the router's 404/405, the body limit's 413, auth's 401); elsewhere {"detail"}.
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

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
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
V2_PREFIX = "/v2"  # the Open Inference Protocol's routes: errors in its {"error": "..."} shape

RESPONSES = {
    422: {
        "model": ValidationErrorResponse,
        "description": "the body breaks a rule; each error's loc "
        "names the field (and the row of a batch), msg the rule",
    },
    503: {"description": "the model is not loaded (yet), or was refused; the body says why"},
    500: {"description": "failure inside the model; the body carries the trace_id"},
}


def route_path(scope) -> str:
    """The path as the router matches it: without a --root-path prefix."""
    path, root = scope.get("path", ""), scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def is_v2(scope) -> bool:
    """The request is the Open Inference Protocol's (/v2 or under it): its errors are {"error"}."""
    path = route_path(scope)
    return path == V2_PREFIX or path.startswith(V2_PREFIX + "/")


def error_body(scope, message: Any, **extra: Any) -> dict:
    """The one place an error's shape is chosen: V2's {"error": text} (extra folded into the
    text: the protocol has no other field), else {"detail": message, **extra}."""
    if not is_v2(scope):
        return {"detail": message, **extra}
    if not isinstance(message, str):  # a 422 list (no V2 route declares a body FastAPI validates)
        message = "; ".join(f"{'.'.join(map(str, i.get('loc', ())))}: {i.get('msg', '')}" for i in message)
    return {"error": "; ".join([message, *(f"{k} {v}" for k, v in extra.items())])}


class PredictionFailed(Exception):
    """The model raised: a 500 carrying the trace_id (the details are in the log, not the answer)."""

    def __init__(self, trace_id: str):
        super().__init__(trace_id)
        self.trace_id = trace_id


def error_json(body: dict) -> bytes:
    """An error body as JSON of at most MAX_REPLY_BYTES: strings are cut first, then, if it is
    still over (a body of many items), it is replaced by one saying so, under the same key."""
    key = "error" if "error" in body else "detail"
    try:
        raw = orjson.dumps(body, default=str)
        if len(raw) <= MAX_REPLY_BYTES:
            return raw
        raw = orjson.dumps({k: cut(v, MAX_MSG_CHARS) for k, v in body.items()}, default=str)
        if len(raw) <= MAX_REPLY_BYTES:
            return raw
    except orjson.JSONEncodeError:  # an integer over 64 bits, from the input: not worth a 500
        return orjson.dumps({key: "the error reply could not be encoded"})
    return orjson.dumps({key: f"the error reply was over {MAX_REPLY_BYTES:,} bytes and was cut"})


class ErrorResponse(Response):
    """A JSON error reply, bounded by error_json (orjson: NaN and numpy values never raise here)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return error_json(content)


def install(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, http_error)
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


async def validation_error(request: Request, exc: RequestValidationError) -> Response:
    errors = exc.errors()
    more = getattr(exc, "more", 0) + max(0, len(errors) - MAX_ERRORS)
    detail = [_item(err) for err in errors[:MAX_ERRORS]]
    body = {"detail": detail}
    if more:
        body["more_errors"] = more
    while len(orjson.dumps(body, default=str)) > MAX_REPLY_BYTES and len(detail) > 1:  # the cuts make it rare
        body["more_errors"] = body.get("more_errors", 0) + 1
        detail.pop()
    return ErrorResponse(error_body(request.scope, detail) if is_v2(request.scope) else body, status_code=422)


async def http_error(request: Request, exc: HTTPException) -> Response:
    """404, 405, 413, 415...: Starlette's shape ({"detail"}), bounded; no body where none is allowed."""
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=exc.headers)
    return ErrorResponse(error_body(request.scope, exc.detail), status_code=exc.status_code, headers=exc.headers)


def _item(err: dict) -> dict:
    """One 422 item, worded by the schema's rule, with everything echoed from the input cut."""
    item = {
        "loc": [cut(part) for part in err.get("loc", ())],
        "msg": cut(str(err.get("msg", "")), MAX_MSG_CHARS),
        "type": cut(str(err.get("type", ""))),
    }
    field_name = item["loc"][-1] if item["loc"] else None
    if item["type"] == "missing" and field_name in BY_NAME:
        item["msg"] = f"{field_name} is required: must be {BY_NAME[field_name].rule()}"
    elif item["type"] == "missing" and item["loc"] == ["body"]:
        item["msg"] = "a JSON body is required"
    elif item["type"] == "json_invalid":
        item["msg"] = cut(f"malformed JSON: {(err.get('ctx') or {}).get('error', 'decode error')}", MAX_MSG_CHARS)
    if "input" in err:
        item["input"] = _sanitize(err["input"])
    return item


async def client_disconnected(request: Request, exc: ClientDisconnect) -> Response:
    """The client left before its request was read: no answer can reach it. Counted, logged
    once as what it is (no traceback), and recorded as a 499 by the metrics middleware."""
    request.app.state.metrics.client_disconnects.inc()
    log.info("client_disconnect", extra={"status": CLIENT_CLOSED, "method": request.method, "path": request.url.path})
    return Response(status_code=CLIENT_CLOSED)


async def not_ready(request: Request, exc: NotReady) -> Response:
    state = request.app.state.serving
    return ErrorResponse(
        error_body(request.scope, f"model not ready: {state.reason}", status=state.status),
        status_code=503,
        headers={"Retry-After": "5"},
    )


async def prediction_failed(request: Request, exc: PredictionFailed) -> Response:
    return ErrorResponse(
        error_body(
            request.scope, "internal error while predicting; the trace_id finds it in the logs", trace_id=exc.trace_id
        ),
        status_code=500,
    )


async def unexpected(request: Request, exc: Exception) -> Response:
    trace_id, span_id = current_ids()
    log.error(
        "unhandled_error", exc_info=exc, extra={"trace_id": trace_id, "span_id": span_id, "path": request.url.path}
    )
    return ErrorResponse(error_body(request.scope, "internal server error", trace_id=trace_id), status_code=500)


def cut(value: Any, limit: int = MAX_ECHO_CHARS, length: int | None = None, unit: str = "characters") -> Any:
    """A string echoed from the input, cut to `limit` characters, its full length said: `length`
    when `value` is only a prefix (or the repr of one) of what came in, which must be measured whole."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]}... ({len(value) if length is None else length:,} {unit})"
    return value


def repr_int(value: int) -> str:
    """An integer's digits, at most MAX_ECHO_CHARS of them (str() refuses over 4,300 digits)."""
    if value.bit_length() > 4 * MAX_ECHO_CHARS:
        return f"<an integer of {value.bit_length():,} bits>"
    return str(value)


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
        return {cut(str(k)): _sanitize(v, depth + 1) for k, v in value.items()}
    if isinstance(value, str):
        return cut(value)
    if isinstance(value, (int, type(None), bool, float)):
        return value if not isinstance(value, int) or abs(value) < 2**63 else cut(repr_int(value))
    if isinstance(value, (bytes, bytearray)):  # a raw body: decoded from a prefix, its length in bytes
        text = bytes(value[: 4 * MAX_ECHO_CHARS]).decode("utf-8", "replace")
        if len(value) <= MAX_ECHO_CHARS:
            return text
        return f"{text[:MAX_ECHO_CHARS]}... ({len(value):,} bytes)"
    return cut(str(value))
