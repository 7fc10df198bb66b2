"""The API's contract: what a request may hold and what a response must hold.

One definition for the server (validation, OpenAPI), the clients (heart/clients/client.py,
locustfile.py) and the benchmark. Every rule on a patient's features (ranges, codes, the
integer rule, required fields, gender as text in any case, the legacy spellings the data
loader also reads: `sex` for `gender`, ca = 4 and thal = 0 for "unknown") comes from
heart/schema.py.
Only pydantic is imported: a client need not install or start FastAPI to use it.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
    create_model,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ..schema import ALIASES, BY_NAME, FEATURE_NAMES, FEATURES, TARGET, Feature

MAX_BATCH = 1000  # patients per /predict/batch request
LABELS = {int(k): v for k, v in TARGET.labels.items()}
EXAMPLE = {
    "age": 63,
    "gender": "male",
    "cp": 3,
    "trestbps": 145,
    "chol": 233,
    "fbs": 1,
    "restecg": 0,
    "thalach": 150,
    "exang": 0,
    "oldpeak": 2.3,
    "slope": 0,
    "ca": 0,
    "thal": 1,
}


# ------------------------------------------------------------------------------------ requests


def _error(kind: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(kind, "{message}", {"message": message})


class LegacyCode(int):
    """A legacy "unknown" code as sent (ca = 4, thal = 0: Feature.missing_codes).

    The validator returns it in place of a number so that inference can impute the feature
    like a null and still say, in the response's `legacy_codes`, which code was read so.
    """

    __slots__ = ()


def _validator(f: Feature):
    """Validate one feature by the schema's rule; return its numeric code/value (float) or None.

    The common case (a valid JSON number) takes one comparison chain; anything else goes the
    slow way, through Feature.check, which words the rule for the error message.
    """
    text_codes = {k.lower(): v for k, v in f.text_codes.items()}
    continuous = f.kind == "continuous"
    low, high, integer = f.low, f.high, f.integer
    codes = frozenset(f.codes)
    legacy = {code: LegacyCode(code) for code in f.missing_codes}  # the loader's rule, the same declaration

    def validate(value: Any) -> float | None:
        kind = type(value)
        if kind is int or kind is float:  # the hot path; NaN and out-of-range fall through
            if continuous:
                if low <= value <= high and (not integer or value == int(value)):
                    return float(value)
            elif value in codes:
                return float(value)
            elif value in legacy:  # rare: read as unknown, imputed like a null
                return legacy[value]
        if value is None:
            if f.required:
                raise _error("missing", f"{f.name} is required and cannot be null: must be {f.rule()}")
            return None
        return _slow_path(f, value, text_codes)

    return validate


def _slow_path(f: Feature, value: Any, text_codes: dict[str, int]) -> float:
    """Text codes, wrong types and broken rules, each worded for the 422's msg."""
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


def _json_schema(f: Feature) -> dict:
    """What /docs and the OpenAPI schema (and so schemathesis) say about one feature."""
    desc = f"{f.description}" + (f" ({f.unit})" if f.unit else "") + f". Rule: {f.rule()}."
    if f.kind == "continuous":
        schema: dict = {"type": "integer" if f.integer else "number", "minimum": f.low, "maximum": f.high}
    else:
        schema = {"type": "integer", "enum": sorted({*f.codes, *f.missing_codes})}
    if f.missing_codes:
        desc += (
            f" Legacy code {', '.join(map(str, f.missing_codes))} = unknown: imputed like a null, and named "
            "in the response's legacy_codes."
        )
    if f.aliases:
        desc += f" Also accepted as {', '.join(f.aliases)} (the data loader's alias); give one name, not both."
    if f.text_codes:
        variants = sorted({v for t in f.text_codes for v in (t, t.upper(), t.capitalize())})
        schema = {"anyOf": [schema, {"type": "string", "enum": variants}]}
    if not f.required:
        desc += " Optional: null or omitted is imputed by the model."
        schema = {"anyOf": [*schema.get("anyOf", [schema]), {"type": "null"}]}
    return {**schema, "title": f.name, "description": desc}


class _Body(BaseModel):
    """A request body. A feature sent under its name and an alias too (gender and sex) gets an
    error naming both.

    pydantic takes the first of the AliasChoices it finds and calls the other an extra field,
    so an extra-field error at an alias can only mean both were given. Rewording it here, on
    the error path, costs valid requests nothing (a model validator would cost ~2 µs each).
    """

    model_config = ConfigDict(extra="forbid")

    @classmethod
    def model_validate_json(cls, json_data, **kwargs):
        try:
            return super().model_validate_json(json_data, **kwargs)
        except ValidationError as e:
            raise _name_alias_clashes(e) from None

    @classmethod
    def model_validate(cls, obj, **kwargs):
        try:
            return super().model_validate(obj, **kwargs)
        except ValidationError as e:
            raise _name_alias_clashes(e) from None


def _name_alias_clashes(error: ValidationError) -> ValidationError:
    """The same errors, with each extra-field error at an alias worded as a clash naming both names."""
    errors = error.errors(include_url=False)
    if not any(_is_clash(err) for err in errors):
        return error
    details = []
    for err in errors:
        if _is_clash(err):
            alias = err["loc"][-1]
            cause = _error(
                "alias_conflict", f"{ALIASES[alias]} and {alias} (its alias) are both given: send one of them"
            )
        else:
            cause = _error(err["type"], err["msg"])
        details.append({"type": cause, "loc": err["loc"], "input": err.get("input")})
    return ValidationError.from_exception_data(error.title, details)


def _is_clash(err: dict) -> bool:
    return err["type"] == "extra_forbidden" and bool(err["loc"]) and err["loc"][-1] in ALIASES


class _PatientBody(_Body):
    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLE]})


def build_patient_model() -> type[BaseModel]:
    """The request model for one patient, generated from FEATURES (unknown fields are refused)."""
    fields: dict[str, Any] = {}
    for f in FEATURES:
        if f.missing_codes and f.required:
            raise ValueError(f"{f.name}: a required feature cannot have a legacy 'unknown' code")
        annotation = Annotated[Any, PlainValidator(_validator(f)), WithJsonSchema(_json_schema(f))]
        default = ... if f.required else None
        fields[f.name] = (
            annotation,
            Field(default, validation_alias=AliasChoices(f.name, *f.aliases)) if f.aliases else default,
        )
    return create_model("Patient", __base__=_PatientBody, __doc__="One patient's 13 clinical features.", **fields)


Patient = build_patient_model()


class Batch(_Body):
    instances: Annotated[
        list[Patient],
        Field(
            min_length=1,
            max_length=MAX_BATCH,  # type: ignore[valid-type]
            description=f"1 to {MAX_BATCH} patients",
        ),
    ]


# ----------------------------------------------------------------------------------- responses
# Strict: the clients validate the server's answers with these, so a probability sent as
# text or a class sent as true is a bad response, not something coerced into a good one.

Probability = Annotated[float, Field(strict=True, ge=0.0, le=1.0)]
ClassCode = Annotated[int, Field(strict=True, ge=0, le=1)]
FeatureName = Literal[tuple(FEATURE_NAMES)]  # type: ignore[valid-type]
TraceId = Annotated[str, StringConstraints(strict=True, pattern=r"^[0-9a-f]{32}$")]
PREDICTION_ID_RULE = "32 lowercase hexadecimal digits, as a prediction's prediction_id"
PredictionId = Annotated[
    str,
    StringConstraints(strict=True, pattern=r"^[0-9a-f]{32}$"),
    Field(
        description="this patient's prediction (32 hex, time-ordered like a UUIDv7): send it back to "
        "POST /feedback with the label when it is known"
    ),
]
ModelVersion = Annotated[str, StringConstraints(strict=True, min_length=1)]


class PredictionResult(BaseModel):
    prediction_id: PredictionId
    predicted_class: ClassCode = Field(description="1 = heart disease, 0 = no heart disease")
    label: str = Field(description="the predicted class in words")
    probability: Probability = Field(description="P(heart disease)")
    imputed: list[FeatureName] = Field(description="features that were missing and imputed by the model")
    legacy_codes: dict[FeatureName, Annotated[int, Field(strict=True)]] = Field(
        default_factory=dict,
        description='legacy "unknown" codes read as missing (and so imputed), '
        'by feature as sent: {"ca": 4, "thal": 0}; {} if none',
    )

    @model_validator(mode="after")
    def _consistent(self):
        if self.label != LABELS[self.predicted_class]:
            raise _error(
                "label_mismatch",
                f"label {self.label!r} does not match predicted_class "
                f"{self.predicted_class} ({LABELS[self.predicted_class]!r})",
            )
        _check_legacy(self.legacy_codes, self.imputed)
        return self


def _check_legacy(legacy_codes: dict[str, int], imputed: list[str]) -> None:
    """Each legacy code is one the schema declares, and its feature is listed as imputed."""
    for name, code in legacy_codes.items():
        if code not in BY_NAME[name].missing_codes:
            raise _error("legacy_code", f"legacy_codes: {code} is not a legacy code of {name}")
        if name not in imputed:
            raise _error("legacy_code", f"legacy_codes names {name}, which is not in imputed")


class PredictResponse(PredictionResult):
    model_version: ModelVersion
    trace_id: TraceId = Field(description="OpenTelemetry trace id (32 hex): find this request's spans and logs")


class BatchResponse(BaseModel):
    model_version: ModelVersion
    trace_id: TraceId
    predictions: list[PredictionResult]


class ReadyResponse(BaseModel):
    """GET /ready_check's 200 body (its other fields are informational)."""

    model_config = ConfigDict(extra="allow")
    status: Annotated[str, StringConstraints(pattern="^ready$")]


class Contribution(BaseModel):
    feature: str
    value: float | None = Field(description="the input value (schema code); null if imputed")
    contribution: float = Field(description="SHAP value: change in P(heart disease)")


class ExplainResponse(BaseModel):
    prediction_id: PredictionId
    predicted_class: int
    label: str
    probability: float
    threshold: float = Field(description="the model card's decision threshold: class 1 iff probability >= threshold")
    base_value: float = Field(description="mean P(heart disease) of the forest; base + contributions = probability")
    contributions: list[Contribution]
    imputed: list[str]
    legacy_codes: dict[str, int] = Field(default_factory=dict, description="as in PredictResponse")
    model_version: str
    trace_id: str


class ValidationErrorItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorResponse(BaseModel):
    detail: list[ValidationErrorItem]
