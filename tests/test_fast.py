"""The ONNX fast path matches the sklearn Pipeline, and anything that does not is never served."""

import numpy as np
import pytest

from heart import fast
from heart.decision import decide
from heart.fast import OnnxPredictor, SklearnPredictor, build_predictor, check_parity, parity_rows
from heart.schema import FEATURES


@pytest.fixture(scope="module")
def onnx(loaded):
    return OnnxPredictor(loaded.pipeline)


def test_parity_on_every_data_row(loaded, dataset, onnx):
    X = dataset.X.to_numpy(dtype=float)
    assert np.isnan(X).any(), "the data's own missing values (ca, thal) are part of the check"
    parity = check_parity(SklearnPredictor(loaded.pipeline), onnx, X)
    assert parity.rows == 303
    assert parity.class_mismatches == 0
    assert parity.max_abs_diff <= fast.PARITY_TOLERANCE


def test_parity_on_10000_schema_samples_with_missing_values(loaded, onnx):
    X = parity_rows(10_000, seed=7, missing_rate=0.3)
    optional = [i for i, f in enumerate(FEATURES) if not f.required]
    assert np.isnan(X[:, optional]).mean() > 0.2 and not np.isnan(X[:, [0, 1]]).any()
    ref_class, ref_p = SklearnPredictor(loaded.pipeline).predict(X)
    got_class, got_p = onnx.predict(X)
    assert (ref_class == got_class).all()
    assert np.abs(ref_p - got_p).max() <= fast.PARITY_TOLERANCE
    assert (
        ref_class
        == decide(
            loaded.pipeline.predict_proba(__import__("pandas").DataFrame(X, columns=[f.name for f in FEATURES]))[:, 1]
        )
    ).all(), "SklearnPredictor decides the Pipeline's probability"


def test_build_predictor_chooses_onnx_when_parity_holds(loaded):
    predictor, parity = build_predictor(loaded.pipeline, parity_rows(500))
    assert predictor.engine == "onnxruntime" and parity.ok and not parity.fallback


def test_parity_failure_falls_back_to_sklearn_and_says_why(loaded, monkeypatch, caplog):
    real = OnnxPredictor.predict

    def drifted(self, X):
        classes, p = real(self, X)
        return classes, p + 1e-4  # a converter bug we must never serve (10x the tolerance)

    monkeypatch.setattr(OnnxPredictor, "predict", drifted)
    with caplog.at_level("WARNING", logger="heart.fast"):
        predictor, parity = build_predictor(loaded.pipeline, parity_rows(200))
    assert predictor.engine == "sklearn" and parity.fallback and not parity.ok
    assert "parity check failed" in parity.reason and f"{fast.PARITY_TOLERANCE:.0e}" in parity.reason
    assert any(r.getMessage() == "fast_path_fallback" for r in caplog.records)


def test_conversion_failure_falls_back_to_sklearn(loaded, monkeypatch):
    def broken(self, pipeline):
        raise RuntimeError("unsupported step")

    monkeypatch.setattr(OnnxPredictor, "__init__", broken)
    predictor, parity = build_predictor(loaded.pipeline, parity_rows(50))
    assert predictor.engine == "sklearn" and "conversion failed" in parity.reason


def test_sklearn_engine_by_configuration_and_unknown_engine(loaded):
    predictor, parity = build_predictor(loaded.pipeline, parity_rows(10), engine="sklearn")
    assert isinstance(predictor, SklearnPredictor) and "configuration" in parity.reason
    with pytest.raises(ValueError, match="unknown inference engine"):
        build_predictor(loaded.pipeline, parity_rows(10), engine="gpu")


def test_the_converted_graph_does_not_change_the_pipeline(loaded):
    before = list(loaded.pipeline.named_steps["preprocess"].transformers_[0][2])
    fast._positional(loaded.pipeline)
    assert list(loaded.pipeline.named_steps["preprocess"].transformers_[0][2]) == before
    assert list(loaded.pipeline.feature_names_in_)[0] == "age"
