"""The server's configuration: one validated object, read once from the environment.

The variable names are the 12-factor ones containers and `uvicorn heart_fastapi:app` use;
heart_fastapi.py's flags override them. Fields without a variable name are knobs for tests
and tools, never read from the environment. A bad value is a SettingsError whose message
is one line naming the variable (or flag) and the rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

ROOT = Path(__file__).resolve().parents[2]
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
ENGINES = ("onnx", "sklearn")


class Settings(BaseSettings):
    """What the server is told; every field with an env name is also a flag of heart_fastapi.py."""

    model_config = SettingsConfigDict(
        case_sensitive=True, env_ignore_empty=True, populate_by_name=True, frozen=True, extra="forbid"
    )

    host: str = Field("0.0.0.0", validation_alias="HOST", description="interface to bind")
    port: int = Field(8000, ge=1, le=65535, validation_alias="PORT", description="TCP port")
    workers: int = Field(
        1, ge=1, validation_alias="WEB_CONCURRENCY", description="worker processes; /metrics merges them"
    )
    model_path: Path = Field(
        Path("model.joblib"),
        validation_alias="MODEL_PATH",
        description="model.joblib with its model.card.json beside it",
    )
    prediction_log: Path | None = Field(
        None,
        validation_alias="PREDICTION_LOG",
        description="append one JSON line per served patient to this file (unset = off)",
    )
    log_inputs: bool = Field(
        True,
        validation_alias="LOG_INPUTS",
        description="include the patients' inputs in logs and the prediction log; "
        "false keeps health data out of the logs",
    )
    log_level: Literal[LOG_LEVELS] = Field("info", validation_alias="LOG_LEVEL", description="log level")  # type: ignore[valid-type]
    engine: Literal[ENGINES] = Field(
        "onnx",
        validation_alias="INFERENCE_ENGINE",  # type: ignore[valid-type]
        description="onnx: the parity-checked ONNX Runtime fast path (falls back to "
        "sklearn if the check fails); sklearn: the Pipeline itself",
    )
    # Live drift (heart/serving/live_drift.py):
    drift_window: int = Field(
        1000,
        ge=0,
        validation_alias="DRIFT_WINDOW",
        description="recent predictions kept per worker for the live drift gauges (0 = off)",
    )
    drift_interval: float = Field(
        10.0,
        gt=0,
        validation_alias="DRIFT_INTERVAL_SECONDS",
        description="seconds between live drift computations (off the request path)",
    )
    drift_reference: Path | None = ROOT / "data" / "data.csv"  # knob: the training data, checked against the card
    # Hardening (issue 12; docs/serving.md, "Reliability"):
    request_timeout: float = Field(
        15.0,
        gt=0,
        validation_alias="REQUEST_TIMEOUT_SECONDS",
        description="seconds a client has to send a whole request (headers and body) "
        "from its first byte; a stalled one is closed",
    )
    max_header_bytes: int = Field(
        65_536,
        ge=1024,
        validation_alias="MAX_HEADER_BYTES",
        description="request headers over this total get a 431 and the connection closed",
    )
    graceful_timeout: float = Field(
        15.0,
        ge=0,
        validation_alias="GRACEFUL_TIMEOUT",
        description="seconds in-flight requests get to finish after SIGTERM; must fit "
        "in the pod's terminationGracePeriodSeconds minus its preStop sleep",
    )
    metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        validation_alias="METRICS_PORT",
        description="serve /metrics on this port only, not on the API port (unset = on the API port)",
    )
    api_tokens: str | None = Field(
        None,
        repr=False,
        validation_alias="API_TOKENS",
        description="comma-separated bearer tokens the prediction routes require "
        "(unset, with API_TOKENS_FILE unset = no auth)",
    )
    api_tokens_file: Path | None = Field(
        None,
        validation_alias="API_TOKENS_FILE",
        description="a file of bearer tokens, one a line or comma-separated (a mounted Kubernetes Secret)",
    )
    # Trust (docs/security.md): the pin comes from whoever deploys the model, never from the artifact.
    model_sha256: str | None = Field(
        None,
        validation_alias="MODEL_SHA256",
        pattern=r"^[0-9a-f]{64}$",
        description="sha256 of the model file (`sha256sum model.joblib`); a file that "
        "does not match is refused before it is unpickled",
    )
    model_sha256_file: Path | None = Field(
        None,
        validation_alias="MODEL_SHA256_FILE",
        description="a file holding the pin (the image bakes /app/model.sha256); MODEL_SHA256 wins when both are set",
    )
    require_model_pin: bool = Field(
        False,
        validation_alias="REQUIRE_MODEL_PIN",
        description="refuse a model with no pin (the image sets true); false serves it with a warning",
    )

    @field_validator("model_sha256", mode="before")
    @classmethod
    def _lower_hex(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    # Knobs for tests and tools (no environment variable):
    parity_samples: int = 2000  # schema samples checked at load, besides data/data.csv
    parity_data: Path | None = ROOT / "data" / "data.csv"  # rows checked at load if the file exists
    background_load: bool = True  # load after start-up, so probes answer while loading
    max_body_bytes: int = 4_000_000  # larger bodies get a JSON 413 (BodyLimit)
    configure_logging: bool = True

    @field_validator("*", mode="before")
    @classmethod
    def _trimmed(cls, value: Any, info: ValidationInfo) -> Any:
        """Spaces around a value do not count, and a blank value means the default."""
        if not isinstance(value, str):
            return value
        value = value.strip()
        if not value:
            return cls.model_fields[info.field_name].default
        return value.lower() if info.field_name in ("log_level", "engine") else value

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, _NamedVariablesOnly(settings_cls)

    @field_validator("api_tokens_file")
    @classmethod
    def _readable(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError("not a readable file")
        return value

    def bearer_tokens(self) -> list[str]:
        """The tokens the prediction routes accept; [] = auth off. Set but empty is refused, so
        an empty Secret never opens the API by accident."""
        if self.api_tokens is None and self.api_tokens_file is None:
            return []
        text = (self.api_tokens or "") + "," + (self.api_tokens_file.read_text() if self.api_tokens_file else "")
        tokens = [t.strip() for t in text.replace("\n", ",").split(",") if t.strip()]
        if not tokens:
            raise SettingsError("API_TOKENS / API_TOKENS_FILE is set but holds no token")
        return tokens

    def to_env(self) -> dict[str, str | None]:
        """The settings as the variables they came from (None = unset): how worker processes get them."""
        out: dict[str, str | None] = {}
        for name, alias in ENV_NAMES.items():
            value = getattr(self, name)
            out[alias] = None if value is None else str(value).lower() if isinstance(value, bool) else str(value)
        return out


class _NamedVariablesOnly(EnvSettingsSource):
    """The environment, for the fields that name a variable only (the knobs stay code-only)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        if field.validation_alias is None:
            return None, field_name, False
        return super().get_field_value(field, field_name)


ENV_NAMES = {name: f.validation_alias for name, f in Settings.model_fields.items() if f.validation_alias}
FLAGS = {
    "host": "--host",
    "port": "--port",
    "workers": "--workers",
    "model_path": "--model-path",
    "prediction_log": "--prediction-log",
    "log_inputs": "--log-inputs",
    "log_level": "--log-level",
    "engine": "--engine",
    "drift_window": "--drift-window",
    "drift_interval": "--drift-interval",
    "request_timeout": "--request-timeout",
    "graceful_timeout": "--graceful-timeout",
    "metrics_port": "--metrics-port",
}
RULES = {
    "host": "an interface name or address",
    "port": "a whole number from 1 to 65535",
    "workers": "a whole number, at least 1",
    "model_path": "a file path",
    "prediction_log": "a file path",
    "log_inputs": "true or false",
    "log_level": "one of " + ", ".join(LOG_LEVELS),
    "engine": " or ".join(ENGINES),
    "drift_window": "a whole number, at least 0 (0 = off)",
    "drift_interval": "a number of seconds over 0",
    "request_timeout": "a number of seconds over 0",
    "max_header_bytes": "a whole number of bytes, at least 1024",
    "graceful_timeout": "a number of seconds, 0 or more",
    "metrics_port": "a whole number from 1 to 65535",
    "api_tokens_file": "a readable file",
}
FLAGS["model_sha256"] = "--model-sha256"  # trust (docs/security.md)
RULES.update(
    model_sha256="a sha256 (64 hex digits, as `sha256sum model.joblib` prints)",
    model_sha256_file="a file path",
    require_model_pin="true or false",
)


class SettingsError(ValueError):
    """A bad configuration value; str() is one line naming the variable or flag and the rule."""


def load_settings(flags: Mapping[str, Any] | None = None, **knobs: Any) -> Settings:
    """Settings from the environment, `flags` (field name -> value as typed) overriding it."""
    try:
        return Settings(**{**(flags or {}), **knobs})
    except ValidationError as e:
        raise SettingsError(describe(e)) from None


def describe(error: ValidationError) -> str:
    """One line per configuration error: a value given by field name came from a flag, else from the env."""
    parts = []
    for err in error.errors(include_url=False):
        key = str(err["loc"][0]) if err["loc"] else ""
        from_env = key in ENV_NAMES.values()
        name = next((n for n, a in ENV_NAMES.items() if a == key), key) if from_env else key
        rule = RULES.get(name, err["msg"])
        if from_env:
            where = f"environment variable {key}" + (f" (flag {FLAGS[name]})" if name in FLAGS else "")
        else:
            where = FLAGS.get(name, name)
        parts.append(f"{where} must be {rule}, got {err['input']!r}")
    return "; ".join(parts)
