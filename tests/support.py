"""Helpers the test files share (fixtures over them live in tests/conftest.py): apps built on the
test model with nothing taken from the developer's environment, and the Pipeline's own answer."""

from __future__ import annotations

import numpy as np
import pandas as pd
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from heart.schema import FEATURE_NAMES
from heart.serving.app import create_app
from heart.serving.settings import ENV_NAMES, Settings
from heart.serving.tracing import tracer_provider

# create_app's keyword arguments (test and tool knobs); every other keyword is a setting.
APP_KNOBS = ("background_load", "configure_logging", "max_body_bytes")
# What a real server in a test must not inherit from the developer's shell.
CLEAN_SERVER_ENV = {
    name: None
    for name in ENV_NAMES.values()
    if name not in ("HOST", "PORT", "MODEL_PATH", "WEB_CONCURRENCY", "LOG_LEVEL")
} | {
    "OTEL_EXPORTER_OTLP_ENDPOINT": None,
    "OTEL_TRACES_EXPORTER": None,
    "PROMETHEUS_MULTIPROC_DIR": None,
}


def settings_for(model_path, **values) -> Settings:
    """Settings with every environment-backed field given, so the developer's env cannot leak in."""
    defaults = {name: Settings.model_fields[name].default for name in ENV_NAMES}
    return Settings(**{**defaults, "model_path": model_path, **values})


def make_app(model_path, tmp_path=None, spans=None, **values):
    """An app on the test model, loaded before it is returned; spans (an
    InMemorySpanExporter) receive every finished span; a tmp_path gets the prediction log."""
    provider = tracer_provider("test", exporters=[])
    if spans is not None:
        provider.add_span_processor(SimpleSpanProcessor(spans))
    knobs = {"background_load": False, **{k: values.pop(k) for k in APP_KNOBS if k in values}}
    if tmp_path is not None:
        values.setdefault("prediction_log", tmp_path / "predictions.jsonl")
    return create_app(settings_for(model_path, **values), tracer_provider_=provider, **knobs)


def proba(loaded, patients):
    """The Pipeline's P(disease) for patients given as the API takes them (gender as text)."""
    frame = pd.DataFrame([{n: p.get(n, np.nan) for n in FEATURE_NAMES} for p in patients])
    frame["gender"] = frame["gender"].map(lambda g: {"male": 1, "female": 0}.get(str(g).lower(), g)).astype(float)
    return loaded.pipeline.predict_proba(frame.astype(float))[:, 1]
