"""What every request passes through: its span, metrics and trace id (ObservabilityMiddleware), the
JSON 413 over the size limit and 431 over the header limit (BodyLimit); and the request bodies,
refused with a 415 unless JSON, validated by pydantic directly with bounded errors."""

from __future__ import annotations

import time
from collections.abc import Mapping

import orjson
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from opentelemetry import context
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from .contract import MAX_BATCH
from .errors import MAX_ERRORS, BoundedValidationError, ErrorResponse, error_body, is_v2
from .metrics import Metrics
from .tracing import ServerSpans

MAX_BODY_BYTES = 4_000_000  # larger bodies get a JSON 413 (BodyLimit): 1,000 patients fit many times over
THREADED_BODY_BYTES = 32_000  # larger bodies (big batches) are validated in a worker thread
MAX_OBJECT_FIELDS = 64  # a patient has 13; an object with more is refused before validation
JSON = b"application/json"


class ObservabilityMiddleware:
    """Pure ASGI and outermost (heart.serving.app), so unhandled errors pass through it too: the
    request's server span (heart.serving.tracing.ServerSpans) made current for everything inside,
    per-request metrics by route template, and an x-trace-id response header. `templates` maps the
    paths of routes without parameters to their template: plain Starlette routes do not name
    themselves in the scope, and the span is named before routing."""

    def __init__(self, app, metrics: Metrics, templates: Mapping[str, str], spans: ServerSpans | None = None):
        self.app = app
        self.metrics = metrics
        self.templates = templates
        self.spans = spans

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = 500
        traced = self.spans.start(scope) if self.spans is not None else None
        token = trace_header = None
        if traced is not None:
            token = context.attach(traced[1])
            span_context = traced[0].get_span_context()
            if span_context.is_valid:
                trace_header = (b"x-trace-id", format(span_context.trace_id, "032x").encode())

        async def send_with_trace(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if trace_header is not None:
                    message["headers"] = [*message.get("headers", ()), trace_header]
            await send(message)

        error = None
        try:
            await self.app(scope, receive, send_with_trace)
        except BaseException as e:
            error = e
            raise
        finally:
            path = getattr(scope.get("route"), "path", None) or self.templates.get(scope["path"], "<unmatched>")
            self.metrics.observe_request(path, scope.get("method", ""), status, time.perf_counter() - start)
            if traced is not None:
                self.spans.finish(traced[0], scope, status, error)
                context.detach(token)


class BodyLimit:
    """A 413 in JSON, like every other error, for a body over the limit: FastAPI's own
    max_body_size answers plain text when Content-Length is over. A declared length is checked
    once, before anything is read; only chunked bodies pay for counting. The reply is in the
    route family's shape and words (errors.error_body): V2 counts rows, v1 patients."""

    def __init__(self, app, max_bytes: int, max_header_bytes: int = 65_536):
        self.app = app
        self.max_bytes = max_bytes
        self.max_header_bytes = max_header_bytes

    def too_large(self, scope) -> str:
        per = f"{MAX_BATCH:,} rows per request" if is_v2(scope) else f"{MAX_BATCH:,} patients per batch"
        return f"request body over the limit of {self.max_bytes:,} bytes; send at most {per}"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = None
        header_bytes = 0
        for name, value in scope["headers"]:
            header_bytes += len(name) + len(value) + 4
            if name == b"content-length" and value.isdigit() and len(value) <= 18:  # else: counted as it arrives
                declared = int(value)
        if header_bytes > self.max_header_bytes:  # a second line: heart.serving.protocol stops them sooner
            message = f"request headers over {self.max_header_bytes:,} bytes"
            return await ErrorResponse(error_body(scope, message), status_code=431)(scope, receive, send)
        if declared is not None:
            if declared > self.max_bytes:
                return await ErrorResponse(error_body(scope, self.too_large(scope)), status_code=413)(
                    scope, receive, send
                )
            return await self.app(scope, receive, send)
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:  # raised inside the route's body read: a JSON 413 response
                raise HTTPException(status_code=413, detail=self.too_large(scope))
            return message

        await self.app(scope, counted, send)


async def parse_body(request: Request, model: type[BaseModel]) -> BaseModel:
    """Validate the raw JSON body with pydantic's own parser (no json.loads + dependency pass).

    Errors are FastAPI's standard RequestValidationError with "body" first in loc, so the 422
    looks like FastAPI's own, but holding the first MAX_ERRORS errors only. A body over
    THREADED_BODY_BYTES is parsed, validated and its errors listed in a worker thread, never
    on the event loop; only the hot path (small bodies, no error) stays on it.
    """
    check_json_content_type(request)
    body = await request.body()
    if not body.strip():
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "a JSON body is required", "input": None}]
        )
    if len(body) > THREADED_BODY_BYTES:
        result = await run_in_threadpool(_validate_large, model, body)
    else:
        try:
            return model.model_validate_json(body)
        except ValidationError as e:
            result = e if e.error_count() <= MAX_ERRORS else await run_in_threadpool(_bounded, e)
    if isinstance(result, ValidationError):
        result = _bounded(result)
    if isinstance(result, RequestValidationError):
        raise result
    return result


def check_json_content_type(request: Request) -> None:
    """Only application/json bodies (parameters such as charset allowed): a 415 otherwise, so
    a web page cannot post predictions cross-site without a CORS preflight."""
    for name, value in request.scope["headers"]:
        if name == b"content-type":
            if value.split(b";", 1)[0].strip().lower() == JSON:
                return
            break
    raise HTTPException(status_code=415, detail="the body must be JSON: send Content-Type: application/json")


def _validate_large(model: type[BaseModel], body: bytes) -> BaseModel | RequestValidationError:
    """A large body: refuse objects with absurdly many fields before pydantic lists an error per
    field (340,000 unknown keys cost it 3 s and 430 MB), then validate."""
    try:
        too_wide = _widest_object(orjson.loads(body))
    except orjson.JSONDecodeError:
        too_wide = None  # pydantic words the syntax error
    if too_wide is not None:
        loc, n = too_wide
        return BoundedValidationError(
            [
                {
                    "type": "too_many_fields",
                    "loc": ("body", *loc),
                    "input": None,
                    "msg": f"an object with {n:,} fields; at most {MAX_OBJECT_FIELDS} allowed (a patient has 13)",
                }
            ]
        )
    try:
        return model.model_validate_json(body)
    except ValidationError as e:
        return _bounded(e)


def _widest_object(value, loc: tuple = ()) -> tuple[tuple, int] | None:
    """(loc, field count) of the first object with more than MAX_OBJECT_FIELDS fields, if any."""
    stack = [(value, loc)]
    while stack:
        node, where = stack.pop()
        if isinstance(node, dict):
            if len(node) > MAX_OBJECT_FIELDS:
                return where, len(node)
            stack.extend((v, (*where, k)) for k, v in node.items() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend((v, (*where, i)) for i, v in enumerate(node) if isinstance(v, (dict, list)))
    return None


def _bounded(error: ValidationError) -> BoundedValidationError:
    """The first MAX_ERRORS of pydantic's errors, with "body" first in loc, and the count of the rest."""
    errors = error.errors(include_url=False)
    return BoundedValidationError(
        [{**err, "loc": ("body", *err["loc"])} for err in errors[:MAX_ERRORS]],
        more=len(errors) - min(len(errors), MAX_ERRORS),
    )
