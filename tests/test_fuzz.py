"""Fuzz every operation of the OpenAPI schema with schemathesis, the Open Inference Protocol's (V2)
included: no generated input gets a 5xx, and every POST answers with one of its documented statuses."""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.support import make_app

MAX_EXAMPLES = 100  # per operation and mode; keeps the whole file well under a minute
MODES = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
V1_POST = (200, 413, 422)  # FastAPI's validation error
V2_POST = (200, 400, 404, 413, 415)  # the protocol's: a rule broken, an unknown model or version
FEEDBACK_POST = (202, 404, 409, 413, 422)  # stored (or each item's outcome), one unknown id, one conflicting label


@pytest.fixture(scope="module")
def fuzz_schema(model_path):
    app = make_app(model_path, configure_logging=False)
    app.state.serving.load()  # the ASGI transport does not run the lifespan: load here
    assert app.state.serving.ready
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def operations(schema):
    return [result.ok() for result in schema.get_all_operations()]


def test_the_schema_lists_every_operation(fuzz_schema):
    names = {f"{op.method.upper()} {op.path}" for op in operations(fuzz_schema)}
    assert {
        "POST /predict",
        "POST /predict/",
        "POST /predict/batch",
        "POST /explain",
        "POST /feedback",
        "GET /live_check",
        "GET /ready_check",
        "GET /model",
        "GET /metrics",
        "GET /",
        "GET /v2",
        "GET /v2/health/live",
        "GET /v2/health/ready",
        "GET /v2/models/{name}",
        "GET /v2/models/{name}/ready",
        "POST /v2/models/{name}/infer",
        "POST /v2/models/{name}/versions/{version}/infer",
    } <= names


def test_v2_infer_declares_its_body_and_its_400(fuzz_schema):
    (infer,) = [op for op in operations(fuzz_schema) if op.path == "/v2/models/{name}/infer"]
    definition = infer.definition.raw
    assert definition["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/InferRequest"
    }
    assert {"400", "404", "413", "415", "503"} <= set(definition["responses"])


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_no_generated_input_gets_a_5xx(fuzz_schema, mode):
    statuses = []
    for operation in operations(fuzz_schema):
        if mode == schemathesis.GenerationMode.NEGATIVE and operation.method.upper() == "GET":
            continue  # no parameters: nothing to break

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case):
            response = case.call()
            statuses.append((case.method, case.path, response.status_code))
            assert response.status_code < 500, (
                f"{case.method} {case.path} {case.body!r:.300} -> {response.status_code}: {response.text[:300]}"
            )
            if case.method == "POST":
                allowed = (
                    V2_POST if case.path.startswith("/v2/") else FEEDBACK_POST if case.path == "/feedback" else V1_POST
                )
                assert response.status_code in allowed, (case.path, response.status_code, response.text[:300])

        fuzz()
    posted = [(path, status) for method, path, status in statuses if method == "POST"]
    assert len(posted) >= 6 * 10, "the fuzzer must really have sent bodies"
    refused = [status for _, status in posted if status in (400, 422)]
    if mode == schemathesis.GenerationMode.NEGATIVE:
        assert len(refused) > len(posted) / 2
    else:
        assert 200 in [status for _, status in posted]
    assert any(path.startswith("/v2/") for path, _ in posted), "V2 was fuzzed too"
    assert any(path == "/feedback" for path, _ in posted), "/feedback was fuzzed too"
