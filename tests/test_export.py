"""What train.py writes: the Pipeline, a graph that matches it, the reference rows with the Pipeline's
own probabilities, and a card that describes them; nothing when the graph does not match."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import joblib
import numpy as np
import pytest

import heart
from heart import export
from heart.artifact import ModelError, card_path_for, read_artifact
from heart.export import parity_rows, save_model
from heart.fast import PARITY_TOLERANCE, SklearnPredictor
from heart.schema import FEATURE_NAMES


@pytest.fixture(scope="module")
def members(model_path) -> dict[str, bytes]:
    with zipfile.ZipFile(model_path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def test_the_reference_is_the_training_data_then_2000_seeded_samples_with_the_pipelines_probabilities(
    members, loaded, dataset
):
    npz = np.load(io.BytesIO(members["reference.npz"]), allow_pickle=False)
    assert sorted(npz.files) == ["X", "classes", "data_rows", "proba"]
    X = parity_rows(2000, seed=0, missing_rate=0.2, data=dataset.X)
    np.testing.assert_array_equal(npz["X"], X)  # NaN where missing
    np.testing.assert_array_equal(npz["proba"], SklearnPredictor(loaded.pipeline).predict_proba(X))
    assert npz["classes"].tolist() == [0, 1] and int(npz["data_rows"]) == 303


def test_the_members_are_the_pipeline_its_graph_and_a_card_naming_them(members, loaded, model_path):
    assert list(members) == ["card.json", "model.onnx", "reference.npz", "pipeline.joblib"]
    pipeline = joblib.load(io.BytesIO(members["pipeline.joblib"]))
    assert list(pipeline.feature_names_in_) == list(FEATURE_NAMES)
    card = json.loads(members["card.json"])
    digest = hashlib.sha256(members["pipeline.joblib"]).hexdigest()
    assert card["model_version"] == f"{heart.__version__}-{digest[:12]}"
    block = card["artifact"]
    assert block["format"] == "heart-model/3" and block["features"] == list(FEATURE_NAMES)
    assert block["pipeline_sha256"] == digest
    assert block["onnx_sha256"] == hashlib.sha256(members["model.onnx"]).hexdigest()
    reference = block["reference"]
    assert (reference["rows"], reference["data_rows"], reference["samples"], reference["seed"]) == (2303, 303, 2000, 0)
    assert 0 < reference["onnx_max_abs_diff"] <= reference["tolerance"] == PARITY_TOLERANCE
    served = read_artifact(model_path).card
    assert served == {
        **card,
        "artifact": {
            **block,
            "file": "model.zip",
            "sha256": served["artifact"]["sha256"],
            "bytes": model_path.stat().st_size,
        },
    }
    assert json.loads(card_path_for(model_path).read_text()) == served


def test_model_version_comes_from_the_pipeline_bytes_alone(trained, dataset, tmp_path):
    a = save_model(trained.pipeline, {"created": "monday"}, tmp_path / "a" / "model.zip")
    b = save_model(trained.pipeline, {"created": "tuesday"}, tmp_path / "b" / "model.zip", dataset.X)
    assert a["model_version"] == b["model_version"] and a["artifact"]["sha256"] != b["artifact"]["sha256"]
    assert a["artifact"]["reference"]["data_rows"] == 0 and a["artifact"]["reference"]["rows"] == 2000
    card = save_model(trained.pipeline, {"model_version": "ignored"}, tmp_path / "c.zip")
    assert card["model_version"] == a["model_version"] != "ignored"


def test_a_graph_that_does_not_match_the_pipeline_is_never_written(trained, dataset, tmp_path, monkeypatch):
    from heart.model import build_forest

    other = build_forest(calibration=None, n_estimators=3, max_depth=2).fit(dataset.X, dataset.y)
    monkeypatch.setattr(export, "to_onnx", lambda pipeline, real=export.to_onnx: real(other))
    path = tmp_path / "model.zip"
    with pytest.raises(ModelError, match=r"^the ONNX conversion of this Pipeline is not written: onnxruntime does "):
        save_model(trained.pipeline, {}, path, dataset.X)
    assert list(tmp_path.iterdir()) == []
