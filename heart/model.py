"""Build, cross-validate and train the one model Pipeline, and describe the result in a card.

The Pipeline is saved whole (imputation and encoding inside), with the ONNX graph made from it,
so anything that predicts from model.zip preprocesses exactly as training did. Writing it is
heart.export's business; reading, hashing and verifying it heart.artifact's.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import product

import joblib
import numpy as np
import pandas as pd
import sklearn
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, brier_score_loss, f1_score, recall_score, roc_auc_score
from sklearn.model_selection import RepeatedStratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.utils.parallel import Parallel, delayed

from . import __version__
from .data import Dataset
from .decision import DEFAULT_THRESHOLD, decide
from .progress import SILENT, Stage, Stages
from .schema import FEATURE_NAMES, FEATURES, TARGET, describe

DEFAULT_SEED = 42
DEFAULT_TEST_SIZE = 0.2
CV_SPLITS, CV_REPEATS = 5, 5
# Chosen by `python train.py --tune` (grid search on the CV folds of the training part only;
# see readme.md "Model"): shallow trees on one candidate feature per split generalise best
# on 242 training rows.
FOREST_DEFAULTS = dict(n_estimators=300, max_features=1, min_samples_leaf=5, max_depth=5)
# Forest probabilities are squeezed towards the middle (Brier 0.147 on 5x5 CV over all rows);
# a sigmoid (Platt) map fitted on 5-fold out-of-fold forest scores brings Brier to 0.118 with
# the same ROC AUC (docs/model.md, "Calibration"; `python -m bench.calibration`). ensemble=False:
# one forest fitted on all training rows, one sigmoid; the map is monotone, so the ranking (and
# the SHAP attribution, heart/attribution.py) stays the forest's.
CALIBRATION = dict(method="sigmoid", cv=5, ensemble=False)
RELIABILITY_BINS = 10
TUNING_GRID = dict(max_features=[1, 2, "sqrt"], min_samples_leaf=[2, 3, 5, 8], max_depth=[3, 4, 5, None])
METRICS = ("accuracy", "roc_auc", "recall", "specificity", "f1", "brier")


def build_preprocessor(scale: bool = False) -> ColumnTransformer:
    """Median-impute ordered columns; mode-impute and one-hot the nominal categories.

    Missing values (NaN) are imputed here, inside the Pipeline, never by the caller.
    """
    nominal = [f.name for f in FEATURES if f.nominal]
    ordered = [f.name for f in FEATURES if not f.nominal]
    numeric = (
        make_pipeline(SimpleImputer(strategy="median"), StandardScaler()) if scale else SimpleImputer(strategy="median")
    )
    categorical = make_pipeline(
        SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore", sparse_output=False)
    )
    return ColumnTransformer(
        [("numeric", numeric, ordered), ("nominal", categorical, nominal)], verbose_feature_names_out=False
    )


def build_forest(seed: int = DEFAULT_SEED, calibration: dict | None = CALIBRATION, **params) -> Pipeline:
    """The served Pipeline: preprocessing, then the forest inside CalibratedClassifierCV.

    calibration=None gives the bare forest (tuning: the sigmoid map does not change ROC AUC).
    """
    forest = RandomForestClassifier(random_state=seed, n_jobs=1, **{**FOREST_DEFAULTS, **params})
    model = CalibratedClassifierCV(forest, **calibration) if calibration else forest
    return Pipeline([("preprocess", build_preprocessor()), ("model", model)])


def forest_of(pipeline: Pipeline) -> RandomForestClassifier:
    """The (unfitted template) forest inside the Pipeline, calibrated or not."""
    model = pipeline.named_steps["model"]
    return model.estimator if isinstance(model, CalibratedClassifierCV) else model


def build_baseline(seed: int = DEFAULT_SEED) -> Pipeline:
    """One-hot logistic regression: the bar the forest has to clear to earn its place."""
    return Pipeline(
        [
            ("preprocess", build_preprocessor(scale=True)),
            ("model", LogisticRegression(max_iter=1000, random_state=seed)),
        ]
    )


def split_by_labels(
    y: np.ndarray, test_size: float = DEFAULT_TEST_SIZE, seed: int = DEFAULT_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train/test row indices; every script that needs 'the held-out split' calls this."""
    y = np.asarray(y)
    idx = np.arange(len(y))
    train_idx, test_idx = train_test_split(idx, test_size=test_size, stratify=y, random_state=seed)
    return np.sort(train_idx), np.sort(test_idx)


def compute_metrics(y_true: np.ndarray, proba: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> dict[str, float]:
    y_true = np.asarray(y_true)
    pred = decide(proba, threshold)
    return {
        "accuracy": float(accuracy_score(y_true, pred)),
        "roc_auc": float(roc_auc_score(y_true, proba)) if len(np.unique(y_true)) == 2 else float("nan"),
        "recall": float(recall_score(y_true, pred, pos_label=1, zero_division=0)),
        "specificity": float(recall_score(y_true, pred, pos_label=0, zero_division=0)),
        "f1": float(f1_score(y_true, pred, zero_division=0)),
        "brier": float(brier_score_loss(y_true, proba)),
    }


def reliability(y_true: np.ndarray, proba: np.ndarray, bins: int = RELIABILITY_BINS) -> list[dict]:
    """Reliability diagram: per equal-width probability bin, rows, mean predicted and observed rate.

    A calibrated model has observed_rate close to mean_predicted in every well-filled bin.
    """
    y_true, proba = np.asarray(y_true, dtype=float), np.asarray(proba, dtype=float)
    which = np.minimum((proba * bins).astype(int), bins - 1)
    out = []
    for b in range(bins):
        mask = which == b
        n = int(mask.sum())
        out.append(
            {
                "low": b / bins,
                "high": (b + 1) / bins,
                "count": n,
                "mean_predicted": float(proba[mask].mean()) if n else None,
                "observed_rate": float(y_true[mask].mean()) if n else None,
            }
        )
    return out


def predict_proba(pipeline: Pipeline, X: pd.DataFrame) -> np.ndarray:
    """Probability of heart disease (class 1) for each row."""
    return pipeline.predict_proba(X[list(FEATURE_NAMES)])[:, 1]


def cross_validate(
    pipeline: Pipeline,
    X: pd.DataFrame,
    y: np.ndarray,
    seed: int = DEFAULT_SEED,
    n_jobs: int = 2,
    repeats: int = CV_REPEATS,
    progress: Stage | None = None,
) -> dict[str, dict[str, float]]:
    """5 x `repeats` stratified CV: mean and sd of every metric over the folds, and the
    reliability diagram of the pooled out-of-fold predictions (each row once per repeat).
    `progress` is told of each fold as it is done."""
    cv = RepeatedStratifiedKFold(n_splits=CV_SPLITS, n_repeats=repeats, random_state=seed)
    # Threads, not loky processes: the forest's fit releases the GIL, so 25 folds of ~240 rows run as
    # fast with identical scores (issue 12: 64 and 93 s on threads, 74 and 81 s on loky, same busy
    # 2-core machine), and a killed train.py leaves no worker processes behind.
    folds = []
    # scikit-learn's Parallel/delayed: the folds' fits see the caller's sklearn config (set_config).
    for fold in Parallel(n_jobs=n_jobs, backend="threading", return_as="generator")(
        delayed(_fold)(clone(pipeline), X, y, tr, te) for tr, te in cv.split(X, y)
    ):
        folds.append(fold)
        if progress is not None:
            progress.update()
    out = {
        m: {"mean": float(np.mean([f[0][m] for f in folds])), "sd": float(np.std([f[0][m] for f in folds], ddof=1))}
        for m in METRICS
    }
    out["reliability"] = reliability(np.concatenate([f[1] for f in folds]), np.concatenate([f[2] for f in folds]))
    return out


def _fold(pipeline: Pipeline, X: pd.DataFrame, y: np.ndarray, tr: np.ndarray, te: np.ndarray) -> tuple:
    pipeline.fit(X.iloc[tr], y[tr])
    proba = predict_proba(pipeline, X.iloc[te])
    return compute_metrics(y[te], proba), y[te], proba


def tune(
    X: pd.DataFrame,
    y: np.ndarray,
    seed: int = DEFAULT_SEED,
    grid: dict | None = None,
    n_jobs: int = 2,
    stages: Stages = SILENT,
) -> tuple[dict, list[dict]]:
    """Grid search of the forest on CV folds of the data given (the training part only).

    Scored without calibration: the sigmoid map is monotone, so it leaves ROC AUC as it is.
    """
    grid = grid or TUNING_GRID
    keys = list(grid)
    results = []
    candidates = list(product(*(grid[k] for k in keys)))
    with stages.stage(f"tuning: {CV_SPLITS}x{CV_REPEATS} CV per candidate", len(candidates), "candidates") as bar:
        for values in candidates:
            params = dict(zip(keys, values))
            cv = cross_validate(build_forest(seed, calibration=None, **params), X, y, seed, n_jobs)
            results.append({**params, "cv_roc_auc": cv["roc_auc"]["mean"], "cv_roc_auc_sd": cv["roc_auc"]["sd"]})
            bar.update()
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
    reliability: dict = field(default_factory=dict)  # {"cv_out_of_fold"|"test": reliability bins} of the served model


def train(
    data: Dataset,
    seed: int = DEFAULT_SEED,
    test_size: float = DEFAULT_TEST_SIZE,
    params: dict | None = None,
    cv: bool = True,
    tune_grid: dict | None = None,
    n_jobs: int = 2,
    stages: Stages = SILENT,
) -> TrainResult:
    """Split, (optionally tune and) cross-validate on the training part, fit, score on the test part."""
    X, y = data.X, data.y
    train_idx, test_idx = split_by_labels(y, test_size, seed)
    X_tr, y_tr, X_te, y_te = X.iloc[train_idx], y[train_idx], X.iloc[test_idx], y[test_idx]
    params = dict(params or {})
    tuning = []
    if tune_grid is not None:
        best, tuning = tune(X_tr, y_tr, seed, tune_grid, n_jobs, stages)
        params.update(best)
    candidates = {"random_forest": build_forest(seed, **params), "logistic_regression": build_baseline(seed)}
    metrics, fitted, served = {}, {}, {}
    for name, pipe in candidates.items():
        entry, diagrams = {}, {}
        folds = CV_SPLITS * CV_REPEATS if cv else 0
        with stages.stage(f"{name}: {f'{CV_SPLITS}x{CV_REPEATS} CV + ' if cv else ''}fit", folds + 1) as bar:
            if cv:
                entry["cv"] = cross_validate(pipe, X_tr, y_tr, seed, n_jobs, progress=bar)
                diagrams["cv_out_of_fold"] = entry["cv"].pop("reliability")
            fitted[name] = clone(pipe).fit(X_tr, y_tr)
            bar.update()
        proba = predict_proba(fitted[name], X_te)
        entry["test"] = compute_metrics(y_te, proba)
        diagrams["test"] = reliability(y_te, proba)
        metrics[name] = entry
        served = diagrams if name == "random_forest" else served
    forest_params = {**FOREST_DEFAULTS, **params}
    return TrainResult(fitted["random_forest"], forest_params, metrics, train_idx, test_idx, tuning, served)


def build_card(result: TrainResult, data: Dataset, seed: int, test_size: float, labels: dict | None = None) -> dict:
    """Everything a reader needs to trust (or not) the artifact, except its hash (added on save).

    `labels` is what train.py's label handling recorded (heart.label_check.apply): flipped or
    not, and the direction check's evidence; None when the card is built without that step.
    """
    forest = forest_of(result.pipeline)
    calibration = _calibration_of(result.pipeline)
    return {
        "name": "heart-disease-random-forest",
        "package_version": __version__,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "intended_use": INTENDED_USE,
        "limitations": LIMITATIONS,
        "data": _data_section(data),
        "labels": labels
        if labels is not None
        else {"flipped": False, "check": "not run (card built without train.py)"},
        "split": {
            "method": "stratified train/test split",
            "seed": seed,
            "test_size": test_size,
            "train_rows": int(len(result.train_idx)),
            "test_rows": int(len(result.test_idx)),
        },
        "cross_validation": {
            "method": "repeated stratified k-fold on the training part",
            "splits": CV_SPLITS,
            "repeats": CV_REPEATS,
            "seed": seed,
        },
        "features": describe(),
        "target": {
            "name": TARGET.name,
            "description": TARGET.description,
            "positive_class": 1,
            "labels": {str(k): v for k, v in TARGET.labels.items()},
        },
        "threshold": DEFAULT_THRESHOLD,
        "model": {
            "type": "sklearn Pipeline: ColumnTransformer (median / most-frequent imputation, "
            "one-hot for nominal categories) -> RandomForestClassifier"
            + (f" in CalibratedClassifierCV ({calibration['method']})" if calibration else ""),
            "input_columns": list(FEATURE_NAMES),
            "transformed_columns": [str(c) for c in result.pipeline.named_steps["preprocess"].get_feature_names_out()],
            "hyperparameters": {k: _jsonable(v) for k, v in forest.get_params().items()},
            "calibration": calibration,
        },
        "metrics": result.metrics,
        "calibration": _calibration_report(result, calibration),
        "tuning": result.tuning[:10],
        "libraries": {
            "python": platform.python_version(),
            "scikit-learn": sklearn.__version__,
            "numpy": np.__version__,
            "pandas": pd.__version__,
            "joblib": joblib.__version__,
        },
    }


INTENDED_USE = (
    "Teaching and reference MLOps service: estimates the probability of angiographic heart disease "
    "from 13 clinical measurements. Not a medical device; not for diagnosis or treatment decisions."
)
LIMITATIONS = (
    "Trained on 303 patients from one hospital (Cleveland Clinic, 1988), mostly men; calibration "
    "and fairness across groups are limited by that sample."
)


def _data_section(data: Dataset) -> dict:
    return {
        "file": os.path.basename(data.source),
        "sha256": data.sha256,
        "rows": data.n_rows,
        "class_balance": data.class_balance(),
        "missing_values": {k: v for k, v in data.missing.items() if v},
        "legacy_sentinels_read_as_missing": data.sentinels,
    }


def _calibration_of(pipeline: Pipeline) -> dict | None:
    model = pipeline.named_steps["model"]
    if not isinstance(model, CalibratedClassifierCV):
        return None
    return {"method": model.method, "cv": _jsonable(model.cv), "ensemble": _jsonable(model.ensemble)}


def _calibration_report(result: TrainResult, calibration: dict | None) -> dict:
    """Brier and the 10-bin reliability diagrams of the served model (docs/model.md, "Calibration")."""
    forest = result.metrics["random_forest"]
    return {
        "method": (
            f"{calibration['method']} map fitted on {calibration['cv']}-fold out-of-fold forest scores"
            if calibration
            else "none (bare forest probabilities)"
        ),
        "brier": {"test": forest["test"]["brier"], **({"cv": forest["cv"]["brier"]} if "cv" in forest else {})},
        "reliability_bins": RELIABILITY_BINS,
        "reliability": result.reliability,
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
    calibration = card["model"].get("calibration")  # absent from cards written before calibration
    if calibration:
        calibration = {
            "method": calibration["method"],
            "cv": int(calibration["cv"]),
            "ensemble": calibration["ensemble"] in (True, "True"),
        }
    return build_forest(int(seed), calibration=calibration or None, **params)


def card_split(card: dict, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The held-out split the model was scored on (seed and test size from its card)."""
    return split_by_labels(y, card["split"]["test_size"], card["split"]["seed"])
