"""The Open Inference Protocol (heart/serving/v2.py): tritonclient against a real server, every
error path with TestClient, and the same observability as /predict."""

import json
import re

import numpy as np
import pytest
import tritonclient.http as triton
from fastapi.testclient import TestClient
from tritonclient.utils import InferenceServerException

from heart.clients.harness import ApiServer
from heart.samples import sample, to_records
from heart.schema import FEATURE_NAMES, FEATURES
from heart.serving.contract import EXAMPLE, MAX_BATCH
from tests.support import make_app
from tests.support import v2_tensors as tensors

NAME = "heart-disease"
INFER = f"/v2/models/{NAME}/infer"
OPTIONAL = [f.name for f in FEATURES if not f.required]


def patients(n: int, seed: int):
    """n sampled patients with holes: every optional feature missing in about one row in six."""
    frame = sample(n, seed=seed)
    rng = np.random.default_rng(seed)
    for name in OPTIONAL:
        frame.loc[rng.random(n) < 1 / 6, name] = np.nan
    return frame


def feature_inputs(frame, binary: bool) -> list:
    """One tritonclient tensor per feature; gender as text (BYTES), the rest FP64 with NaN = missing."""
    inputs = []
    for name in FEATURE_NAMES:
        values = frame[name].to_numpy(dtype=float)
        if name == "gender":
            tensor = triton.InferInput(name, [len(frame)], "BYTES")
            tensor.set_data_from_numpy(
                np.array(["male" if v else "Female" for v in values], dtype=object), binary_data=binary
            )
        else:
            tensor = triton.InferInput(name, [len(frame)], "FP64")
            tensor.set_data_from_numpy(values, binary_data=binary)
        inputs.append(tensor)
    return inputs


def assert_same_as_batch(url: str, frame, result) -> None:
    """Class, probability (exactly) and label equal /predict/batch's for the same rows."""
    import requests

    batch = requests.post(url + "/predict/batch", json={"instances": to_records(frame)}, timeout=60)
    assert batch.status_code == 200, batch.text
    expected = batch.json()["predictions"]
    assert result.get_output("predicted_class")["datatype"] == "INT64"
    np.testing.assert_array_equal(result.as_numpy("predicted_class"), [p["predicted_class"] for p in expected])
    np.testing.assert_array_equal(result.as_numpy("probability"), [p["probability"] for p in expected])
    labels = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("label")]  # binary: bytes
    assert labels == [p["label"] for p in expected]
    assert result.as_numpy("probability").dtype == np.float64 and result.as_numpy("predicted_class").dtype == np.int64
    if result.get_output("prediction_id") is not None:  # asked for (or all outputs by default)
        ids = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("prediction_id")]
        assert len(set(ids)) == len(expected) and all(re.fullmatch("[0-9a-f]{32}", i) for i in ids)
        assert not set(ids) & {p["prediction_id"] for p in expected}  # each prediction its own id


# ----------------------------------------------------------------- tritonclient, real server


@pytest.fixture(scope="module")
def server(model_path, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("v2server")
    api = ApiServer(
        model_path,
        log=tmp / "stdout.log",
        ready_timeout=90,
        extra_env={
            "PREDICTION_LOG": str(tmp / "p.jsonl"),
            "OTEL_EXPORTER_OTLP_ENDPOINT": None,
            "OTEL_TRACES_EXPORTER": None,
        },
    )
    with api:
        yield api, triton.InferenceServerClient(f"127.0.0.1:{api.port}", network_timeout=60)


def test_tritonclient_health_and_metadata(server, loaded):
    api, client = server
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(NAME) and client.is_model_ready(NAME, loaded.version)
    assert not client.is_model_ready("no-such-model")
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    meta = client.get_model_metadata(NAME, loaded.version)
    assert meta["name"] == NAME and meta["versions"] == [loaded.version]
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]] == [("input", "FP64", [-1, 13])]
    assert meta["inputs"][0]["parameters"]["columns"] == list(FEATURE_NAMES)
    alternatives = meta["parameters"]["alternative_inputs"]
    assert [t["name"] for t in alternatives] == list(FEATURE_NAMES) and "never both" in meta["parameters"][
        "inputs_rule"
    ]
    assert [t["name"] for t in alternatives if t["parameters"]["required"]] == ["age", "gender"]
    assert {t["name"]: (t["datatype"], t["shape"]) for t in meta["outputs"]} == {
        "predicted_class": ("INT64", [-1]),
        "probability": ("FP64", [-1]),
        "label": ("BYTES", [-1]),
        "prediction_id": ("BYTES", [-1]),
    }
    with pytest.raises(InferenceServerException, match="unknown version 'v0'"):
        client.get_model_metadata(NAME, "v0")


def from_metadata(tensors: list[dict], frame) -> list:
    """A generic client's inputs: one per tensor the metadata lists, its -1 the batch size, its
    datatype the listed one, its values the columns the metadata names (a feature's, or the matrix's)."""
    inputs = []
    for t in tensors:
        names = [t["name"]] if len(t["shape"]) == 1 else t["parameters"]["columns"]
        shape = [len(frame) if d == -1 else d for d in t["shape"]]
        tensor = triton.InferInput(t["name"], shape, t["datatype"])
        tensor.set_data_from_numpy(frame[names].to_numpy(dtype=float).reshape(shape))
        inputs.append(tensor)
    return inputs


@pytest.mark.parametrize("form", ["inputs", "alternative_inputs"])
def test_a_client_built_only_from_the_metadata_gets_predicts_answer(server, form):
    """Sending every tensor the metadata lists (or every alternative it describes) is a valid request."""
    api, client = server
    meta = client.get_model_metadata(NAME)
    tensors = meta["inputs"] if form == "inputs" else meta["parameters"]["alternative_inputs"]
    frame = patients(50, seed=21)
    result = client.infer(NAME, from_metadata(tensors, frame))
    assert [o["name"] for o in result.get_response()["outputs"]] == [o["name"] for o in meta["outputs"]]
    assert_same_as_batch(api.url, frame, result)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_one_row_equals_predict_batch(server, binary):
    api, client = server
    frame = sample(1, seed=4)
    outputs = [triton.InferRequestedOutput(n, binary_data=binary) for n in ("predicted_class", "probability", "label")]
    result = client.infer(NAME, feature_inputs(frame, binary), outputs=outputs, request_id="one-row")
    assert result.get_response()["id"] == "one-row"
    assert_same_as_batch(api.url, frame, result)


def test_tritonclient_1000_rows_binary_default_equals_predict_batch(server):
    """tritonclient's defaults: binary inputs, no outputs named -> binary_data_output for all."""
    api, client = server
    frame = patients(MAX_BATCH, seed=11)
    assert frame[OPTIONAL].isna().any(axis=1).sum() > 500  # the missing-value path is really taken
    result = client.infer(NAME, feature_inputs(frame, binary=True))
    assert result.get_response()["model_version"] == client.get_model_metadata(NAME)["versions"][0]
    assert_same_as_batch(api.url, frame, result)


def test_tritonclient_1000_rows_as_one_matrix_tensor(server):
    api, client = server
    frame = patients(MAX_BATCH, seed=12)
    matrix = triton.InferInput("input", [MAX_BATCH, len(FEATURE_NAMES)], "FP64")
    matrix.set_data_from_numpy(frame.to_numpy(dtype=float), binary_data=False)
    result = client.infer(
        NAME,
        [matrix],
        outputs=[
            triton.InferRequestedOutput(n, binary_data=False) for n in ("predicted_class", "probability", "label")
        ],
    )
    assert_same_as_batch(api.url, frame, result)


def test_tritonclient_sees_the_protocol_error(server):
    api, client = server
    frame = sample(3, seed=2)
    frame.loc[2, "chol"] = 900
    with pytest.raises(InferenceServerException, match=r"row 2: chol must be a number from 50 to 800 mg/dl, got 900"):
        client.infer(NAME, feature_inputs(frame, binary=True))
    with pytest.raises(InferenceServerException, match="unknown model 'other'"):
        client.infer("other", feature_inputs(frame, binary=True))


# ------------------------------------------------------------------- TestClient: error paths


def post(client, inputs, path=INFER, **extra):
    """POST a V2 request the way tritonclient's JSON mode writes it (NaN as a bare token)."""
    return client.post(path, content=json.dumps({"inputs": inputs, **extra}))


def error(response, status=400) -> str:
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error"}
    return response.json()["error"]


def test_wrong_model_name_or_version_is_404(client, loaded):
    inputs = tensors([EXAMPLE])
    assert "unknown model 'heart'" in error(post(client, inputs, path="/v2/models/heart/infer"), 404)
    bad = f"/v2/models/{NAME}/versions/0.0.1/infer"
    assert f"this server serves version '{loaded.version}'" in error(post(client, inputs, path=bad), 404)
    assert post(client, inputs, path=f"/v2/models/{NAME}/versions/{loaded.version}/infer").status_code == 200
    assert error(client.get("/v2/models/heart"), 404) == "unknown model 'heart': this server serves 'heart-disease'"
    assert client.get("/v2/models/heart/ready").status_code == 404


def test_wrong_shapes_are_refused(client):
    rows = [EXAMPLE, EXAMPLE]
    matrix = {"name": "input", "shape": [2, 12], "datatype": "FP64", "data": [[1.0] * 12] * 2}
    assert "shape must be [N, 13]" in error(post(client, [matrix]))
    two_d = tensors(rows)
    two_d[0] = {**two_d[0], "shape": [1, 2]}
    assert "input 'age': shape must be [N] (or [N, 1]), got [1, 2]" in error(post(client, two_d))
    short = tensors(rows)
    short[3] = {**short[3], "shape": [1], "data": [145]}
    assert "disagree on the number of rows" in error(post(client, short))
    lying = tensors(rows)
    lying[0] = {**lying[0], "shape": [3]}
    assert "input 'age': shape [3] needs 3 elements, got 2" in error(post(client, lying))
    both = [*tensors(rows), {"name": "input", "shape": [2, 13], "datatype": "FP64", "data": [0.0] * 26}]
    assert "not both" in error(post(client, both))


def test_wrong_datatypes_are_refused(client):
    assert "datatype INT32 is not accepted: use FP64 or FP32 or INT64" in error(
        post(client, tensors([EXAMPLE], age="INT32"))
    )
    assert "input 'cp': datatype BYTES is not accepted" in error(post(client, tensors([EXAMPLE], cp="BYTES")))
    fractional = tensors([{**EXAMPLE, "age": 63.5}], age="INT64")
    assert "input 'age': element 0 is 63.5, not INT64" in error(post(client, fractional))
    text = tensors([{**EXAMPLE, "chol": "233"}])
    assert "input 'chol': element 0 is '233', not FP64" in error(post(client, text))
    assert "malformed inference request" in error(client.post(INFER, content=b"{not json"))
    assert "inputs" in error(client.post(INFER, json={"inputs": []}))


def test_out_of_range_value_names_feature_and_row_in_the_words_of_predict(client):
    records = [EXAMPLE, EXAMPLE, {**EXAMPLE, "age": 200}, {**EXAMPLE, "thal": 7}]
    message = error(post(client, tensors(records)))
    batch = client.post("/predict/batch", json={"instances": records}).json()["detail"]
    assert [d["loc"] for d in batch] == [["body", "instances", 2, "age"], ["body", "instances", 3, "thal"]]
    assert message == f"row 2: {batch[0]['msg']}; row 3: {batch[1]['msg']}"
    assert message.startswith("row 2: age must be an integer from 1 to 120 years, got 200")
    many = error(post(client, tensors([{**EXAMPLE, "chol": 9000}] * 8)))
    assert many.count("chol must be") == 5 and many.endswith("(and 3 more)")


def test_too_many_rows_and_none(client):
    assert f"N = {MAX_BATCH + 1} rows: send 1 to {MAX_BATCH}" in error(
        post(client, tensors([EXAMPLE] * (MAX_BATCH + 1)))
    )
    assert "N = 0 rows" in error(
        post(
            client,
            [
                {"name": "age", "shape": [0], "datatype": "FP64", "data": []},
                {"name": "gender", "shape": [0], "datatype": "FP64", "data": []},
            ],
        )
    )


def test_unknown_output_or_input_name(client):
    outputs = [{"name": "probability"}, {"name": "risk"}]
    assert (
        error(post(client, tensors([EXAMPLE]), outputs=outputs))
        == "unknown output 'risk': expected one of predicted_class, probability, label, prediction_id"
    )
    assert "unknown input 'sex'" in error(
        post(client, [*tensors([EXAMPLE]), {"name": "sex", "shape": [1], "datatype": "FP64", "data": [1]}])
    )


def test_missing_required_feature_and_null_like_nan(client):
    no_age = [t for t in tensors([EXAMPLE]) if t["name"] != "age"]
    assert (
        error(post(client, no_age)) == "input 'age' is missing: age is required: must be an integer from 1 to 120 years"
    )
    nan_age = tensors([{**EXAMPLE, "age": float("nan")}])
    assert "row 0: age is required and cannot be null" in error(post(client, nan_age))


def test_missing_optional_features_are_imputed_like_predict(client):
    """NaN in an FP tensor, or no tensor at all, is what null or an absent field is on /predict."""
    patient = {"age": 54, "gender": "female", "chol": 250}
    expected = client.post("/predict", json=patient).json()
    as_nan = tensors([{**patient, "cp": float("nan")}, {**EXAMPLE}])
    for inputs in (tensors([patient]), as_nan):
        body = post(client, inputs).json()
        probability = next(o for o in body["outputs"] if o["name"] == "probability")["data"]
        assert probability[0] == expected["probability"]


def test_outputs_list_is_honoured_in_its_order(client):
    body = post(client, tensors([EXAMPLE]), outputs=[{"name": "label"}, {"name": "probability"}]).json()
    assert [o["name"] for o in body["outputs"]] == ["label", "probability"]
    assert body["outputs"][0]["data"][0] in ("heart disease", "no heart disease")
    assert "id" not in body and body["model_name"] == NAME


def test_fp32_and_int64_inputs_give_predicts_answer(client):
    expected = client.post("/predict", json=EXAMPLE).json()["probability"]
    as_fp32 = tensors([EXAMPLE], oldpeak="FP32")
    as_fp32[9]["data"] = [float(np.float32(2.3))]  # what a float32 2.3 is: 2.299999952316284
    ints = tensors([EXAMPLE], **{n: "INT64" for n in ("age", "cp", "fbs", "restecg", "exang", "slope", "ca", "thal")})
    for inputs in (as_fp32, ints):
        body = post(client, inputs).json()
        assert body["outputs"][1]["data"] == [expected]


def test_binary_body_errors(client):
    header = json.dumps(
        {"inputs": [{"name": "age", "shape": [1], "datatype": "FP64", "parameters": {"binary_data_size": 8}}]}
    ).encode()
    short = client.post(
        INFER, content=header + b"\0" * 4, headers={"Inference-Header-Content-Length": str(len(header))}
    )
    assert "binary_data_size 8 does not fit the 4 bytes" in error(short)
    bad_length = client.post(INFER, content=header, headers={"Inference-Header-Content-Length": "lots"})
    assert "Inference-Header-Content-Length must be a whole number" in error(bad_length)


def test_not_ready_answers_in_the_protocols_shape(tmp_path):
    with TestClient(make_app(tmp_path / "no-model.zip")) as c:
        assert c.get("/v2/health/live").status_code == 200
        ready = c.get("/v2/health/ready")
        assert ready.status_code == 400 and ready.json()["ready"] is False and "model" in ready.json()["error"]
        assert c.get(f"/v2/models/{NAME}/ready").status_code == 400
        r = post(c, tensors([EXAMPLE]))
        assert r.status_code == 503 and r.json()["error"].startswith("model not ready:")


# --------------------------------------------------------------------------- observability


def test_v2_is_traced_counted_and_logged_like_predict(client, spans):
    path = client.app.state.serving.settings.prediction_log
    before = len(path.read_text().splitlines()) if path.exists() else 0
    spans.clear()
    records = [EXAMPLE, {"age": 40, "gender": "female"}]
    r = post(client, tensors(records), id="req-7")
    body = r.json()
    trace_id = body["parameters"]["trace_id"]
    assert body["id"] == "req-7" and r.headers["x-trace-id"] == trace_id
    inference = [s for s in spans.get_finished_spans() if s.name == "inference"]
    assert len(inference) == 1 and inference[0].attributes["batch.size"] == 2
    assert inference[0].attributes["http.route.endpoint"] == "v2"
    lines = [json.loads(line) for line in path.read_text().splitlines()[before:]]
    assert [line["trace_id"] for line in lines] == [trace_id, trace_id]
    assert [line["probability"] for line in lines] == body["outputs"][1]["data"]
    assert lines[1]["imputed"] == [n for n in FEATURE_NAMES if n not in ("age", "gender")]
    text = client.get("/metrics").text
    assert 'heart_inference_duration_seconds_count{endpoint="v2",engine="onnxruntime"}' in text
    assert 'heart_http_requests_total{method="POST",route="/v2/models/{name}/infer",status="200"}' in text


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_infer_refuses_a_body_that_is_not_json_or_binary_tensors(client, content_type):
    body = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [1, 13],
                    "datatype": "FP64",
                    "data": [63, 1, 3, 145, 233, 1, 0, 150, 0, 2.3, 0, 0, 1],
                }
            ]
        }
    )
    r = client.post("/v2/models/heart-disease/infer", content=body, headers={"content-type": content_type})
    assert r.status_code == 415 and "application/json" in r.json()["error"]
    ok = client.post("/v2/models/heart-disease/infer", content=body, headers={"content-type": "application/json"})
    assert ok.status_code == 200, ok.text
