"""Build, cross-validate and train the one model Pipeline, and describe the result in a card.

The saved artifact is the whole sklearn Pipeline (imputation and encoding inside), so any
code that loads model.joblib preprocesses exactly as training did. Saving, hashing and the
verified load live in heart.artifact.
"""
from __future__ import annotations

import os
import platform
from itertools import product
from dataclasses import dataclass, field
from datetime import datetime, timezone

import joblib
import numpy as np
import pandas as pd
import sklearn
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, brier_score_loss, f1_score, recall_score, roc_auc_score
from sklearn.model_selection import RepeatedStratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from . import __version__
from .data import Dataset
from .schema import FEATURE_NAMES, FEATURES, TARGET, describe

DEFAULT_SEED = 42
DEFAULT_TEST_SIZE = 0.2
CV_SPLITS, CV_REPEATS = 5, 5
# Chosen by `python train.py --tune` (grid search on the CV folds of the training part only;
# see readme.md "Model"): shallow trees on one candidate feature per split generalise best
# on 242 training rows.
FOREST_DEFAULTS = dict(n_estimators=300, max_features=1, min_samples_leaf=5, max_depth=5)
TUNING_GRID = dict(max_features=[1, 2, "sqrt"], min_samples_leaf=[2, 3, 5, 8], max_depth=[3, 4, 5, None])
METRICS = ("accuracy", "roc_auc", "recall", "specificity", "f1", "brier")


def build_preprocessor(scale: bool = False) -> ColumnTransformer:
    """Median-impute ordered columns; mode-impute and one-hot the nominal categories.

    Missing values (NaN) are imputed here, inside the Pipeline, never by the caller.
    """
    nominal = [f.name for f in FEATURES if f.nominal]
    ordered = [f.name for f in FEATURES if not f.nominal]
    numeric = make_pipeline(SimpleImputer(strategy="median"), StandardScaler()) if scale \
        else SimpleImputer(strategy="median")
    categorical = make_pipeline(SimpleImputer(strategy="most_frequent"),
                                OneHotEncoder(handle_unknown="ignore", sparse_output=False))
    return ColumnTransformer([("numeric", numeric, ordered), ("nominal", categorical, nominal)],
                             verbose_feature_names_out=False)


def build_forest(seed: int = DEFAULT_SEED, **params) -> Pipeline:
    forest = RandomForestClassifier(random_state=seed, n_jobs=1, **{**FOREST_DEFAULTS, **params})
    return Pipeline([("preprocess", build_preprocessor()), ("model", forest)])


def build_baseline(seed: int = DEFAULT_SEED) -> Pipeline:
    """One-hot logistic regression: the bar the forest has to clear to earn its place."""
    return Pipeline([("preprocess", build_preprocessor(scale=True)),
                     ("model", LogisticRegression(max_iter=1000, random_state=seed))])


def split_by_labels(y: np.ndarray, test_size: float = DEFAULT_TEST_SIZE, seed: int = DEFAULT_SEED
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train/test row indices; every script that needs 'the held-out split' calls this."""
    y = np.asarray(y)
    idx = np.arange(len(y))
    train_idx, test_idx = train_test_split(idx, test_size=test_size, stratify=y, random_state=seed)
    return np.sort(train_idx), np.sort(test_idx)


def compute_metrics(y_true: np.ndarray, proba: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    y_true = np.asarray(y_true)
    pred = (np.asarray(proba) >= threshold).astype(int)
    return {
        "accuracy": float(accuracy_score(y_true, pred)),
        "roc_auc": float(roc_auc_score(y_true, proba)) if len(np.unique(y_true)) == 2 else float("nan"),
        "recall": float(recall_score(y_true, pred, pos_label=1, zero_division=0)),
        "specificity": float(recall_score(y_true, pred, pos_label=0, zero_division=0)),
        "f1": float(f1_score(y_true, pred, zero_division=0)),
        "brier": float(brier_score_loss(y_true, proba)),
    }


def predict_proba(pipeline: Pipeline, X: pd.DataFrame) -> np.ndarray:
    """Probability of heart disease (class 1) for each row."""
    return pipeline.predict_proba(X[list(FEATURE_NAMES)])[:, 1]


def cross_validate(pipeline: Pipeline, X: pd.DataFrame, y: np.ndarray, seed: int = DEFAULT_SEED,
                   n_jobs: int = 2) -> dict[str, dict[str, float]]:
    """5x5 repeated stratified CV: mean and sd of every metric over the 25 folds."""
    cv = RepeatedStratifiedKFold(n_splits=CV_SPLITS, n_repeats=CV_REPEATS, random_state=seed)
    # Threads, not loky processes: the forest's fit releases the GIL, so 25 folds of ~240 rows run as
    # fast with identical scores (issue 12: 64 and 93 s on threads, 74 and 81 s on loky, same busy
    # 2-core machine), and a killed train.py leaves no worker processes behind.
    folds = joblib.Parallel(n_jobs=n_jobs, backend="threading")(
        joblib.delayed(_fold)(clone(pipeline), X, y, tr, te) for tr, te in cv.split(X, y))
    return {m: {"mean": float(np.mean([f[m] for f in folds])), "sd": float(np.std([f[m] for f in folds], ddof=1))}
            for m in METRICS}


def _fold(pipeline: Pipeline, X: pd.DataFrame, y: np.ndarray, tr: np.ndarray, te: np.ndarray) -> dict:
    pipeline.fit(X.iloc[tr], y[tr])
    return compute_metrics(y[te], predict_proba(pipeline, X.iloc[te]))


def tune(X: pd.DataFrame, y: np.ndarray, seed: int = DEFAULT_SEED, grid: dict | None = None,
         n_jobs: int = 2) -> tuple[dict, list[dict]]:
    """Grid search of the forest on CV folds of the data given (the training part only)."""
    grid = grid or TUNING_GRID
    keys = list(grid)
    results = []
    for values in product(*(grid[k] for k in keys)):
        params = dict(zip(keys, values))
        cv = cross_validate(build_forest(seed, **params), X, y, seed, n_jobs)
        results.append({**params, "cv_roc_auc": cv["roc_auc"]["mean"], "cv_roc_auc_sd": cv["roc_auc"]["sd"]})
    results.sort(key=lambda r: -r["cv_roc_auc"])
    best = {k: results[0][k] for k in keys}
    return best, results


@dataclass
class TrainResult:
    pipeline: Pipeline
    params: dict
    metrics: dict  # {"random_forest"|"logistic_regression": {"test": {...}, "cv": {...}}}
    train_idx: np.ndarray
    test_idx: np.ndarray
    tuning: list[dict] = field(default_factory=list)


def train(data: Dataset, seed: int = DEFAULT_SEED, test_size: float = DEFAULT_TEST_SIZE,
          params: dict | None = None, cv: bool = True, tune_grid: dict | None = None,
          n_jobs: int = 2) -> TrainResult:
    """Split, (optionally tune and) cross-validate on the training part, fit, score on the test part."""
    X, y = data.X, data.y
    train_idx, test_idx = split_by_labels(y, test_size, seed)
    X_tr, y_tr, X_te, y_te = X.iloc[train_idx], y[train_idx], X.iloc[test_idx], y[test_idx]
    params = dict(params or {})
    tuning = []
    if tune_grid is not None:
        best, tuning = tune(X_tr, y_tr, seed, tune_grid, n_jobs)
        params.update(best)
    candidates = {"random_forest": build_forest(seed, **params), "logistic_regression": build_baseline(seed)}
    metrics, fitted = {}, {}
    for name, pipe in candidates.items():
        entry = {}
        if cv:
            entry["cv"] = cross_validate(pipe, X_tr, y_tr, seed, n_jobs)
        fitted[name] = clone(pipe).fit(X_tr, y_tr)
        entry["test"] = compute_metrics(y_te, predict_proba(fitted[name], X_te))
        metrics[name] = entry
    forest_params = {**FOREST_DEFAULTS, **params}
    return TrainResult(fitted["random_forest"], forest_params, metrics, train_idx, test_idx, tuning)


def build_card(result: TrainResult, data: Dataset, seed: int, test_size: float) -> dict:
    """Everything a reader needs to trust (or not) the artifact, except its hash (added on save)."""
    forest = result.pipeline.named_steps["model"]
    return {
        "name": "heart-disease-random-forest",
        "package_version": __version__,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "intended_use": ("Teaching and reference MLOps service: estimates the probability of "
                         "angiographic heart disease from 13 clinical measurements. Not a medical "
                         "device; not for diagnosis or treatment decisions."),
        "limitations": ("Trained on 303 patients from one hospital (Cleveland Clinic, 1988), "
                        "mostly men; calibration and fairness across groups are limited by that sample."),
        "data": {
            "file": os.path.basename(data.source),
            "sha256": data.sha256,
            "rows": data.n_rows,
            "class_balance": data.class_balance(),
            "missing_values": {k: v for k, v in data.missing.items() if v},
            "legacy_sentinels_read_as_missing": data.sentinels,
        },
        "split": {"method": "stratified train/test split", "seed": seed, "test_size": test_size,
                  "train_rows": int(len(result.train_idx)), "test_rows": int(len(result.test_idx))},
        "cross_validation": {"method": "repeated stratified k-fold on the training part",
                             "splits": CV_SPLITS, "repeats": CV_REPEATS, "seed": seed},
        "features": describe(),
        "target": {"name": TARGET.name, "description": TARGET.description, "positive_class": 1,
                   "labels": {str(k): v for k, v in TARGET.labels.items()}},
        "model": {
            "type": "sklearn Pipeline: ColumnTransformer (median / most-frequent imputation, "
                    "one-hot for nominal categories) -> RandomForestClassifier",
            "input_columns": list(FEATURE_NAMES),
            "transformed_columns": [str(c) for c in result.pipeline.named_steps["preprocess"].get_feature_names_out()],
            "hyperparameters": {k: _jsonable(v) for k, v in forest.get_params().items()},
            "threshold": 0.5,
        },
        "metrics": result.metrics,
        "tuning": result.tuning[:10],
        "libraries": {"python": platform.python_version(), "scikit-learn": sklearn.__version__,
                      "numpy": np.__version__, "pandas": pd.__version__, "joblib": joblib.__version__},
    }


def _jsonable(v):
    return v if isinstance(v, (int, float, str, bool, type(None))) else str(v)


# --- what the analyses need from a saved model (fairness, poisoning, explainability) ---

def forest_from_card(card: dict) -> Pipeline:
    """A fresh, unfitted Pipeline with the card's hyperparameters, for refits (CV, poisoning)."""
    params = dict(card["model"]["hyperparameters"])
    seed = params.pop("random_state", None)
    params.pop("n_jobs", None)
    if seed is None:
        seed = card["split"]["seed"]
    return build_forest(int(seed), **params)


def card_split(card: dict, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The held-out split the model was scored on (seed and test size from its card)."""
    return split_by_labels(y, card["split"]["test_size"], card["split"]["seed"])
