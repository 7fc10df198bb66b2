"""Training quality, reproducibility, and what the model card says about training."""
from __future__ import annotations

import json

import numpy as np

from heart import model as M
from heart.artifact import save_model, sha256_bytes
from heart.model import build_forest, cross_validate, predict_proba, split_by_labels, train


def test_card_describes_the_artifact(loaded, model_path, dataset):
    card = loaded.card
    assert card["artifact"]["sha256"] == sha256_bytes(model_path.read_bytes())
    assert card["model_version"].endswith(card["artifact"]["pipeline_sha256"][:12])
    assert card["data"]["sha256"] == dataset.sha256 and card["data"]["rows"] == 303
    assert card["data"]["class_balance"] == {"heart disease": 139, "no heart disease": 164}
    assert len(card["features"]) == 13
    assert card["model"]["hyperparameters"]["n_estimators"] == M.FOREST_DEFAULTS["n_estimators"]
    assert set(card["metrics"]) == {"random_forest", "logistic_regression"}
    assert set(card["metrics"]["random_forest"]["test"]) == set(M.METRICS)
    assert card["libraries"]["scikit-learn"]
    json.dumps(card, allow_nan=False)


def test_forest_meets_the_cv_quality_bar(dataset):
    """5x5 repeated stratified CV on the training part: a regression guard on the tuned forest."""
    train_idx, _ = split_by_labels(dataset.y)
    cv = cross_validate(build_forest(), dataset.X.iloc[train_idx], dataset.y[train_idx])
    assert cv["roc_auc"]["mean"] >= 0.90, cv["roc_auc"]
    assert 0 < cv["roc_auc"]["sd"] < 0.1


def test_two_runs_give_identical_predictions_and_artifacts(dataset, trained, tmp_path):
    again = train(dataset, cv=False)
    np.testing.assert_array_equal(predict_proba(again.pipeline, dataset.X), predict_proba(trained.pipeline, dataset.X))
    a = save_model(trained.pipeline, {}, tmp_path / "a.joblib")
    b = save_model(again.pipeline, {}, tmp_path / "b.joblib")
    assert a["artifact"]["sha256"] == b["artifact"]["sha256"]


def test_the_seed_changes_the_model(dataset, trained):
    other = train(dataset, seed=7, cv=False)
    assert not np.array_equal(predict_proba(other.pipeline, dataset.X), predict_proba(trained.pipeline, dataset.X))


def test_held_out_rows_are_not_trained_on(dataset, trained):
    assert not set(trained.train_idx) & set(trained.test_idx)
    assert len(trained.test_idx) == 61 and len(trained.train_idx) == 242
    assert trained.pipeline.named_steps["model"].n_features_in_ >= 13
