"""The fixtures the test files share: one client per module on the session's model, spans, and
real servers with a clean environment (the trained model itself is in ../conftest.py)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from heart.clients.harness import ApiServer
from tests import postgres as postgres_tools
from tests.support import CLEAN_SERVER_ENV, make_app


@pytest.fixture(scope="module")
def spans():
    """Every span the module's client finished (cleared by the tests that count them)."""
    return InMemorySpanExporter()


@pytest.fixture(scope="module")
def client(model_path, tmp_path_factory, spans):
    """A TestClient on an app of the session's model, ready, writing its prediction log to a temp dir."""
    app = make_app(model_path, tmp_path_factory.mktemp("api"), spans=spans)
    with TestClient(app) as c:
        assert app.state.serving.wait(60)
        yield c


@pytest.fixture(scope="session")
def real_server(model_path):
    """A factory of real servers (`python heart_fastapi.py`) on the session's model, with nothing
    from the developer's environment but what `env` sets (None unsets): use it as a context manager."""

    def start(log, env: dict | None = None, **options) -> ApiServer:
        options.setdefault("ready_timeout", 90)
        options.setdefault("log_level", "warning")
        return ApiServer(
            options.pop("model", model_path), log=log, extra_env={**CLEAN_SERVER_ENV, **(env or {})}, **options
        )

    return start


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server for the session (tests/postgres.py), started on first use."""
    server = postgres_tools.start()
    yield server
    postgres_tools.stop(server)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """The inference table's database, once a SQLite file and once a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'inference.db'}"
        return
    with postgres_tools.database(request.getfixturevalue("postgres")) as url:
        yield url
