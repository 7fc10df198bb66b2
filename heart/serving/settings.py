"""The server's configuration: one validated object, read once from the environment.

Each setting is declared once, as a field made by `setting()`: its environment variable (the
12-factor name containers and `uvicorn heart_fastapi:app` use), its help, and the rule a bad
value breaks. The flags of heart_fastapi.py (`--` + the field name), the readme's table and
the one-line errors are all derived from that declaration. A bad value is a SettingsError
whose message is one line naming the variable (or flag) and the rule.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from ..artifact import ModelError, parse_sha256

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
ENGINES = ("onnx", "sklearn")
AUTH_MODES = ("tokens", "open")
MAX_SECRET_FILE_BYTES = 1_048_576  # a token or pin file larger than this is a mistake, not a Secret
TOKEN_RE = re.compile(r"[\x21-\x7e]+")  # what an Authorization header can carry: visible ASCII


def setting(
    default: Any, env: str, rule: str, help: str, *, flag: bool = True, secure: bool = False, **constraints: Any
) -> Any:
    """A field of Settings: its variable, its help and its rule, in one place. flag=False keeps
    it off the command line (a secret would show in `ps`); secure=True refuses a blank value
    (set but blank never turns a safeguard off: it is a mistake, such as an empty Secret)."""
    extra = {"rule": rule, "flag": flag, "secure": secure}
    return Field(default, validation_alias=env, description=help, json_schema_extra=extra, **constraints)


class Pin(NamedTuple):
    """The sha256 the deployer authorised (None: unpinned) and which setting said so."""

    sha256: str | None
    source: str  # MODEL_SHA256, MODEL_SHA256_FILE or none


class Settings(BaseSettings):
    """What the server is told: every field is an environment variable and (most) a flag."""

    model_config = SettingsConfigDict(
        case_sensitive=True, env_ignore_empty=False, populate_by_name=True, frozen=True, extra="forbid"
    )

    host: str = setting("0.0.0.0", "HOST", "an interface name or address", "interface to bind")
    port: int = setting(8000, "PORT", "a whole number from 1 to 65535", "TCP port", ge=1, le=65535)
    workers: int = setting(
        1, "WEB_CONCURRENCY", "a whole number from 1 to 64", "worker processes; /metrics merges them", ge=1, le=64
    )
    model_path: Path = setting(
        Path("model.zip"), "MODEL_PATH", "a file path", "the model archive train.py writes (model.zip)"
    )
    prediction_log: Path | None = setting(
        None,
        "PREDICTION_LOG",
        "a path to a regular file",
        "append one JSON line per served patient to this file (unset = off)",
    )
    log_inputs: bool = setting(
        True,
        "LOG_INPUTS",
        "true or false",
        "include the patients' inputs in logs and the prediction log; false keeps health data out of the logs",
        secure=True,
    )
    log_level: Literal[LOG_LEVELS] = setting("info", "LOG_LEVEL", "one of " + ", ".join(LOG_LEVELS), "log level")  # type: ignore[valid-type]
    access_log: bool = setting(False, "ACCESS_LOG", "true or false", "also log every HTTP request (costs throughput)")
    engine: Literal[ENGINES] = setting(  # type: ignore[valid-type]
        "onnx",
        "INFERENCE_ENGINE",
        " or ".join(ENGINES),
        "onnx: the model's ONNX graph, checked against its stored probabilities (a model that fails is refused); "
        "sklearn: the fallback, the Pipeline itself (needs scikit-learn)",
    )
    # Live drift (heart/serving/live_drift.py):
    drift_window: int = setting(
        1000,
        "DRIFT_WINDOW",
        "a whole number from 0 to 100000 (0 = off)",
        "recent predictions kept per worker for the live drift gauges (0 = off)",
        ge=0,
        le=100_000,
    )
    drift_interval: float = setting(
        10.0,
        "DRIFT_INTERVAL_SECONDS",
        "a number of seconds from 0.1 to 86400",
        "seconds between live drift computations (off the request path)",
        ge=0.1,
        le=86_400,
        allow_inf_nan=False,
    )
    # The inference table (heart/inference_table.py; docs/monitoring.md, "The inference table"):
    database_url: str | None = setting(
        None,
        "DATABASE_URL",
        "a postgresql://user:password@host:5432/dbname URL (or sqlite:////path/to/file.db)",
        "the inference table's database, shared by every pod (unset = the SQLite file INFERENCE_DB)",
        flag=False,
        secure=True,
        repr=False,
    )
    database_url_file: Path | None = setting(
        None,
        "DATABASE_URL_FILE",
        "a file path",
        "a file holding DATABASE_URL (a mounted Secret); a file that does not exist counts as unset, as an "
        "optional Secret not created; DATABASE_URL wins when both are set",
        secure=True,
    )
    inference_db: Path | None = setting(
        None,
        "INFERENCE_DB",
        "a file path",
        "the inference table's SQLite file when there is no DATABASE_URL (default: inference.db beside the model)",
    )
    retention_days: float = setting(
        90.0,
        "INFERENCE_RETENTION_DAYS",
        "a number of days from 0 to 36500 (0 = no age limit)",
        "predictions older than this are deleted from the inference table",
        ge=0,
        le=36_500,
        allow_inf_nan=False,
    )
    retention_rows: int = setting(
        1_000_000,
        "INFERENCE_RETENTION_ROWS",
        "a whole number from 0 to 10000000000 (0 = no limit)",
        "the inference table keeps at most this many predictions, the newest",
        ge=0,
        le=10**10,
    )
    # Hardening (docs/serving.md, "Reliability"):
    request_timeout: float = setting(
        15.0,
        "REQUEST_TIMEOUT_SECONDS",
        "a number of seconds from 1 to 3600",
        "seconds a client has to send a whole request (headers and body) from its first byte; a stalled one is "
        "closed (the metrics port too)",
        ge=1,
        le=3600,
        allow_inf_nan=False,
    )
    max_header_bytes: int = setting(
        65_536,
        "MAX_HEADER_BYTES",
        "a whole number of bytes from 1024 to 1048576",
        "request headers over this total get a 431 and the connection closed",
        ge=1024,
        le=1_048_576,
    )
    graceful_timeout: float = setting(
        15.0,
        "GRACEFUL_TIMEOUT",
        "a number of seconds from 0 to 3600",
        "seconds in-flight requests get to finish after SIGTERM; must fit in the pod's "
        "terminationGracePeriodSeconds minus its preStop sleep",
        ge=0,
        le=3600,
        allow_inf_nan=False,
    )
    metrics_port: int | None = setting(
        None,
        "METRICS_PORT",
        "a whole number from 1 to 65535, not PORT",
        "serve /metrics on this port only, not on the API port (unset = on the API port)",
        ge=1,
        le=65535,
    )
    # Access (docs/security.md, "Who may call what"):
    api_auth: Literal[AUTH_MODES] | None = setting(  # type: ignore[valid-type]
        None,
        "API_AUTH",
        " or ".join(AUTH_MODES),
        "tokens: every route but the public ones needs a bearer token (none configured = exit 2); open: no "
        "auth, on purpose (tokens configured too = exit 2); unset: tokens if API_TOKENS or API_TOKENS_FILE "
        "is set, else open with a warning",
        secure=True,
    )
    api_tokens: str | None = setting(
        None,
        "API_TOKENS",
        "comma-separated tokens (visible ASCII)",
        "comma-separated bearer tokens every route but the public ones requires",
        flag=False,
        secure=True,
        repr=False,
    )
    api_tokens_file: Path | None = setting(
        None,
        "API_TOKENS_FILE",
        "a readable file",
        "a file of bearer tokens, one a line or comma-separated (a mounted Kubernetes Secret); not with API_TOKENS",
        secure=True,
    )
    # Trust (docs/security.md): the pin comes from whoever deploys the model, never from the artifact.
    model_sha256: str | None = setting(
        None,
        "MODEL_SHA256",
        "a sha256 (64 hex digits, as `sha256sum model.zip` prints)",
        "sha256 of the model file (`sha256sum model.zip`); a file that does not match is refused "
        "before it is unpickled",
        secure=True,
        pattern=r"^[0-9a-f]{64}$",
    )
    model_sha256_file: Path | None = setting(
        None,
        "MODEL_SHA256_FILE",
        "a file path",
        "a file holding the pin (the image bakes /app/model.sha256); MODEL_SHA256 wins when both are set",
        secure=True,
    )
    require_model_pin: bool = setting(
        False,
        "REQUIRE_MODEL_PIN",
        "true or false",
        "refuse a model with no pin (the image sets true); false serves it with a warning",
        secure=True,
    )

    @field_validator("*", mode="before")
    @classmethod
    def _trimmed(cls, value: Any, info: ValidationInfo) -> Any:
        """Spaces around a value do not count; a blank value means the default, except for a
        security setting, where it is refused (an empty Secret must not turn a safeguard off)."""
        if not isinstance(value, str):
            return value
        value = value.strip()
        if not value:
            if _extra(cls.model_fields[info.field_name])["secure"]:
                raise PydanticCustomError("blank", "set but blank")
            return cls.model_fields[info.field_name].default
        return value.lower() if info.field_name in ("log_level", "engine", "api_auth", "model_sha256") else value

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, _DeclaredVariables(settings_cls)  # no .env file or secrets directory

    @field_validator("api_tokens_file")
    @classmethod
    def _readable(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError("not a readable file")
        return value

    def check(self) -> None:
        """What no single field can say: a SettingsError naming the settings that disagree."""
        if self.metrics_port is not None and self.metrics_port == self.port:
            raise SettingsError(f"METRICS_PORT (flag --metrics-port) must differ from PORT ({self.port})")
        if not self.retention_days and not self.retention_rows:
            raise SettingsError(
                "INFERENCE_RETENTION_DAYS and INFERENCE_RETENTION_ROWS are both 0: the inference table would "
                "grow without bound; give one of them a limit"
            )
        self.bearer_tokens()

    def bearer_tokens(self) -> list[str]:
        """The tokens every non-public route requires; [] = the API is open. API_AUTH says
        which it must be; set but empty, unreadable or contradicting API_AUTH is refused."""
        configured = self.api_tokens is not None or self.api_tokens_file is not None
        if self.api_auth == "open":
            if configured:
                raise SettingsError("API_AUTH is open but API_TOKENS or API_TOKENS_FILE is set: unset one or the other")
            return []
        if not configured:
            if self.api_auth == "tokens":
                raise SettingsError("API_AUTH is tokens but neither API_TOKENS nor API_TOKENS_FILE is set")
            return []
        if self.api_tokens is not None and self.api_tokens_file is not None:  # which one counts? neither
            raise SettingsError("API_TOKENS and API_TOKENS_FILE are both set: set one of API_TOKENS or API_TOKENS_FILE")
        text = self.api_tokens or read_secret_file(self.api_tokens_file, "API_TOKENS_FILE")  # type: ignore[arg-type]
        tokens = [t.strip() for t in text.replace("\n", ",").split(",") if t.strip()]
        if not tokens:
            raise SettingsError("API_TOKENS / API_TOKENS_FILE is set but holds no token")
        for i, token in enumerate(tokens, 1):
            if not TOKEN_RE.fullmatch(token):  # never echoed: it is a secret
                raise SettingsError(
                    f"API_TOKENS / API_TOKENS_FILE: token {i} holds a space, a control or a non-ASCII "
                    "character, which an Authorization header cannot carry"
                )
        return tokens

    def pin(self, require: bool = True) -> Pin:
        """The deployer's pin: MODEL_SHA256 wins over MODEL_SHA256_FILE. ModelError when the file
        cannot be read or holds no sha256, or (require) when there is no pin and REQUIRE_MODEL_PIN is true."""
        if self.model_sha256:
            return Pin(self.model_sha256, "MODEL_SHA256")
        if self.model_sha256_file is not None:
            where = f"MODEL_SHA256_FILE {self.model_sha256_file}"
            try:
                text = read_secret_file(self.model_sha256_file, "MODEL_SHA256_FILE", errors="replace")
            except SettingsError as e:
                raise ModelError(str(e)) from None
            return Pin(parse_sha256(text, where), "MODEL_SHA256_FILE")
        if require and self.require_model_pin:
            raise ModelError(
                f"{self.model_path}: no pin, and REQUIRE_MODEL_PIN is true: set MODEL_SHA256 to "
                "the sha256 of the model you mean to serve (`sha256sum model.zip`)"
            )
        return Pin(None, "none")

    def to_env(self) -> dict[str, str | None]:
        """The settings as the variables they came from (None = unset): how worker processes get them."""
        out: dict[str, str | None] = {}
        for name, alias in ENV_NAMES.items():
            value = getattr(self, name)
            out[alias] = None if value is None else str(value).lower() if isinstance(value, bool) else str(value)
        return out


class _DeclaredVariables(EnvSettingsSource):
    """The environment, read by each field's declared variable only (populate_by_name would also
    read a variable spelled like the field: `prediction_log`)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.env_vars.get(field.validation_alias), field.validation_alias, False


def _extra(f: FieldInfo) -> dict:
    return f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}


ENV_NAMES = {name: f.validation_alias for name, f in Settings.model_fields.items()}
FLAGS = {name: "--" + name.replace("_", "-") for name, f in Settings.model_fields.items() if _extra(f)["flag"]}
RULES = {name: _extra(f)["rule"] for name, f in Settings.model_fields.items()}


class SettingsError(ValueError):
    """A bad configuration value; str() is one line naming the variable or flag and the rule."""


def read_secret_file(path: Path, setting_name: str, errors: str = "strict") -> str:
    """A small regular file's UTF-8 text, or a SettingsError naming the setting. Opened without
    blocking, so a FIFO (or a device) is refused at once instead of hanging start-up."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        raise SettingsError(f"{setting_name} {path}: cannot be read ({e.strerror})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):  # before fdopen, which refuses a directory in its own words ("[Errno 21]... 3")
        os.close(fd)
        kind = "a directory, not a regular file" if stat.S_ISDIR(mode) else "not a regular file"
        raise SettingsError(f"{setting_name} {path}: {kind}")
    with os.fdopen(fd, "rb") as fh:
        try:
            raw = fh.read(MAX_SECRET_FILE_BYTES + 1)
        except OSError as e:
            raise SettingsError(f"{setting_name} {path}: cannot be read ({e.strerror})") from None
    if len(raw) > MAX_SECRET_FILE_BYTES:
        raise SettingsError(f"{setting_name} {path}: over {MAX_SECRET_FILE_BYTES:,} bytes")
    try:
        return raw.decode("utf-8-sig", errors)  # a BOM (a Secret written on Windows) is not part of a token
    except UnicodeDecodeError as e:
        raise SettingsError(f"{setting_name} {path}: not UTF-8 text (byte {e.start})") from None


def load_settings(flags: Mapping[str, Any] | None = None) -> Settings:
    """Settings from the environment, `flags` (field name -> value as typed) overriding it."""
    try:
        return Settings(**(flags or {}))
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
        if err["type"] == "blank":
            parts.append(f"{where} is set but blank: give {rule}, or unset it")
        elif name in ("api_tokens", "database_url"):  # a secret: never echoed
            parts.append(f"{where} must be {rule}")
        else:
            got = repr(err["input"])
            parts.append(f"{where} must be {rule}, got {got if len(got) <= 80 else got[:80] + '...'}")
    return "; ".join(parts)
