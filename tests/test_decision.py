"""One decision rule: class 1 iff P(disease) >= the card's threshold, the same everywhere."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sklearn.base import BaseEstimator, ClassifierMixin

from heart.analyses import fairness
from heart.decision import decide, threshold_of
from heart.export import save_model
from heart.fast import OnnxPredictor, SklearnPredictor, build_predictor
from heart.model import compute_metrics, split_by_labels
from heart.samples import sample, to_records
from heart.schema import FEATURE_NAMES


def test_decide_is_greater_or_equal():
    t = 0.37
    assert decide([np.nextafter(t, 0), t, np.nextafter(t, 1)], t).tolist() == [0, 1, 1]
    assert decide(0.5).tolist() == [1] and decide(0.5).dtype.kind == "i"
    assert threshold_of({"threshold": 0.3}) == 0.3 and threshold_of({}) == 0.5 and threshold_of(None) == 0.5


def test_decide_reads_probabilities_spelled_as_text_or_missing():
    # A probability read back from a CSV or a JSON log can arrive as text: "0.5" is at the
    # threshold, so class 1, the same as the float 0.5; a missing one (None -> NaN) is never
    # at or above any threshold, so it can never be called disease.
    assert decide(["0.7", "0.3", "0.5", "5e-1"], 0.5).tolist() == [1, 0, 1, 1]
    assert decide([None, 0.9, None], 0.5).tolist() == [0, 1, 0]
    assert decide(None, 0.0).tolist() == [0]


def test_metrics_put_a_probability_at_the_threshold_in_class_1():
    y = np.array([1, 0, 1, 0])
    at = compute_metrics(y, np.array([0.4, 0.4, 0.4, 0.1]), threshold=0.4)
    assert at["recall"] == 1.0 and at["specificity"] == 0.5
    below = compute_metrics(y, np.array([0.4, 0.4, 0.4, 0.1]), threshold=np.nextafter(0.4, 1))
    assert below["recall"] == 0.0 and below["specificity"] == 1.0


class Constant(ClassifierMixin, BaseEstimator):
    """P(disease) = p for every row: the tie case, exactly."""

    def __init__(self, p=0.5):
        self.p = p

    def fit(self, X, y):
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X):
        return np.column_stack([np.full(len(X), 1 - self.p), np.full(len(X), self.p)])

    def predict(self, X):  # sklearn's argmax: a 0.5 tie goes to class 0, which the rule must not use
        return self.predict_proba(X).argmax(axis=1)


@pytest.mark.parametrize("threshold, expected", [(0.5, 1.0), (np.nextafter(0.5, 1), 0.0)])
def test_fairness_puts_a_probability_at_the_threshold_in_class_1(dataset, threshold, expected):
    train_idx, test_idx = split_by_labels(dataset.y)
    model = Constant(0.5).fit(None, None)
    result = fairness.analyze(
        model, Constant(0.5), dataset.X, dataset.y, train_idx, test_idx, n_boot=10, threshold=threshold, n_jobs=1
    )
    assert result.held_out.overall["selection_rate"] == expected
    assert result.out_of_fold.overall["selection_rate"] == expected


@pytest.fixture(scope="module")
def predictors(loaded, artifact):
    return {"sklearn": SklearnPredictor(loaded.pipeline), "onnxruntime": OnnxPredictor(artifact.onnx)}


@pytest.mark.parametrize("engine", ["sklearn", "onnxruntime"])
def test_fast_path_puts_a_probability_at_the_threshold_in_class_1(predictors, dataset, engine):
    predictor = predictors[engine]
    X = dataset.X.to_numpy(dtype=float)
    p = predictor.predict_proba(X)
    for k in (0, 1, 2):
        predictor.threshold = p[k]  # the row sits exactly on the threshold
        assert predictor.predict(X[[k]])[0].tolist() == [1]
        predictor.threshold = np.nextafter(p[k], 1)
        assert predictor.predict(X[[k]])[0].tolist() == [0]
    predictor.threshold = 0.5


@pytest.mark.parametrize("engine", ["sklearn", "onnx"])
def test_both_engines_decide_10000_random_patients_by_the_rule(loaded, artifact, engine):
    threshold = 0.41
    model = dataclasses.replace(artifact, card={**artifact.card, "threshold": threshold})
    predictor, _ = build_predictor(model, engine, lambda: loaded.pipeline)
    assert predictor.threshold == threshold
    X = sample(10_000, seed=5).to_numpy(dtype=float)
    classes, proba = predictor.predict(X)
    np.testing.assert_array_equal(classes, (proba >= threshold).astype(int))
    assert 0.2 < classes.mean() < 0.8  # both classes, so the check bites


@pytest.fixture(scope="module")
def client_at(loaded, dataset, tmp_path_factory):
    """The API on the test model saved again with a card that says threshold 0.41 (not 0.5)."""
    from tests.support import make_app

    dst = tmp_path_factory.mktemp("threshold") / "model.zip"
    card = {k: v for k, v in loaded.card.items() if k not in ("artifact", "model_version")}
    save_model(loaded.pipeline, {**card, "threshold": 0.41}, dst, dataset.X)
    app = make_app(dst, dst.parent)
    with TestClient(app) as c:
        assert app.state.serving.wait(60)
        yield c


def test_predict_decides_10000_random_patients_by_the_card_threshold(client_at, loaded):
    patients = to_records(sample(10_000, seed=9))
    got = []
    for i in range(0, len(patients), 1000):
        r = client_at.post("/predict/batch", json={"instances": patients[i : i + 1000]})
        assert r.status_code == 200, r.text
        got += r.json()["predictions"]
    cls = np.array([g["predicted_class"] for g in got])
    prob = np.array([g["probability"] for g in got])
    np.testing.assert_array_equal(cls, (prob >= 0.41).astype(int))
    assert 0.2 < cls.mean() < 0.8 and ((prob >= 0.41) & (prob < 0.5)).sum() > 50  # 0.5 would decide these otherwise
    for p in patients[:100]:
        one = client_at.post("/predict", json=p).json()
        assert one["predicted_class"] == int(one["probability"] >= 0.41)


def test_explain_decides_by_the_card_threshold(client_at, loaded, dataset):
    proba = loaded.pipeline.predict_proba(dataset.X)[:, 1]
    k = int(np.flatnonzero((proba >= 0.41) & (proba < 0.5))[0])
    patient = {n: (None if pd.isna(v) else float(v)) for n, v in zip(FEATURE_NAMES, dataset.X.iloc[k])}
    patient["gender"] = "male" if patient["gender"] == 1 else "female"
    body = client_at.post("/explain", json={n: v for n, v in patient.items() if v is not None}).json()
    assert 0.41 <= body["probability"] < 0.5 and body["predicted_class"] == 1
