"""Issue 19, in process: one policy for every route. Auth is deny by default (every route of
app.routes, and any route added later, needs a token unless it is on the public list); every
error reply of every route family is bounded and echoes no header value; no V2 input is a 500."""

from __future__ import annotations

import json
import warnings

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import Mount

from heart.serving.auth import PUBLIC, PUBLIC_PREFIXES
from heart.serving.contract import EXAMPLE, MAX_BATCH
from tests.support import make_app, v2_tensors

TOKEN = "policy-token"
INFER = "/v2/models/heart-disease/infer"
ROW = [63, 1, 3, 145, 233, 1, 0, 150, 0, 2.3, 0, 0, 1]
# What each path parameter of the app's routes is filled with, and a file for the static mount.
PATH_VALUES = {"{name}": "heart-disease", "{version}": "v0"}
STATIC_FILE = "/static/favicon.svg"


@pytest.fixture(scope="module")
def secured(model_path):
    app = make_app(model_path, api_tokens=TOKEN)
    with TestClient(app) as c:
        assert app.state.serving.wait(60)
        yield c


def concrete(path: str) -> str:
    for template, value in PATH_VALUES.items():
        path = path.replace(template, value)
    return path


def every_route(app) -> list[tuple[str, str]]:
    """(method, concrete path) of every route the app serves, the static mount included."""
    out = []
    for route in app.routes:
        if isinstance(route, Mount):
            out.append(("GET", STATIC_FILE))
            continue
        assert "{" not in concrete(route.path), f"no value for a path parameter of {route.path}"
        out += [(method, concrete(route.path)) for method in sorted(route.methods or ())]
    return out


# ------------------------------------------------------------------------- deny by default


def test_every_route_answers_401_without_a_token_unless_it_is_public(secured):
    routes = every_route(secured.app)
    assert len(routes) > 25 and ("POST", INFER) in routes
    public = [(m, p) for m, p in routes if p in PUBLIC or p.startswith(PUBLIC_PREFIXES)]
    for method, path in routes:
        r = secured.request(method, path)
        if (method, path) in public:
            assert r.status_code != 401, (method, path)
        else:
            assert r.status_code == 401, (method, path, r.status_code)  # main: V2 infer answered 200
            assert r.headers["www-authenticate"].startswith("Bearer") and len(r.content) < 200
            assert set(r.json()) == ({"error"} if path.startswith("/v2") else {"detail"}), (path, r.text)
        with_token = secured.request(method, path, headers={"authorization": f"Bearer {TOKEN}"})
        assert with_token.status_code != 401, (method, path)
    assert {p for _, p in public} == {*PUBLIC, STATIC_FILE} - {"/metrics"}


def test_the_public_list_is_short_and_explicit():
    assert {
        "/live_check",
        "/ready_check",
        "/v2/health/live",
        "/v2/health/ready",
        "/",
        "/docs",
        "/redoc",
        "/openapi.json",
    } == PUBLIC
    assert PUBLIC_PREFIXES == ("/static/",)


def test_v2_inference_and_the_model_card_need_a_token(secured):
    assert secured.post(INFER, json={"inputs": v2_tensors([EXAMPLE])}).status_code == 401
    assert secured.post(INFER.replace("/infer", "/versions/x/infer"), json={}).status_code == 401
    assert secured.get("/model").status_code == 401 and secured.get("/metrics").status_code == 401
    ok = secured.post(INFER, json={"inputs": v2_tensors([EXAMPLE])}, headers={"authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200


def test_the_openapi_document_says_which_operations_need_the_token(secured, client):
    schema = secured.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"] == {"bearerAuth": {"type": "http", "scheme": "bearer"}}
    assert schema["security"] == [{"bearerAuth": []}]  # every operation, unless it says otherwise
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            assert ("security" in operation) == (path in PUBLIC), path
    assert "securitySchemes" not in client.get("/openapi.json").json()["components"]  # an open API asks none


def test_a_route_added_later_is_protected_without_being_listed(model_path):
    """A route added by anyone (issue 23 added POST /feedback) needs no line in auth.py to be protected."""
    app = make_app(model_path, api_tokens=TOKEN)

    @app.post("/later")
    async def later():
        return {"ok": True}

    with TestClient(app) as c:
        assert c.post("/later").status_code == 401
        assert c.post("/later", headers={"authorization": f"Bearer {TOKEN}"}).json() == {"ok": True}
        assert c.post("/feedback", json={"prediction_id": "0" * 32, "label": 1}).status_code == 401
        assert c.get("/no/such/route").status_code == 401  # unknown paths too: no map of the API for anyone
        assert c.get("/static/../model").status_code in (401, 404)  # no way around through the public prefix


def test_an_open_api_answers_every_route_without_a_token(client):
    for method, path in every_route(client.app):
        assert client.request(method, path).status_code != 401, (method, path)


def test_more_than_one_authorization_header_is_refused_whatever_their_order(secured):
    """The first header decided: `Bearer good` then `Bearer bad` passed, the reverse did not. Which
    one a proxy or a framework reads is not agreed, so neither is taken (RFC 6750 invalid_request)."""
    good, bad = f"Bearer {TOKEN}", "Bearer not-it"
    for pair in ([good, bad], [bad, good], [good, good]):
        for path in ("/model", INFER):
            r = secured.get(path, headers=[("authorization", v) for v in pair])
            assert r.status_code == 400 and 'error="invalid_request"' in r.headers["www-authenticate"], (pair, r.text)
            assert next(iter(r.json().values())) == "send one Authorization header, not 2"
    assert secured.get("/model", headers={"authorization": good}).status_code == 200
    assert secured.get("/live_check", headers=[("authorization", bad), ("authorization", bad)]).status_code == 200


@pytest.fixture(scope="module")
def small_body(model_path):
    """Tokens on and a 1,000-byte body limit: every error a V2 client can meet before its route runs."""
    app = make_app(model_path, api_tokens=TOKEN, max_body_bytes=1_000)
    with TestClient(app, headers={"authorization": f"Bearer {TOKEN}"}) as c:
        assert app.state.serving.wait(60)
        yield c


def chunks():
    yield b"x" * 2_000  # no Content-Length: counted as it arrives


@pytest.mark.parametrize(
    "method, path, kwargs, status",
    [
        ("POST", INFER, {"headers": {"authorization": "Bearer not-it"}}, 401),
        ("POST", INFER, {"headers": {"authorization": ""}}, 401),
        ("POST", INFER, {"headers": {"content-length": "5000000"}, "content": b"{}"}, 413),
        ("POST", INFER, {"content": chunks()}, 413),
        ("GET", INFER, {}, 405),
        ("DELETE", "/v2", {}, 405),
        ("GET", "/v2/models/heart-disease/explain", {}, 404),
        ("GET", "/v2/nothing", {}, 404),
        ("POST", INFER, {"headers": {"x-big": "h" * 70_000}}, 431),
    ],
    ids=["401-wrong", "401-none", "413-declared", "413-chunked", "405-infer", "405-v2", "404-model", "404-v2", "431"],
)
def test_every_v2_error_is_in_the_protocols_shape_whoever_answers(small_body, method, path, kwargs, status):
    """Auth, the body limit and the router answered V2 clients {"detail"}, and the 413 spoke of
    patients per batch: the error layer picks the shape by path, for every layer."""
    r = small_body.request(method, path, **kwargs)
    assert r.status_code == status and set(r.json()) == {"error"}, r.text
    assert r.headers["content-type"] == "application/json"
    if status == 413:
        assert r.json()["error"] == "request body over the limit of 1,000 bytes; send at most 1,000 rows per request"
    headers = {"content-type": "application/json", **kwargs.get("headers", {})}
    v1 = small_body.post("/predict", content=chunks() if status == 413 else b"{}", headers=headers)
    if status in (401, 413, 431):  # the same layer, v1's shape and words
        assert v1.status_code == status and set(v1.json()) == {"detail"}, v1.text
    if status == 413:
        assert v1.json()["detail"].endswith("send at most 1,000 patients per batch")


# -------------------------------------------------------------------- bounded error replies


def infer_body(inputs=None, **extra) -> bytes:
    return json.dumps({"inputs": inputs if inputs is not None else v2_tensors([EXAMPLE]), **extra}).encode()


BIG = "x" * 1_000_000
HUGE_V2 = {
    "input name": infer_body([{"name": BIG, "shape": [1], "datatype": "FP64", "data": [1]}]),
    "datatype": infer_body([{"name": "age", "shape": [1], "datatype": BIG, "data": [1]}]),
    "output name": infer_body(outputs=[{"name": BIG}]),
    "shape of 500,000 ones": infer_body([{"name": "age", "shape": [1] * 500_000, "datatype": "FP64", "data": [1]}]),
    "shape of 5,000 tens": infer_body([{"name": "age", "shape": [10] * 5000, "datatype": "FP64", "data": [1]}]),
    "BYTES gender 5 x 700 KB": infer_body(v2_tensors([{**EXAMPLE, "gender": "y" * 700_000}] * 5)),
    "element": infer_body([{"name": "age", "shape": [1], "datatype": "FP64", "data": [BIG]}]),
    "id and version": infer_body([{"name": "age", "shape": [1, 10**4000], "datatype": "FP64", "data": [1]}]),
}


@pytest.mark.parametrize("case", list(HUGE_V2))
def test_v2_error_replies_are_bounded_and_cut_what_they_quote(client, case):
    r = client.post(INFER, content=HUGE_V2[case])
    assert r.status_code == 400, r.text[:300]
    assert len(r.content) <= 2_000, (case, len(r.content))  # main: up to 3.5 MB
    assert "x" * 301 not in r.text and "y" * 301 not in r.text  # a quote is cut to 300 characters at most


def test_the_v2_id_is_echoed_up_to_256_characters_and_refused_beyond(client):
    """A 1 MB id came back whole in a 200 (1 MB answers for 1 MB requests, of any client's choosing)."""
    assert client.post(INFER, content=infer_body(id="i" * 256)).json()["id"] == "i" * 256
    r = client.post(INFER, content=infer_body(id="i" * 1_000_000))
    assert r.status_code == 400 and r.json() == {"error": "id: at most 256 characters, got 1,000,000"}
    assert client.post(INFER, content=infer_body(id="i" * 257)).json() == {
        "error": "id: at most 256 characters, got 257"
    }


def test_a_value_cut_short_is_said_at_its_true_length(client):
    """The value was cut (to 81 bytes, or a repr of 160 characters) before it was measured: "(81
    characters)" for a 100 KB body, "(162 characters)" for a 100,000-character name."""
    name = "x" * 100_000
    r = client.post(INFER, content=infer_body([{"name": name, "shape": [1], "datatype": "FP64", "data": [1]}]))
    assert "... (100,000 characters)" in r.json()["error"] and "162" not in r.json()["error"]
    r = client.get("/v2/models/heart-disease/versions/" + "v" * 5_000)
    assert r.status_code == 404 and "... (5,000 characters)" in r.json()["error"]
    body = '{"age":50,"gender":1,"cp":"' + "z" * 100_000  # unterminated: pydantic quotes the raw bytes
    r = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["input"].endswith(f"... ({len(body):,} bytes)")
    body = '{"age":50,"gender":1,"cp":"' + "é" * 100  # 227 bytes, 127 characters: cut, and said so
    r = client.post("/predict", content=body.encode(), headers={"content-type": "application/json"})
    echoed = r.json()["detail"][0]["input"]
    assert echoed == body[:80] + f"... ({len(body.encode()):,} bytes)"
    short = "y" * 90
    r = client.post(INFER, content=infer_body([{"name": short, "shape": [1], "datatype": "FP64", "data": [1]}]))
    assert "... (90 characters)" in r.json()["error"]


@pytest.mark.parametrize(
    "value",
    ["9" * 5000, "0" * 4997 + "110", "\u00b2", "\u00b9", "-1", "1e3", "+12", "0x10", "١٢"],
    ids=["5000-nines", "zeros-then-110", "superscript-2", "superscript-1", "minus", "exp", "plus", "hex", "arabic"],
)
def test_the_binary_header_length_is_ascii_digits_bounded_and_never_echoed(client, value):
    r = client.post(INFER, content=infer_body(), headers={"Inference-Header-Content-Length": value.encode("utf-8")})
    assert r.status_code == 400 and r.json()["error"].startswith("Inference-Header-Content-Length must be")  # main: 500
    assert value.strip()[:8] not in r.json()["error"]


def test_a_header_value_is_never_echoed_anywhere(client, secured):
    marker = "h" * 60_000
    json_type = {"content-type": "application/json"}
    for c, method, path, header in [
        (client, "POST", INFER, "Inference-Header-Content-Length"),  # main: the 60 KB value came back whole
        (client, "POST", INFER, "content-type"),
        (client, "POST", "/predict", "content-type"),
        (client, "GET", "/nowhere", "accept"),
        (secured, "POST", "/predict", "authorization"),
    ]:
        r = c.request(method, path, content=b"{}", headers={**json_type, header: marker})
        assert 400 <= r.status_code < 500 and len(r.content) <= 1_000 and "hhhhhhhhhh" not in r.text, (header, r.text)


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("GET", "/static/" + "s" * 60_000, None),
        ("GET", "/static/%00", None),
        ("GET", "/" + "n" * 60_000, None),
        ("DELETE", "/predict", None),
        ("GET", "/v2/models/" + "m" * 60_000, None),
        ("GET", "/v2/models/heart-disease/versions/" + "v" * 60_000, None),
        ("POST", "/predict", json.dumps({**EXAMPLE, "k" * 60_000: 1, "gender": "g" * 1_000_000})),
    ],
    ids=["static-long", "static-nul", "unknown-long", "405", "v2-model-name", "v2-version", "v1-body"],
)
def test_every_family_keeps_errors_under_the_cap(client, method, path, body):
    r = client.request(method, path, content=body, headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500, (path[:40], r.status_code)
    assert len(r.content) <= 2_000 and r.headers["content-type"] == "application/json"


# ---------------------------------------------------------------- V2 structure and shapes


@pytest.mark.parametrize(
    "tensor, words",
    [
        ({"name": "input", "shape": [1, 13], "datatype": "FP64", "data": [[ROW]]}, "nested `data` must be 1 lists"),
        ({"name": "input", "shape": [2, 13], "datatype": "FP64", "data": [ROW, ROW[:12]]}, "nested `data`"),
        ({"name": "input", "shape": [2, 13], "datatype": "FP64", "data": [ROW, [*ROW, 1]]}, "nested `data`"),
        ({"name": "input", "shape": [1, 13], "datatype": "FP64", "data": [ROW[:6], ROW[6:]]}, "nested `data`"),
        ({"name": "input", "shape": ["1", 13], "datatype": "FP64", "data": ROW}, "malformed inference request"),
        ({"name": "input", "shape": [1.0, 13], "datatype": "FP64", "data": ROW}, "malformed inference request"),
        ({"name": "input", "shape": [1, 13], "datatype": "FP64", "data": 5}, "`data` must be a list"),
        ({"name": "age", "shape": [1], "datatype": "FP64", "data": [[63]]}, "element 0 is a list"),
        ({"name": "age", "shape": [-1], "datatype": "FP64", "data": [63]}, "negative dimension"),
        ({"name": "age", "shape": [1, 1, 1], "datatype": "FP64", "data": [63]}, "3 dimensions"),
        ({"name": "age", "shape": [MAX_BATCH + 1], "datatype": "FP64", "data": [63]}, "N = 1001 rows"),
        ({"name": "age", "shape": [1, 100_000], "datatype": "FP64", "data": [63]}, "holds over 13,000 elements"),
        ({"name": "age", "shape": [1], "datatype": "INT64", "data": [2**70]}, "not INT64"),
    ],
)
def test_a_tensor_must_have_exactly_the_structure_its_shape_says(client, tensor, words):
    r = client.post(INFER, content=infer_body([tensor]))
    assert r.status_code == 400 and words in r.json()["error"], r.text  # main: the first four answered 200


def test_flat_and_exactly_nested_data_both_predict(client):
    flat = client.post(
        INFER, content=infer_body([{"name": "input", "shape": [2, 13], "datatype": "FP64", "data": ROW * 2}])
    )
    nested = client.post(
        INFER, content=infer_body([{"name": "input", "shape": [2, 13], "datatype": "FP64", "data": [ROW, ROW]}])
    )
    assert flat.status_code == nested.status_code == 200
    same = [o for o in flat.json()["outputs"] if o["name"] != "prediction_id"]  # each prediction its own id
    assert same == [o for o in nested.json()["outputs"] if o["name"] != "prediction_id"] and len(same) == 3


def test_each_output_is_asked_for_at_most_once(client):
    """2,000 copies of one output turned a 200 KB request into a 38 MB answer."""
    matrix = [{"name": "input", "shape": [1000, 13], "datatype": "FP64", "data": ROW * 1000}]
    r = client.post(INFER, content=infer_body(matrix, outputs=[{"name": "label"}] * 2000))
    assert r.status_code == 400 and r.json()["error"] == "output 'label' is asked for twice"


@pytest.mark.parametrize("flag", ["no", "false", 0, 1, None, [True]])
def test_binary_flags_must_be_booleans(client, flag):
    for extra in (
        {"parameters": {"binary_data_output": flag}},
        {"outputs": [{"name": "label", "parameters": {"binary_data": flag}}]},
    ):
        r = client.post(INFER, content=infer_body(**extra))
        assert r.status_code == 400 and "must be true or false" in r.json()["error"]  # main: "no" answered binary
    assert (
        client.post(INFER, content=infer_body(parameters={"binary_data_output": False})).headers["content-type"]
        == "application/json"
    )


def test_fp32_overflow_is_a_400_without_a_numpy_warning(client):
    inputs = v2_tensors([{**EXAMPLE, "chol": 1e300}], chol="FP32")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # main: RuntimeWarning: overflow encountered in cast
        r = client.post(INFER, content=infer_body(inputs))
    assert r.status_code == 400 and "chol" in r.json()["error"]
    huge_int = v2_tensors([{**EXAMPLE, "chol": 10**400}], chol="FP32")
    assert client.post(INFER, content=infer_body(huge_int)).status_code == 400


# --------------------------------------------------- the binary extension, fuzzed (hypothesis)


@pytest.fixture(scope="module")
def fuzz_client(model_path):
    app = make_app(model_path, configure_logging=False)
    with TestClient(app) as c:
        assert app.state.serving.wait(60)
        yield c


LENGTHS = st.one_of(
    st.integers(-5, 400).map(str),
    st.text(st.characters(categories=["Nd", "No", "Zs"]), min_size=1, max_size=12),
    st.integers(0, 9999).map(lambda n: "9" * n),
    st.text(max_size=20),
)


@given(
    length=LENGTHS,
    size=st.one_of(st.none(), st.integers(-3, 200), st.booleans(), st.text(max_size=3)),
    tail=st.binary(max_size=200),
    datatype=st.sampled_from(["FP64", "FP32", "INT64", "BYTES"]),
    shape=st.lists(st.integers(-2, 3000), min_size=0, max_size=3),
)
@settings(max_examples=300, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
def test_fuzz_the_binary_extensions_lengths(fuzz_client, length, size, tail, datatype, shape):
    params = {} if size is None else {"binary_data_size": size}
    name = "gender" if datatype == "BYTES" else "age"
    header = json.dumps({"inputs": [{"name": name, "shape": shape, "datatype": datatype, "parameters": params}]})
    body = header.encode() + tail
    for value in (length, str(len(header.encode()))):
        r = fuzz_client.post(INFER, content=body, headers={"Inference-Header-Content-Length": value.encode("utf-8")})
        assert r.status_code in (200, 400), (value[:30], size, shape, r.status_code, r.text[:200])
        assert len(r.content) <= 2_000 and set(r.json()) == {"error"} or r.status_code == 200
