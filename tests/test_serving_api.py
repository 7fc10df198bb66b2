"""The API (heart/serving) with FastAPI's TestClient: every endpoint, every bad input, tracing, logs, metrics, readiness."""

import json
import re
import shutil
import threading

import numpy as np
import pytest
from fastapi.testclient import TestClient

import heart.serving.state as state_module
from heart.artifact import card_path_for
from heart.samples import sample, to_records
from heart.schema import BY_NAME, FEATURE_NAMES
from heart.serving.app import create_app
from heart.serving.contract import EXAMPLE
from heart.serving.tracing import span_exporters, tracer_provider
from tests.support import make_app, proba, settings_for

CONTRACT_KEYS = {
    "prediction_id",
    "predicted_class",
    "label",
    "probability",
    "model_version",
    "trace_id",
    "imputed",
    "legacy_codes",
}


# ------------------------------------------------------------------------------- predict


@pytest.mark.parametrize("path", ["/predict", "/predict/"])
def test_predict_answers_both_paths_without_redirect(client, loaded, path):
    r = client.post(path, json=EXAMPLE, follow_redirects=False)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == CONTRACT_KEYS
    assert body["predicted_class"] in (0, 1)
    assert body["label"] == {1: "heart disease", 0: "no heart disease"}[body["predicted_class"]]
    assert abs(body["probability"] - proba(loaded, [EXAMPLE])[0]) <= 1e-6
    assert body["model_version"] == loaded.version and body["imputed"] == []
    assert len(body["trace_id"]) == 32 and int(body["trace_id"], 16) and body["trace_id"] == body["trace_id"].lower()
    assert re.fullmatch("[0-9a-f]{32}", body["prediction_id"]) and body["prediction_id"] != body["trace_id"]


def test_missing_optional_features_are_imputed_and_listed(client, loaded):
    patient = {"age": 54, "gender": 0, "cp": None, "chol": 250}
    body = client.post("/predict", json=patient).json()
    assert body["imputed"] == [n for n in FEATURE_NAMES if n not in ("age", "gender", "chol")]
    assert abs(body["probability"] - proba(loaded, [{"age": 54, "gender": 0, "chol": 250}])[0]) <= 1e-6


@pytest.mark.parametrize("gender,code", [("male", 1), ("MALE", 1), ("Female", 0), (" female ", 0), (1, 1), (0, 0)])
def test_gender_in_any_case_or_as_code(client, gender, code):
    a = client.post("/predict", json={**EXAMPLE, "gender": gender}).json()
    b = client.post("/predict", json={**EXAMPLE, "gender": code}).json()
    assert a["probability"] == b["probability"]


def test_batch_keeps_input_order_and_matches_the_pipeline(client, loaded, dataset):
    records = to_records(dataset.X.iloc[:200])
    r = client.post("/predict/batch", json={"instances": records})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"model_version", "trace_id", "predictions"} and len(body["predictions"]) == 200
    got = np.array([p["probability"] for p in body["predictions"]])
    assert np.abs(got - loaded.pipeline.predict_proba(dataset.X.iloc[:200])[:, 1]).max() <= 1e-6
    assert [p["predicted_class"] for p in body["predictions"]] == loaded.pipeline.predict(dataset.X.iloc[:200]).tolist()
    assert set(body["predictions"][0]) == {
        "prediction_id",
        "predicted_class",
        "label",
        "probability",
        "imputed",
        "legacy_codes",
    }
    assert len({p["prediction_id"] for p in body["predictions"]}) == 200  # one id per row, not per request
    missing = [i for i in range(200) if dataset.X.iloc[i].isna().any()]
    assert missing and all(body["predictions"][i]["imputed"] for i in missing)


def test_batch_of_1000_is_accepted(client):
    r = client.post("/predict/batch", json={"instances": to_records(sample(1000, seed=3))})
    assert r.status_code == 200 and len(r.json()["predictions"]) == 1000


# ---------------------------------------------------------------------------- bad input


def _only_error(r):
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, list) and detail and {"loc", "msg", "type"} <= set(detail[0])
    return detail[0]


@pytest.mark.parametrize(
    "patch,field,words",
    [
        ({"age": None}, "age", "required"),
        ({"gender": None}, "gender", "required"),
        ({"age": [63]}, "age", "integer from 1 to 120"),
        ({"age": "sixty"}, "age", "not text"),
        ({"chol": "233"}, "chol", "not text"),
        ({"age": 150}, "age", "from 1 to 120"),
        ({"age": 63.5}, "age", "integer"),
        ({"trestbps": 20}, "trestbps", "from 50 to 250"),
        ({"oldpeak": -6}, "oldpeak", "from -5 to 10"),
        ({"gender": "robot"}, "gender", "'female', 'male'"),
        ({"gender": 2}, "gender", "one of 0, 1"),
        ({"cp": 7}, "cp", "one of 0, 1, 2, 3"),
        ({"thal": 4}, "thal", "one of 1, 2, 3"),  # thal 0 is the legacy "unknown": tests/test_serving_legacy.py
        ({"fbs": True}, "fbs", "one of 0, 1"),
        ({"smoker": 1}, "smoker", "Extra inputs"),
    ],
)
def test_bad_field_is_a_422_naming_field_and_rule(client, patch, field, words):
    patient = {**EXAMPLE, **patch}
    err = _only_error(client.post("/predict", json=patient))
    assert err["loc"] == ["body", field]
    assert words in err["msg"]
    if field in BY_NAME:
        assert err["msg"].startswith(field)


@pytest.mark.parametrize("field", ["age", "gender"])
def test_missing_required_field(client, field):
    patient = {k: v for k, v in EXAMPLE.items() if k != field}
    err = _only_error(client.post("/predict", json=patient))
    assert err["loc"] == ["body", field] and err["type"] == "missing" and BY_NAME[field].rule() in err["msg"]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_nan_and_infinity_are_refused(client, literal):
    raw = json.dumps(EXAMPLE).replace('"chol": 233', f'"chol": {literal}')
    err = _only_error(client.post("/predict", content=raw, headers={"content-type": "application/json"}))
    assert err["loc"] == ["body", "chol"] and "finite" in err["msg"]


@pytest.mark.parametrize(
    "raw,words",
    [
        (b"", "JSON body is required"),
        (b'{"age": 63,', "malformed JSON"),
        (b"not json", "malformed JSON"),
        (b"[1, 2]", "object"),
    ],
)
def test_empty_or_malformed_body(client, raw, words):
    err = _only_error(client.post("/predict", content=raw, headers={"content-type": "application/json"}))
    assert err["loc"] == ["body"] and words in err["msg"]


def test_batch_errors_carry_the_row_index(client):
    instances = [EXAMPLE, EXAMPLE, {**EXAMPLE, "age": 0}]
    err = _only_error(client.post("/predict/batch", json={"instances": instances}))
    assert err["loc"] == ["body", "instances", 2, "age"]


@pytest.mark.parametrize("instances,words", [([], "at least 1"), ([EXAMPLE] * 1001, "at most 1000")])
def test_batch_size_limits(client, instances, words):
    err = _only_error(client.post("/predict/batch", json={"instances": instances}))
    assert err["loc"] == ["body", "instances"] and words in err["msg"]


def test_huge_body_is_413_before_parsing(model_path):
    app = make_app(model_path, max_body_bytes=10_000)
    with TestClient(app) as c:
        r = c.post("/predict/batch", json={"instances": [EXAMPLE] * 200})
        assert r.status_code == 413
        assert r.json() == {
            "detail": "request body over the limit of 10,000 bytes; send at most 1,000 patients per batch"
        }


def test_batch_unknown_top_level_field(client):
    err = _only_error(client.post("/predict/batch", json={"instances": [EXAMPLE], "extra": 1}))
    assert err["loc"] == ["body", "extra"]


# ----------------------------------------------------------------------------- explain


def test_explain_adds_up_and_is_sorted(client, loaded):
    r = client.post("/explain", json={"age": 60, "gender": "male", "cp": 0, "thalach": 120})
    assert r.status_code == 200, r.text
    body = r.json()
    contributions = [c["contribution"] for c in body["contributions"]]
    assert [c["feature"] for c in body["contributions"]] and len(contributions) == 13
    assert abs(body["base_value"] + sum(contributions) - body["probability"]) < 1e-9
    assert [abs(c) for c in contributions] == sorted((abs(c) for c in contributions), reverse=True)
    assert abs(body["probability"] - proba(loaded, [{"age": 60, "gender": "male", "cp": 0, "thalach": 120}])[0]) < 1e-6
    by_name = {c["feature"]: c for c in body["contributions"]}
    assert by_name["age"]["value"] == 60 and by_name["chol"]["value"] is None and "chol" in body["imputed"]


def test_explain_validates_like_predict(client):
    assert _only_error(client.post("/explain", json={**EXAMPLE, "age": -1}))["loc"] == ["body", "age"]


# -------------------------------------------------------------------- operational routes


def test_live_ready_model_root(client, loaded, model_path):
    assert client.get("/live_check").json() == {"status": "alive"}
    ready = client.get("/ready_check")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready" and body["model_version"] == loaded.version
    assert body["engine"] == "onnxruntime" and body["parity"]["ok"] and body["parity"]["rows"] >= 200
    assert client.get("/model").json() == json.loads(card_path_for(model_path).read_text())
    root = client.get("/").json()
    assert root["docs"] == "/docs" and root["model_version"] == loaded.version and root["name"]
    assert client.get("/docs").status_code == 200


def test_openapi_documents_the_request_bodies(client):
    schema = client.get("/openapi.json").json()
    patient = schema["components"]["schemas"]["Patient"]
    assert patient["required"] == ["age", "gender"] and patient["additionalProperties"] is False
    assert (
        schema["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        == "#/components/schemas/Patient"
    )
    assert "/predict/batch" in schema["paths"] and "/explain" in schema["paths"]


def test_metrics(client):
    client.post("/predict", json=EXAMPLE)
    client.post("/predict", json={**EXAMPLE, "age": 500})
    assert client.get("/no/such/page/123").status_code == 404
    assert client.get("/predict").status_code == 405
    text = client.get("/metrics").text
    assert 'route="<unmatched>",status="404"' in text and "/no/such" not in text
    assert 'heart_http_requests_total{method="POST",route="/predict",status="200"}' in text
    assert 'heart_http_requests_total{method="POST",route="/predict",status="422"}' in text
    assert 'heart_http_request_duration_seconds_bucket{le="0.005",method="POST",route="/predict",status="200"}' in text
    assert (
        'heart_predictions_total{predicted_class="1"}' in text or 'heart_predictions_total{predicted_class="0"}' in text
    )
    assert 'heart_inference_duration_seconds_count{endpoint="predict",engine="onnxruntime"}' in text
    assert 'heart_model_info{engine="onnxruntime",model_version=' in text
    assert "heart_ready 1.0" in text


def test_metrics_count_predictions_by_class(client):
    def count(text, cls):
        line = next(
            (l for l in text.splitlines() if l.startswith(f'heart_predictions_total{{predicted_class="{cls}"}}')), None
        )
        return float(line.split()[-1]) if line else 0.0

    before = client.get("/metrics").text
    r = client.post("/predict/batch", json={"instances": to_records(sample(50, seed=9))}).json()
    after = client.get("/metrics").text
    ones = sum(p["predicted_class"] for p in r["predictions"])
    assert count(after, 1) - count(before, 1) == ones and count(after, 0) - count(before, 0) == 50 - ones


# --------------------------------------------------------------------- tracing and logs


def test_trace_id_is_the_same_in_response_spans_header_and_logs(client, spans, capsys, tmp_path_factory):
    spans.clear()
    capsys.readouterr()
    r = client.post("/predict", json=EXAMPLE)
    trace_id = r.json()["trace_id"]
    assert r.headers["x-trace-id"] == trace_id
    finished = spans.get_finished_spans()
    assert finished and {format(s.context.trace_id, "032x") for s in finished} == {trace_id}
    inference = [s for s in finished if s.name == "inference"]
    assert len(inference) == 1
    assert inference[0].attributes["model.version"] == r.json()["model_version"]
    assert inference[0].attributes["batch.size"] == 1
    server = [s for s in finished if s.parent is None]
    assert (
        server
        and server[0].resource.attributes["service.name"]
        and inference[0].parent.span_id == server[0].context.span_id
    )
    lines = [json.loads(l) for l in capsys.readouterr().out.splitlines() if l.startswith("{")]
    prediction = [l for l in lines if l.get("event") == "prediction"]
    assert len(prediction) == 1 and prediction[0]["trace_id"] == trace_id
    assert prediction[0]["span_id"] == format(inference[0].context.span_id, "016x")


def test_batch_span_carries_the_batch_size(client, spans):
    spans.clear()
    client.post("/predict/batch", json={"instances": [EXAMPLE] * 7})
    inference = [s for s in spans.get_finished_spans() if s.name == "inference"]
    assert inference[0].attributes["batch.size"] == 7


def test_json_log_line_fields(client, capsys):
    capsys.readouterr()
    client.post("/predict", json={"age": 50, "gender": "female"})
    lines = [json.loads(l) for l in capsys.readouterr().out.splitlines() if l.startswith("{")]
    line = next(l for l in lines if l.get("event") == "prediction")
    assert {
        "timestamp",
        "level",
        "event",
        "trace_id",
        "span_id",
        "model_version",
        "inputs",
        "imputed",
        "predicted_class",
        "probability",
        "latency_ms",
    } <= set(line)
    assert line["level"] == "INFO" and line["inputs"]["gender"] == 0 and line["inputs"]["chol"] is None
    assert set(line["inputs"]) == set(FEATURE_NAMES) and "chol" in line["imputed"]


def test_prediction_log_file_one_line_per_patient(client):
    path = client.app.state.serving.settings.prediction_log
    before = path.read_text().splitlines() if path.exists() else []
    r = client.post("/predict/batch", json={"instances": [EXAMPLE, {"age": 40, "gender": "Female"}]}).json()
    lines = [json.loads(l) for l in path.read_text().splitlines()[len(before) :]]
    assert len(lines) == 2
    for line, pred in zip(lines, r["predictions"]):
        assert set(line) == {
            "event",
            "prediction_id",
            "timestamp",
            "trace_id",
            "span_id",
            "model_version",
            "inputs",
            "imputed",
            "predicted_class",
            "probability",
            "latency_ms",
        }
        assert line["event"] == "prediction" and line["trace_id"] == r["trace_id"]
        assert line["prediction_id"] == pred["prediction_id"]
        assert line["probability"] == pred["probability"] and line["predicted_class"] == pred["predicted_class"]
        assert "T" in line["timestamp"] and line["timestamp"].endswith("+00:00")
    assert lines[1]["inputs"]["gender"] == 0 and lines[1]["inputs"]["thal"] is None


def test_log_inputs_false_keeps_health_data_out_of_logs(model_path, tmp_path, capsys):
    app = make_app(model_path, tmp_path, log_inputs=False)
    with TestClient(app) as c:
        capsys.readouterr()
        c.post("/predict", json=EXAMPLE)
        out = capsys.readouterr().out
    line = next(json.loads(l) for l in out.splitlines() if '"prediction"' in l)
    assert "inputs" not in line and "probability" in line
    logged = json.loads((tmp_path / "predictions.jsonl").read_text().splitlines()[0])
    assert "inputs" not in logged and logged["imputed"] == []
    # the patient's cholesterol (233) is no value of any log line (a timestamp may hold the digits)
    assert all(233 not in json.loads(l).values() and '"chol"' not in l for l in out.splitlines() if l.startswith("{"))


def test_startup_model_load_and_shutdown_are_logged(model_path, capsys):
    with TestClient(make_app(model_path)):
        pass
    events = [json.loads(l).get("event") for l in capsys.readouterr().out.splitlines() if l.startswith("{")]
    assert {"startup", "model_loading", "model_loaded", "shutdown"} <= set(events)


# -------------------------------------------------------------------------- readiness


def test_not_ready_until_the_model_is_loaded(model_path, monkeypatch):
    gate = threading.Event()
    real = state_module.read_artifact

    def slow_load(path, *pin):
        assert gate.wait(30)
        return real(path, *pin)

    monkeypatch.setattr(state_module, "read_artifact", slow_load)
    app = make_app(model_path, background_load=True)
    with TestClient(app) as c:
        r = c.get("/ready_check")
        assert r.status_code == 503 and r.json() == {"status": "loading", "reason": "the model is loading"}
        p = c.post("/predict", json=EXAMPLE)
        assert p.status_code == 503 and "loading" in p.json()["detail"]
        assert c.get("/live_check").status_code == 200
        assert "heart_ready 0.0" in c.get("/metrics").text
        gate.set()
        assert app.state.serving.wait(60)
        assert c.get("/ready_check").status_code == 200
        assert c.post("/predict", json=EXAMPLE).status_code == 200


def test_tampered_model_is_never_served_and_readiness_says_why(model_path, tmp_path):
    bad = tmp_path / "model.zip"
    shutil.copy(model_path, bad)
    shutil.copy(card_path_for(model_path), card_path_for(bad))
    blob = bytearray(bad.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    bad.write_bytes(bytes(blob))
    app = make_app(bad)
    with TestClient(app) as c:
        r = c.get("/ready_check")
        assert r.status_code == 503
        assert r.json()["status"] == "failed" and "sha256" in r.json()["reason"] and "refusing" in r.json()["reason"]
        assert c.post("/predict", json=EXAMPLE).status_code == 503
        assert c.post("/predict/batch", json={"instances": [EXAMPLE]}).status_code == 503
        assert c.post("/explain", json=EXAMPLE).status_code == 503
        assert c.get("/model").status_code == 503
        assert app.state.serving.model is None


def test_missing_model_readiness_reason(tmp_path):
    with TestClient(make_app(tmp_path / "nothing.zip")) as c:
        r = c.get("/ready_check")
        assert r.status_code == 503 and "not found" in r.json()["reason"]


def test_model_failure_is_500_with_trace_id_and_the_server_stays_up(model_path, capsys):
    app = make_app(model_path)
    with TestClient(app, raise_server_exceptions=False) as c:
        predictor = app.state.serving.predictor
        real = predictor.predict
        predictor.predict = lambda X: (_ for _ in ()).throw(RuntimeError("secret internal detail"))
        r = c.post("/predict", json=EXAMPLE)
        assert r.status_code == 500
        body = r.json()
        assert len(body["trace_id"]) == 32 and "secret" not in r.text and "Traceback" not in r.text
        assert r.headers["x-trace-id"] == body["trace_id"]
        assert c.post("/predict/batch", json={"instances": [EXAMPLE] * 100}).status_code == 500
        predictor.predict = real
        assert c.post("/predict", json=EXAMPLE).status_code == 200
        assert 'heart_prediction_errors_total{endpoint="predict"} 1.0' in c.get("/metrics").text
    logged = [json.loads(l) for l in capsys.readouterr().out.splitlines() if '"prediction_failed"' in l]
    assert logged and logged[0]["trace_id"] == body["trace_id"] and logged[0]["level"] == "ERROR"


def test_sklearn_engine_serves_the_same_answers(model_path, loaded):
    app = make_app(model_path, engine="sklearn")
    with TestClient(app) as c:
        body = c.post("/predict/batch", json={"instances": [EXAMPLE] * 100}).json()
        assert c.get("/ready_check").json()["engine"] == "sklearn"
    assert abs(body["predictions"][0]["probability"] - proba(loaded, [EXAMPLE])[0]) == 0


# --------------------------------------------------------------------------- settings


def test_trace_exporters_follow_the_standard_env():
    assert span_exporters({}) == []
    assert type(span_exporters({"OTEL_TRACES_EXPORTER": "console"})[0]).__name__ == "ConsoleSpanExporter"
    (otlp,) = span_exporters({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318/"})
    assert type(otlp.inner).__name__ == "OTLPSpanExporter" and otlp.endpoint == "http://127.0.0.1:4318/v1/traces"
    (otlp,) = span_exporters(
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/t", "OTEL_EXPORTER_OTLP_ENDPOINT": "x"}
    )
    assert otlp.endpoint == "http://c:4318/t"  # the signal's own endpoint, as given, wins
    assert span_exporters({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318", "OTEL_TRACES_EXPORTER": "none"}) == []
    provider = tracer_provider("9.9", exporters=[], environ={})
    assert provider.resource.attributes["service.name"] == "heart-disease-api"
    assert provider.resource.attributes["service.version"] == "9.9"


def test_otlp_exporter_sends_the_responses_trace_to_the_collector(model_path, monkeypatch):
    """A stand-in OTLP/HTTP collector receives the spans whose trace_id the response gave."""
    from bench.servers import Collector

    with Collector(keep=True) as collector:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
        monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
        app = create_app(settings_for(model_path), background_load=False)
        with TestClient(app) as c:
            trace_id = c.post("/predict", json=EXAMPLE).json()["trace_id"]
        # leaving the block ran the lifespan's shutdown, which flushes the spans
    assert collector.kept and all(path == "/v1/traces" for path, _ in collector.kept)
    spans = [
        (resource.resource, span)
        for _, request in collector.kept
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]
    ours = [(r, s) for r, s in spans if s.trace_id == bytes.fromhex(trace_id)]
    assert {s.name for _, s in ours} == {"POST /predict", "inference"}
    assert all({"key": "service.name", "value": "heart-disease-api"} in _attributes(r) for r, _ in ours)


def _attributes(resource) -> list[dict]:
    return [{"key": a.key, "value": a.value.string_value} for a in resource.attributes]


def test_chunked_body_over_the_limit_is_413(model_path):
    app = make_app(model_path, max_body_bytes=10_000)

    def chunks():
        for _ in range(50):
            yield json.dumps(EXAMPLE).encode() * 2

    with TestClient(app) as c:
        for path in ("/predict/batch", "/predict", "/explain"):
            r = c.post(path, content=chunks(), headers={"content-type": "application/json"})
            assert r.status_code == 413 and r.json()["detail"].startswith("request body over the limit")
        assert c.post("/predict", json=EXAMPLE).status_code == 200  # the server keeps serving
