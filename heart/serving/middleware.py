"""Request bodies: the JSON 413 over the size limit, and bodies validated by pydantic directly."""
from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

from .contract import MAX_BATCH

THREADED_BODY_BYTES = 32_000  # larger bodies (big batches) are validated in a worker thread


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
