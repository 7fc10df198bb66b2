"""Fuzz every operation of the OpenAPI schema with schemathesis: no generated input gets a 5xx."""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.support import make_app

MAX_EXAMPLES = 100  # per operation and mode; keeps the whole file well under a minute
MODES = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]


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
        "GET /live_check",
        "GET /ready_check",
        "GET /model",
        "GET /metrics",
        "GET /",
    } <= names


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
            statuses.append((case.method, response.status_code))
            assert response.status_code < 500, (
                f"{case.method} {case.path} {case.body!r:.300} -> {response.status_code}: {response.text[:300]}"
            )
            if case.method == "POST":
                assert response.status_code in (200, 413, 422), response.text[:300]

        fuzz()
    posted = [status for method, status in statuses if method == "POST"]
    assert len(posted) >= 4 * 10, "the fuzzer must really have sent bodies"
    if mode == schemathesis.GenerationMode.NEGATIVE:
        assert posted.count(422) > len(posted) / 2
    else:
        assert 200 in posted
