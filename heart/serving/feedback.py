"""POST /feedback: labels that came back, joined to their predictions in the inference table.

A body is one label, {"prediction_id": ..., "label": ...}, or many, {"items": [...]} (1 to
MAX_FEEDBACK). The label is in any spelling the training data loader accepts (yes/no or 1/0,
any case: heart.data.parse_target's rule, from the same text codes). A body that breaks a rule
is a 422 naming the item and field, and nothing is stored; a valid one is stored in one
transaction and answered 202 with the counts and each label's outcome (FeedbackOutcome: 202
accepted, 200 duplicate, 409 conflict, 404 unknown). A single label, not in a list, gets its
own outcome's status when it is 409 or 404. The same label twice is a duplicate (nothing
changes, so a retry is safe); another label for a labelled prediction is a conflict, kept, never
overwritten. The database down: 503, nothing stored, Retry-After.

The route goes through the same layers as the prediction routes (auth, body limits, the error
layer, metrics), and its body is declared in the OpenAPI document, so the fuzz test covers it.
"""

from __future__ import annotations

import logging
import math
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema
from starlette.concurrency import run_in_threadpool

from ..schema import TARGET
from .contract import ClassCode, PredictionId, _Body, _error
from .errors import ErrorResponse
from .middleware import THREADED_BODY_BYTES, check_json_content_type, parse_body
from .table_writer import TableUnavailable

log = logging.getLogger(__name__)
MAX_FEEDBACK = 1000  # labels per request


PREDICTION_ID_PATTERN = "^[0-9a-f]{32}$"
LABEL_SPELLINGS = sorted({v for t in TARGET.text_codes for v in (t, t.upper(), t.capitalize())})
LABEL_RULE = "yes/no or 1/0 (any case), as in the training data"


def _given_prediction_id(value: Any) -> str:
    if isinstance(value, str) and len(value) == 32 and value.isascii() and all(c in "0123456789abcdef" for c in value):
        return value
    got = repr(value) if isinstance(value, str) else f"{type(value).__name__} {value!r}"
    raise _error(
        "prediction_id",
        f"prediction_id must be 32 lowercase hexadecimal digits, as a prediction gave it, got {got}"[:300],
    )


def _given_label(value: Any) -> int:
    """The loader's rule: text stripped and in any case; a whole number 0 or 1 (1.0 too); never true/false."""
    text = None
    if isinstance(value, str):
        text = value
    elif type(value) is int or (type(value) is float and math.isfinite(value) and value.is_integer()):
        text = str(int(value))
    code = TARGET.text_codes.get(text.strip().lower()) if text is not None else None
    if code is None:
        raise _error("label", f"label must be {LABEL_RULE}, got {value!r}"[:300])
    return code


GivenPredictionId = Annotated[
    Any,
    PlainValidator(_given_prediction_id),
    WithJsonSchema({"type": "string", "pattern": PREDICTION_ID_PATTERN, "description": "a prediction's prediction_id"}),
]
GivenLabel = Annotated[
    Any,
    PlainValidator(_given_label),
    WithJsonSchema(
        {
            "anyOf": [{"type": "string", "enum": LABEL_SPELLINGS}, {"type": "integer", "enum": [0, 1]}],
            "description": f"the angiography result: {LABEL_RULE}; 1 / yes = heart disease",
        }
    ),
]


class FeedbackItem(_Body):
    """One label that came back: the prediction it is for, and the label."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"prediction_id": "019a3c5e8f2b7c41a9d3e5f60718293a", "label": "yes"}]}
    )
    prediction_id: GivenPredictionId
    label: GivenLabel


class FeedbackBatch(_Body):
    """Many labels at once; each is stored, or not, on its own (the reply says which)."""

    items: Annotated[
        list[FeedbackItem],
        Field(min_length=1, max_length=MAX_FEEDBACK, description=f"1 to {MAX_FEEDBACK} labels"),
    ]


FEEDBACK_CODES = {"accepted": 202, "duplicate": 200, "conflict": 409, "unknown": 404}


class FeedbackOutcome(BaseModel):
    """What one label did. code: 202 accepted (stored); 200 duplicate (the same label was there
    already: nothing changed, so sending a label twice is safe); 409 conflict (another label is
    there: kept, never overwritten); 404 unknown (no such prediction in the inference table)."""

    prediction_id: PredictionId
    status: Literal[tuple(FEEDBACK_CODES)]  # type: ignore[valid-type]
    code: Literal[tuple(FEEDBACK_CODES.values())]  # type: ignore[valid-type]
    label: ClassCode = Field(description="the label given, as 0/1")
    stored_label: ClassCode | None = Field(None, description="duplicate and conflict: the label the table holds")
    detail: str


class FeedbackResponse(BaseModel):
    """POST /feedback's reply: the counts, then each label's outcome in the order given."""

    accepted: int
    duplicate: int
    conflicting: int
    unknown: int
    items: list[FeedbackOutcome]


DETAILS = {
    "accepted": "stored",
    "duplicate": "already labelled {stored}: nothing changed",
    "conflict": "already labelled {stored}: a label is never overwritten",
    "unknown": "no prediction with this id in the inference table (not served here, deleted by retention, "
    "or not written yet: predictions are written within a second or so; retry)",
}
ERRORS = {
    404: {"model": FeedbackResponse, "description": "a single label for an unknown prediction id"},
    409: {"model": FeedbackResponse, "description": "a single label that contradicts the one stored"},
    413: {"description": "body over the size limit"},
    415: {"description": "not JSON"},
    422: {"description": "a label or id breaks its rule; loc names the item and field; nothing was stored"},
    503: {"description": "the inference table cannot be reached; nothing was stored, retry later"},
}
BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "anyOf": [
                        {"$ref": "#/components/schemas/FeedbackItem"},
                        {"$ref": "#/components/schemas/FeedbackBatch"},
                    ]
                }
            }
        },
    }
}
router = APIRouter(tags=["feedback"])


@router.post(
    "/feedback",
    status_code=202,
    response_model=FeedbackResponse,
    responses=ERRORS,
    openapi_extra=BODY,
    summary=f"Labels for served predictions (one, or 1 to {MAX_FEEDBACK} as items): 202 with each outcome",
)
async def feedback(request: Request) -> Response:
    items, single = await _read(request)
    shared = request.app.state
    try:
        outcomes = await run_in_threadpool(shared.table.store_labels, [(i.prediction_id, i.label) for i in items])
    except TableUnavailable as e:
        log.error("feedback_table_unavailable", extra={"error": str(e), "labels": len(items)})
        return ErrorResponse(
            {"detail": "the inference table cannot be reached; nothing was stored: retry later"},
            status_code=503,
            headers={"Retry-After": "5"},
        )
    rows = [_outcome(o) for o in outcomes]
    counts = {s: sum(r["status"] == s for r in rows) for s in FEEDBACK_CODES}
    for status, n in counts.items():
        if n:
            shared.metrics.feedback.labels(status=status).inc(n)
    body = {
        "accepted": counts["accepted"],
        "duplicate": counts["duplicate"],
        "conflicting": counts["conflict"],
        "unknown": counts["unknown"],
        "items": rows,
    }
    code = rows[0]["code"] if single and rows[0]["code"] in (404, 409) else 202
    return Response(orjson.dumps(body), status_code=code, media_type="application/json")


def _outcome(o) -> dict:
    row = {"prediction_id": o.prediction_id, "status": o.status, "code": FEEDBACK_CODES[o.status], "label": o.label}
    if o.stored_label is not None:
        row["stored_label"] = o.stored_label
    row["detail"] = DETAILS[o.status].format(stored=o.stored_label)
    return row


async def _read(request: Request) -> tuple[list[FeedbackItem], bool]:
    """The labels of the body and whether it was a single one; a 415 or a bounded 422 otherwise."""
    check_json_content_type(request)
    body = await request.body()
    many = await run_in_threadpool(_is_batch, body) if len(body) > THREADED_BODY_BYTES else _is_batch(body)
    parsed = await parse_body(request, FeedbackBatch if many else FeedbackItem)
    return (parsed.items, False) if many else ([parsed], True)


def _is_batch(body: bytes) -> bool:
    """{"items": ...} is many labels; anything else is read as one (and its errors named as one)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(data, dict) and "items" in data


def schemas() -> dict[str, dict]:
    """The body's models for the OpenAPI document's components (the route reads the body itself)."""
    out: dict[str, dict] = {}
    for model in (FeedbackItem, FeedbackBatch):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        out.update(schema.pop("$defs", {}))
        out[model.__name__] = schema
    return out
