"""Training quality, reproducibility, and what the model card says about training."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import make_scorer, recall_score
from sklearn.model_selection import RepeatedStratifiedKFold, train_test_split
from sklearn.model_selection import cross_validate as sklearn_cross_validate
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline

from heart import model as M
from heart.artifact import sha256_bytes
from heart.export import save_model
from heart.model import build_forest, cross_validate, predict_proba, train
from heart.schema import FEATURES


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


@pytest.mark.slow
def test_calibration_lowers_brier_and_keeps_the_ranking(dataset):
    """5-fold CV over all rows (the bench's 5x5 gives 0.9145 / 0.118; this 5x1 gives 0.919 /
    0.117, bare Brier 0.147): the served, calibrated Pipeline against the bare forest on the same folds."""
    calibrated = cross_validate(build_forest(), dataset.X, dataset.y, repeats=1)
    bare = cross_validate(build_forest(calibration=None), dataset.X, dataset.y, repeats=1)
    assert 0.91 <= calibrated["roc_auc"]["mean"] <= 0.93, calibrated["roc_auc"]
    # ensemble=False: the same seeded forest on the same rows, then a monotone (sigmoid) map, so
    # every fold ranks the rows exactly as the bare forest does
    assert calibrated["roc_auc"]["mean"] == pytest.approx(bare["roc_auc"]["mean"], abs=1e-9)
    assert 0.11 <= calibrated["brier"]["mean"] <= 0.125, calibrated["brier"]
    assert 0.015 < bare["brier"]["mean"] - calibrated["brier"]["mean"] < 0.045, (bare["brier"], calibrated["brier"])
    bins = calibrated["reliability"]
    assert len(bins) == 10 and sum(b["count"] for b in bins) == 303
    filled = [b for b in bins if b["count"] >= 20]
    assert max(abs(b["observed_rate"] - b["mean_predicted"]) for b in filled) < 0.2


def test_reliability_bins_count_every_row():
    bins = M.reliability(np.array([0, 1, 1, 0, 1]), np.array([0.0, 0.05, 0.55, 0.999, 1.0]))
    assert [b["count"] for b in bins] == [2, 0, 0, 0, 0, 1, 0, 0, 0, 2]
    assert bins[0]["observed_rate"] == 0.5 and bins[9]["mean_predicted"] == pytest.approx(0.9995)
    assert bins[1]["observed_rate"] is None


@pytest.mark.slow
def test_card_records_threshold_calibration_and_labels(loaded, trained):
    card = loaded.card
    assert card["threshold"] == 0.5
    assert card["model"]["calibration"] == {"method": "sigmoid", "cv": 5, "ensemble": False}
    assert card["calibration"]["reliability_bins"] == 10
    assert sum(b["count"] for b in card["calibration"]["reliability"]["test"]) == 61
    assert 0.07 < card["calibration"]["brier"]["test"] < 0.10  # 0.086 on this machine (docs/model.md)
    assert card["labels"]["flipped"] is False
    again = M.forest_from_card(card)
    assert again.named_steps["model"].get_params()["method"] == "sigmoid"
    old_card = {**card, "model": {k: v for k, v in card["model"].items() if k != "calibration"}}
    assert M.forest_from_card(old_card).named_steps["model"].__class__.__name__ == "RandomForestClassifier"


@pytest.mark.slow
def test_two_runs_give_identical_predictions_and_artifacts(dataset, trained, tmp_path):
    again = train(dataset, cv=False)
    np.testing.assert_array_equal(predict_proba(again.pipeline, dataset.X), predict_proba(trained.pipeline, dataset.X))
    a = save_model(trained.pipeline, {}, tmp_path / "a.zip", dataset.X)
    b = save_model(again.pipeline, {}, tmp_path / "b.zip", dataset.X)
    assert a["artifact"]["sha256"] == b["artifact"]["sha256"]  # graph, reference and archive included


@pytest.mark.slow
def test_the_seed_changes_the_model(dataset, trained):
    other = train(dataset, seed=7, cv=False)
    assert not np.array_equal(predict_proba(other.pipeline, dataset.X), predict_proba(trained.pipeline, dataset.X))


def test_held_out_rows_are_not_trained_on(dataset, trained):
    assert not set(trained.train_idx) & set(trained.test_idx)
    assert len(trained.test_idx) == 61 and len(trained.train_idx) == 242
    # 9 ordered columns, plus one column per code of the nominal ones (all codes occur in the training rows)
    one_hot = sum(len(f.codes) for f in FEATURES if f.nominal)
    assert trained.pipeline.named_steps["model"].n_features_in_ == 9 + one_hot == 22


# --- fast value tests on small models (mutation testing runs these for every mutant of heart.model) ---


def _memoriser():
    """1-nearest-neighbour: on a row it was fitted on it returns that row's own label (no two rows
    of data.csv are equal), so scoring training rows gives accuracy 1 and Brier 0 exactly."""
    return make_pipeline(SimpleImputer(strategy="median"), KNeighborsClassifier(n_neighbors=1))


def test_cross_validation_scores_the_held_out_rows_not_the_training_rows(dataset):
    X, y = dataset.X, dataset.y
    memoriser = _memoriser().fit(X, y)
    assert M.compute_metrics(y, M.predict_proba(memoriser, X))["accuracy"] == 1.0  # what training rows would give

    cv = cross_validate(_memoriser(), X, y, seed=3, n_jobs=1, repeats=2)

    # Independent computation: sklearn's own cross_validate on the same 5 x 2 folds (seed 3).
    folds = RepeatedStratifiedKFold(n_splits=5, n_repeats=2, random_state=3)
    scoring = {
        "accuracy": "accuracy",  # the memoriser's probabilities are 0 or 1: predict() == decide()
        "roc_auc": "roc_auc",
        "recall": "recall",
        "specificity": make_scorer(recall_score, pos_label=0),
        "f1": "f1",
        "brier": "neg_brier_score",
    }
    ref = sklearn_cross_validate(_memoriser(), X, y, cv=folds, scoring=scoring)
    for m in M.METRICS:
        scores = -ref[f"test_{m}"] if m == "brier" else ref[f"test_{m}"]
        assert len(scores) == 10
        assert cv[m]["mean"] == pytest.approx(float(np.mean(scores)), abs=1e-12), m
        assert cv[m]["sd"] == pytest.approx(float(np.std(scores, ddof=1)), abs=1e-12), m
    assert 0.5 < cv["accuracy"]["mean"] < 0.9, "held-out rows: far from the memoriser's 1.0 on training rows"
    assert 0.1 < cv["brier"]["mean"] < 0.5, "held-out rows: far from the memoriser's 0.0 on training rows"


def test_cross_validation_pools_each_row_once_per_repeat_in_the_reliability_diagram(dataset):
    X, y = dataset.X, dataset.y
    bins = cross_validate(_memoriser(), X, y, seed=3, n_jobs=1, repeats=2)["reliability"]
    # Independent pooling: refit the memoriser on every fold of the same splitter by hand.
    pooled_y, pooled_p = [], []
    for tr, te in RepeatedStratifiedKFold(n_splits=5, n_repeats=2, random_state=3).split(X, y):
        fitted = _memoriser().fit(X.iloc[tr], y[tr])
        pooled_y.append(y[te])
        pooled_p.append(fitted.predict_proba(X.iloc[te])[:, 1])
    pooled_y, pooled_p = np.concatenate(pooled_y), np.concatenate(pooled_p)
    assert len(bins) == 10 and sum(b["count"] for b in bins) == 2 * 303
    assert [b["count"] for b in bins] == [int((pooled_p == 0).sum())] + [0] * 8 + [int((pooled_p == 1).sum())]
    assert bins[9]["mean_predicted"] == 1.0 and bins[0]["mean_predicted"] == 0.0
    assert bins[9]["observed_rate"] == pytest.approx(pooled_y[pooled_p == 1].mean(), abs=1e-12)  # precision
    assert bins[0]["observed_rate"] == pytest.approx(pooled_y[pooled_p == 0].mean(), abs=1e-12)
    assert 0.1 < bins[0]["observed_rate"] < bins[9]["observed_rate"] < 0.9


def test_cross_validation_uses_five_folds_per_repeat_and_the_given_seed(dataset):
    X, y = dataset.X.iloc[:100], dataset.y[:100]
    one = cross_validate(_memoriser(), X, y, seed=5, n_jobs=1, repeats=1)
    ref = sklearn_cross_validate(
        _memoriser(), X, y, cv=RepeatedStratifiedKFold(n_splits=5, n_repeats=1, random_state=5), scoring="roc_auc"
    )["test_score"]
    assert one["roc_auc"]["mean"] == pytest.approx(float(np.mean(ref)), abs=1e-12)
    assert one["roc_auc"]["sd"] == pytest.approx(float(np.std(ref, ddof=1)), abs=1e-12)
    assert sum(b["count"] for b in one["reliability"]) == 100


def test_compute_metrics_values_computed_by_hand():
    y = np.array([0, 0, 0, 1, 1, 1, 1])
    p = np.array([0.1, 0.5, 0.7, 0.2, 0.5, 0.8, 0.9])
    # threshold 0.5 (0.5 itself is class 1): TP 3 (0.5, 0.8, 0.9), FN 1, TN 1, FP 2 (0.5, 0.7)
    m = M.compute_metrics(y, p)
    assert list(m) == list(M.METRICS)
    assert m["accuracy"] == pytest.approx(4 / 7)
    assert m["recall"] == pytest.approx(3 / 4)
    assert m["specificity"] == pytest.approx(1 / 3)
    assert m["f1"] == pytest.approx(2 * 3 / (2 * 3 + 2 + 1))
    # 12 positive/negative pairs: 0.2 beats 1, 0.5 beats 1 and ties 1, 0.8 and 0.9 beat 3 each
    assert m["roc_auc"] == pytest.approx(8.5 / 12)
    assert m["brier"] == pytest.approx((0.01 + 0.25 + 0.49 + 0.64 + 0.25 + 0.04 + 0.01) / 7)
    # threshold 0.75: TP 2 (0.8, 0.9), FN 2, TN 3, FP 0
    m = M.compute_metrics(y, p, threshold=0.75)
    assert (m["accuracy"], m["recall"], m["specificity"]) == (pytest.approx(5 / 7), 0.5, 1.0)
    assert m["f1"] == pytest.approx(2 * 2 / (2 * 2 + 0 + 2))


def test_compute_metrics_on_one_class_gives_nan_auc_and_zero_for_undefined_rates():
    """A fold (or a fairness group) with one class: the undefined rates are 0, silently
    (zero_division=0; sklearn's default would warn on every such fold)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        only_sick = M.compute_metrics(np.array([1, 1, 1]), np.array([0.9, 0.8, 0.2]))
        only_healthy = M.compute_metrics(np.array([0, 0]), np.array([0.1, 0.2]))
    assert np.isnan(only_sick["roc_auc"])
    assert only_sick["recall"] == pytest.approx(2 / 3) and only_sick["specificity"] == 0.0  # no healthy row
    assert only_healthy["recall"] == 0.0 and only_healthy["f1"] == 0.0  # no sick row, none predicted sick
    assert only_healthy["specificity"] == 1.0 and only_healthy["accuracy"] == 1.0
    assert only_healthy["brier"] == pytest.approx((0.01 + 0.04) / 2)


def test_reliability_bin_edges_means_and_a_custom_bin_count():
    bins = M.reliability([0, 1, 1, 0], [0.1, 0.3, 0.74, 0.76], bins=4)
    assert [(b["low"], b["high"]) for b in bins] == [(0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0)]
    assert [b["count"] for b in bins] == [1, 1, 1, 1]
    assert [b["mean_predicted"] for b in bins] == [0.1, 0.3, 0.74, 0.76]
    assert [b["observed_rate"] for b in bins] == [0.0, 1.0, 1.0, 0.0]
    ten = M.reliability(np.array([1, 0, 1]), np.array([0.95, 0.9, 0.05]))
    assert [b["count"] for b in ten] == [1, 0, 0, 0, 0, 0, 0, 0, 0, 2]
    assert ten[9] == {"low": 0.9, "high": 1.0, "count": 2, "mean_predicted": 0.925, "observed_rate": 0.5}
    assert ten[4] == {"low": 0.4, "high": 0.5, "count": 0, "mean_predicted": None, "observed_rate": None}


def test_preprocessor_median_imputes_and_one_hots_by_name(dataset):
    X = dataset.X.iloc[:6].copy()
    X["age"] = [40.0, 50.0, np.nan, 90.0, 45.0, 52.0]  # median 50, mean 55.4
    X["cp"] = [1.0, 1.0, 2.0, np.nan, 2.0, 1.0]  # mode 1
    pre = M.build_preprocessor().fit(X)
    out = pre.transform(X)
    names = list(pre.get_feature_names_out())
    ordered = [f.name for f in FEATURES if not f.nominal]
    assert isinstance(out, np.ndarray) and out.shape[0] == 6
    # the step names are the set_params / get_params keys (preprocess__nominal__onehotencoder__...)
    assert [name for name, _, _ in pre.transformers] == ["numeric", "nominal"]
    assert names[: len(ordered)] == ordered  # unscaled, un-prefixed numeric columns first
    np.testing.assert_array_equal(out[:, names.index("age")], [40.0, 50.0, 50.0, 90.0, 45.0, 52.0])
    np.testing.assert_array_equal(out[:, names.index("chol")], X["chol"].to_numpy())
    assert [n for n in names if n.startswith("cp_")] == ["cp_1.0", "cp_2.0"]
    np.testing.assert_array_equal(out[:, names.index("cp_1.0")], [1, 1, 0, 1, 0, 1])
    unseen = X.iloc[:1].assign(cp=4.0)  # a category not seen in fit: all its one-hot columns 0
    row = pre.transform(unseen)[0]
    assert row[names.index("cp_1.0")] == 0 and row[names.index("cp_2.0")] == 0


def test_scaled_preprocessor_standardises_the_ordered_columns(dataset):
    pre = M.build_preprocessor(scale=True).fit(dataset.X)
    out = pre.transform(dataset.X)
    names = list(pre.get_feature_names_out())
    age = out[:, names.index("age")]
    assert age.mean() == pytest.approx(0, abs=1e-9) and age.std() == pytest.approx(1)
    assert set(np.unique(out[:, names.index("cp_1.0")])) == {0.0, 1.0}  # one-hot columns are not scaled


def test_build_forest_wraps_the_forest_defaults_in_the_sigmoid_calibration():
    pipe = build_forest(seed=7, max_depth=2)
    assert list(pipe.named_steps) == ["preprocess", "model"]
    calibrated = pipe.named_steps["model"]
    assert isinstance(calibrated, CalibratedClassifierCV)
    assert (calibrated.method, calibrated.cv, calibrated.ensemble) == ("sigmoid", 5, False)
    forest = M.forest_of(pipe)
    assert forest is calibrated.estimator and isinstance(forest, RandomForestClassifier)
    params = forest.get_params()
    expected = {"n_estimators": 300, "max_features": 1, "min_samples_leaf": 5, "max_depth": 2, "random_state": 7}
    assert {k: params[k] for k in expected} == expected
    assert params["n_jobs"] == 1
    bare = build_forest(seed=8, calibration=None)
    assert isinstance(bare.named_steps["model"], RandomForestClassifier)
    assert M.forest_of(bare) is bare.named_steps["model"] and M.forest_of(bare).max_depth == 5
    iso = build_forest(calibration={"method": "isotonic", "cv": 3, "ensemble": True}).named_steps["model"]
    assert (iso.method, iso.cv, iso.ensemble, iso.estimator.random_state) == ("isotonic", 3, True, 42)


def test_baseline_is_a_scaled_logistic_regression_with_the_seed():
    pipe = M.build_baseline(seed=9)
    assert list(pipe.named_steps) == ["preprocess", "model"]
    lr = pipe.named_steps["model"]
    assert isinstance(lr, LogisticRegression) and (lr.max_iter, lr.random_state) == (1000, 9)
    numeric = dict((n, t) for n, t, _ in pipe.named_steps["preprocess"].transformers)["numeric"]
    assert [type(s).__name__ for s in numeric] == ["SimpleImputer", "StandardScaler"]
    assert M.build_baseline().named_steps["model"].random_state == 42


def test_split_by_labels_is_sklearns_stratified_split_sorted(dataset):
    y = dataset.y
    tr, te = M.split_by_labels(y, 0.3, 7)
    ref_tr, ref_te = train_test_split(np.arange(303), test_size=0.3, stratify=y, random_state=7)
    np.testing.assert_array_equal(tr, np.sort(ref_tr))
    np.testing.assert_array_equal(te, np.sort(ref_te))
    assert len(te) == 91 and len(tr) == 212  # sklearn rounds the test part up: ceil(0.3 * 303)
    assert int(y[te].sum()) in (41, 42)  # stratified: 139 / 303 of 91 = 41.7
    default_tr, default_te = M.split_by_labels(list(y))
    assert len(default_te) == 61 and (np.diff(default_te) > 0).all() and (np.diff(default_tr) > 0).all()
    np.testing.assert_array_equal(M.card_split({"split": {"seed": 7, "test_size": 0.3}}, y)[1], te)


def test_predict_proba_selects_the_schema_columns_by_name(dataset):
    X, y = dataset.X.iloc[:80], dataset.y[:80]
    pipe = build_forest(calibration=None, n_estimators=3).fit(X, y)
    shuffled = X[list(reversed(X.columns))].assign(extra=1.0)
    p = predict_proba(pipe, shuffled)
    np.testing.assert_array_equal(p, pipe.predict_proba(X)[:, 1])
    assert p.shape == (80,) and not np.array_equal(p, pipe.predict_proba(X)[:, 0])


def test_jsonable_keeps_json_scalars_and_stringifies_the_rest():
    for v in (3, 2.5, "gini", True, None):
        assert M._jsonable(v) is v
    assert M._jsonable([1, 2]) == "[1, 2]" and M._jsonable({"a": 1}) == "{'a': 1}"


class _FakeCV:
    """Stands in for cross_validate: records what it was asked and answers a made-up ROC AUC per max_depth."""

    def __init__(self):
        self.calls = []

    def __call__(self, pipeline, X, y, seed=None, n_jobs=None, repeats=M.CV_REPEATS, progress=None):
        self.calls.append(
            {
                "pipeline": pipeline,
                "index": list(X.index),
                "y": list(y),
                "seed": seed,
                "n_jobs": n_jobs,
                "progress": progress,
            }
        )
        model = pipeline.named_steps["model"]
        depth = M.forest_of(pipeline).max_depth if not isinstance(model, LogisticRegression) else 0
        auc = {None: 0.80, 2: 0.70, 3: 0.90, 5: 0.85, 0: 0.75}.get(depth, 0.5)
        return {
            "roc_auc": {"mean": auc, "sd": round(0.01 * len(self.calls), 2)},
            "brier": {"mean": 0.1, "sd": 0.0},
            "reliability": [{"from": type(model).__name__}],
        }


def test_tune_ranks_the_grid_by_cv_roc_auc_of_the_bare_forest(dataset, monkeypatch):
    fake = _FakeCV()
    monkeypatch.setattr(M, "cross_validate", fake)
    X, y = dataset.X.iloc[:50], dataset.y[:50]
    best, results = M.tune(X, y, seed=4, grid={"max_depth": [2, 3, None], "n_estimators": [7]}, n_jobs=1)
    assert best == {"max_depth": 3, "n_estimators": 7}
    assert results == [
        {"max_depth": 3, "n_estimators": 7, "cv_roc_auc": 0.90, "cv_roc_auc_sd": 0.02},
        {"max_depth": None, "n_estimators": 7, "cv_roc_auc": 0.80, "cv_roc_auc_sd": 0.03},
        {"max_depth": 2, "n_estimators": 7, "cv_roc_auc": 0.70, "cv_roc_auc_sd": 0.01},
    ]
    for call in fake.calls:
        assert isinstance(call["pipeline"].named_steps["model"], RandomForestClassifier)  # scored uncalibrated
        assert M.forest_of(call["pipeline"]).random_state == 4 and M.forest_of(call["pipeline"]).n_estimators == 7
        assert (call["seed"], call["n_jobs"], call["index"]) == (4, 1, list(X.index))
    fake.calls.clear()
    _, everything = M.tune(X, y)  # no grid: the documented TUNING_GRID, 3 x 4 x 4 settings
    assert len(everything) == 48 and len(fake.calls) == 48
    assert (fake.calls[0]["seed"], fake.calls[0]["n_jobs"]) == (42, 2)
    assert set(everything[0]) == {"max_features", "min_samples_leaf", "max_depth", "cv_roc_auc", "cv_roc_auc_sd"}


def test_train_cross_validates_on_the_training_part_and_scores_the_test_part(dataset, monkeypatch):
    fake = _FakeCV()
    monkeypatch.setattr(M, "cross_validate", fake)
    X, y = dataset.X, dataset.y
    params = {"n_estimators": 5}
    result = train(dataset, seed=3, test_size=0.3, params=params, cv=True, tune_grid={"max_depth": [2, 3]}, n_jobs=1)
    tr, te = M.split_by_labels(y, 0.3, 3)
    np.testing.assert_array_equal(result.train_idx, tr)
    np.testing.assert_array_equal(result.test_idx, te)
    assert params == {"n_estimators": 5}  # the caller's dict is not updated
    assert result.params == {**M.FOREST_DEFAULTS, "n_estimators": 5, "max_depth": 3}  # tuning picked depth 3
    assert [r["max_depth"] for r in result.tuning] == [3, 2]
    # tuning (2 settings), then CV of the forest and of the baseline: all on the training rows only
    assert len(fake.calls) == 4
    for call in fake.calls:
        assert call["index"] == list(X.index[tr]) and call["y"] == list(y[tr])
        assert (call["seed"], call["n_jobs"]) == (3, 1)
    assert isinstance(fake.calls[2]["pipeline"].named_steps["model"], CalibratedClassifierCV)
    assert [call["progress"] is not None for call in fake.calls] == [False, False, True, True]  # each model's stage
    baseline_model = fake.calls[3]["pipeline"].named_steps["model"]
    assert isinstance(baseline_model, LogisticRegression) and baseline_model.random_state == 3
    forest_cv = {"roc_auc": {"mean": 0.90, "sd": 0.03}, "brier": {"mean": 0.1, "sd": 0.0}}
    assert result.metrics["random_forest"]["cv"] == forest_cv
    assert result.metrics["logistic_regression"]["cv"] == {
        "roc_auc": {"mean": 0.75, "sd": 0.04},
        **{"brier": {"mean": 0.1, "sd": 0.0}},
    }
    # Independent refits on the training rows, scored on the test rows
    forest = build_forest(3, n_estimators=5, max_depth=3).fit(X.iloc[tr], y[tr])
    baseline = M.build_baseline(3).fit(X.iloc[tr], y[tr])
    p_forest, p_base = predict_proba(forest, X.iloc[te]), predict_proba(baseline, X.iloc[te])
    np.testing.assert_array_equal(predict_proba(result.pipeline, X.iloc[te]), p_forest)
    assert result.metrics["random_forest"]["test"] == M.compute_metrics(y[te], p_forest)
    assert result.metrics["logistic_regression"]["test"] == M.compute_metrics(y[te], p_base)
    assert result.reliability == {
        "cv_out_of_fold": [{"from": "CalibratedClassifierCV"}],
        "test": M.reliability(y[te], p_forest),
    }


def test_train_without_cv_or_tuning_has_only_test_figures(dataset, monkeypatch):
    fake = _FakeCV()
    monkeypatch.setattr(M, "cross_validate", fake)
    result = train(dataset, params={"n_estimators": 3}, cv=False)
    assert fake.calls == [] and result.tuning == []
    assert set(result.metrics["random_forest"]) == {"test"} and set(result.metrics["logistic_regression"]) == {"test"}
    assert set(result.reliability) == {"test"} and sum(b["count"] for b in result.reliability["test"]) == 61
    assert result.params == {**M.FOREST_DEFAULTS, "n_estimators": 3}
    assert M.forest_of(result.pipeline).random_state == 42 and len(result.test_idx) == 61


def test_train_cross_validates_by_default_on_two_threads(dataset, monkeypatch):
    fake = _FakeCV()
    monkeypatch.setattr(M, "cross_validate", fake)
    result = train(dataset, params={"n_estimators": 3})
    assert [(c["seed"], c["n_jobs"]) for c in fake.calls] == [(42, 2), (42, 2)]  # forest, then baseline
    assert set(result.metrics["random_forest"]) == {"cv", "test"} and set(result.reliability) == {
        "cv_out_of_fold",
        "test",
    }


def _small_result(dataset, calibration=M.CALIBRATION, with_cv=True):
    """A TrainResult built by hand around a 3-tree Pipeline: build_card only describes it."""
    pipe = build_forest(calibration=calibration, n_estimators=3).fit(dataset.X, dataset.y)
    forest = {"test": {"brier": 0.11}, **({"cv": {"brier": {"mean": 0.12, "sd": 0.01}}} if with_cv else {})}
    return M.TrainResult(
        pipeline=pipe,
        params={},
        metrics={"random_forest": forest, "logistic_regression": {"test": {"brier": 0.2}}},
        train_idx=np.arange(200),
        test_idx=np.arange(200, 303),
        tuning=[{"max_depth": i, "cv_roc_auc": 0.9 - i / 100} for i in range(12)],
        reliability={"test": [{"count": 103}]},
    )


def test_build_card_records_data_split_cv_model_and_libraries(dataset):
    import platform
    from datetime import UTC, datetime

    import joblib
    import pandas as pd
    import sklearn

    from heart import __version__
    from heart.schema import FEATURE_NAMES, TARGET, describe

    result = _small_result(dataset)
    card = M.build_card(result, dataset, seed=7, test_size=0.3)
    assert card["name"] == "heart-disease-random-forest" and card["package_version"] == __version__
    created = datetime.fromisoformat(card["created_at"])
    assert created.utcoffset().total_seconds() == 0 and created.microsecond == 0
    assert len(card["created_at"]) == len("2026-01-01T00:00:00+00:00")
    assert abs((datetime.now(UTC) - created).total_seconds()) < 60
    # the card's wording, exactly: readers (and /model) see these sentences as written
    assert card["intended_use"] == (
        "Teaching and reference MLOps service: estimates the probability of angiographic heart disease "
        "from 13 clinical measurements. Not a medical device; not for diagnosis or treatment decisions."
    )
    assert card["limitations"] == (
        "Trained on 303 patients from one hospital (Cleveland Clinic, 1988), mostly men; calibration "
        "and fairness across groups are limited by that sample."
    )
    assert card["data"] == {
        "file": "data.csv",
        "sha256": dataset.sha256,
        "rows": 303,
        "class_balance": {"heart disease": 139, "no heart disease": 164},
        "missing_values": {"ca": 4, "thal": 2},  # the 11 columns with no missing value are left out
        "legacy_sentinels_read_as_missing": dataset.sentinels,
    }
    assert card["labels"] == {"flipped": False, "check": "not run (card built without train.py)"}
    assert card["split"] == {
        "method": "stratified train/test split",
        "seed": 7,
        "test_size": 0.3,
        "train_rows": 200,
        "test_rows": 103,
    }
    assert card["cross_validation"] == {
        "method": "repeated stratified k-fold on the training part",
        "splits": 5,
        "repeats": 5,
        "seed": 7,
    }
    assert card["features"] == describe()
    assert card["target"] == {
        "name": TARGET.name,
        "description": TARGET.description,
        "positive_class": 1,
        "labels": {"0": TARGET.labels[0], "1": TARGET.labels[1]},
    }
    assert card["threshold"] == 0.5
    model = card["model"]
    assert model["type"] == (
        "sklearn Pipeline: ColumnTransformer (median / most-frequent imputation, one-hot for nominal "
        "categories) -> RandomForestClassifier in CalibratedClassifierCV (sigmoid)"
    )
    assert model["input_columns"] == list(FEATURE_NAMES)
    ordered = [f.name for f in FEATURES if not f.nominal]
    assert model["transformed_columns"][:9] == ordered
    nominal = tuple(f"{f.name}_" for f in FEATURES if f.nominal)
    assert len(model["transformed_columns"]) > 13 and all(
        c.startswith(nominal) for c in model["transformed_columns"][9:]
    )
    hp = model["hyperparameters"]
    assert (hp["n_estimators"], hp["random_state"], hp["n_jobs"], hp["max_depth"]) == (3, 42, 1, 5)
    assert hp["class_weight"] is None and hp["bootstrap"] is True and hp["criterion"] == "gini"
    assert model["calibration"] == {"method": "sigmoid", "cv": 5, "ensemble": False}
    assert card["metrics"] == result.metrics
    assert card["calibration"] == {
        "method": "sigmoid map fitted on 5-fold out-of-fold forest scores",
        "brier": {"test": 0.11, "cv": {"mean": 0.12, "sd": 0.01}},
        "reliability_bins": 10,
        "reliability": {"test": [{"count": 103}]},
    }
    assert card["tuning"] == result.tuning[:10] and len(card["tuning"]) == 10  # 12 settings, best 10 kept
    assert card["libraries"] == {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "joblib": joblib.__version__,
    }
    json.dumps(card, allow_nan=False)
    labels = {"flipped": True, "check": "evidence"}
    assert M.build_card(result, dataset, 7, 0.3, labels=labels)["labels"] == labels


def test_card_of_an_uncalibrated_forest_says_so(dataset):
    card = M.build_card(_small_result(dataset, calibration=None, with_cv=False), dataset, 42, 0.2)
    assert card["model"]["type"].endswith("-> RandomForestClassifier")
    assert card["model"]["calibration"] is None
    assert card["calibration"]["method"] == "none (bare forest probabilities)"
    assert card["calibration"]["brier"] == {"test": 0.11}


def test_forest_from_card_rebuilds_the_same_unfitted_pipeline(dataset):
    card = M.build_card(_small_result(dataset), dataset, seed=7, test_size=0.3)
    again = M.forest_from_card(card)
    assert not hasattr(again.named_steps["model"], "calibrated_classifiers_")  # unfitted
    original = M.forest_of(_small_result(dataset).pipeline).get_params()
    assert M.forest_of(again).get_params() == original  # random_state 42 from the hyperparameters, n_jobs 1
    calibrated = again.named_steps["model"]
    assert (calibrated.method, calibrated.cv, calibrated.ensemble) == ("sigmoid", 5, False)
    # an older card: no random_state (the split seed is used), strings for cv / ensemble
    hp = {k: v for k, v in card["model"]["hyperparameters"].items() if k not in ("random_state", "n_jobs")}
    old = {**card, "model": {**card["model"], "hyperparameters": hp}}
    old["model"]["calibration"] = {"method": "isotonic", "cv": "3", "ensemble": "True"}
    rebuilt = M.forest_from_card(old)
    assert M.forest_of(rebuilt).random_state == 7 and M.forest_of(rebuilt).n_jobs == 1
    assert (rebuilt.named_steps["model"].method, rebuilt.named_steps["model"].cv) == ("isotonic", 3)
    assert rebuilt.named_steps["model"].ensemble is True
    old["model"]["calibration"] = {"method": "sigmoid", "cv": 5, "ensemble": "False"}
    assert M.forest_from_card(old).named_steps["model"].ensemble is False
    old["model"]["calibration"] = {"method": "sigmoid", "cv": 5, "ensemble": True}
    assert M.forest_from_card(old).named_steps["model"].ensemble is True
    old["model"]["hyperparameters"] = {**hp, "random_state": "11"}
    assert M.forest_of(M.forest_from_card(old)).random_state == 11
