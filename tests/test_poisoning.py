"""Poisoning: flips are counted and seeded, 0% is the clean model, the defense beats chance."""

import dataclasses
import json
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, recall_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from heart.analyses import poisoning, poisoning_report, report
from heart.model import card_split, forest_from_card
from heart.schema import FEATURE_NAMES

# the top-level keys of the JSON report the script writes, in order
REPORT_KEYS = (
    "train_rows",
    "test_rows",
    "train_positives",
    "rate",
    "budget_rows",
    "seeds",
    "clean",
    "clean_fit",
    "defense_on_clean_labels",
    "attacks",
    "sweep",
)


def test_flips_are_the_budget_seeded_and_targeted_flips_only_positives():
    y = np.array([1] * 40 + [0] * 60)
    poisoned, flipped = poisoning.flip_labels(y, 0.2, np.random.default_rng(3))
    assert len(flipped) == 20 and (poisoned != y).sum() == 20
    again, flipped2 = poisoning.flip_labels(y, 0.2, np.random.default_rng(3))
    np.testing.assert_array_equal(flipped, flipped2)
    poisoned, flipped = poisoning.flip_labels(y, 0.2, np.random.default_rng(3), targeted=True)
    assert len(flipped) == 20 and (y[flipped] == 1).all() and poisoned.sum() == 20
    _, capped = poisoning.flip_labels(y, 0.5, np.random.default_rng(3), targeted=True)
    assert len(capped) == 40  # budget above the number of positives flips them all


@pytest.fixture(scope="module")
def result(loaded, dataset):
    train_idx, test_idx = card_split(loaded.card, dataset.y)
    return poisoning.run_poisoning(
        forest_from_card(loaded.card),
        dataset.X,
        dataset.y,
        train_idx,
        test_idx,
        rate=0.2,
        seeds=(0, 1),
        sweep_rates=(0.0, 0.2),
    )


@pytest.mark.slow
def test_zero_flips_is_the_clean_model(result, loaded):
    clean = result.clean
    for m in poisoning.REPORTED:
        assert clean[m] == pytest.approx(loaded.card["metrics"]["random_forest"]["test"][m])
    for curve in result.sweep.values():
        zero = curve[0]
        assert zero.rate == 0 and zero.summary.flipped.mean == 0
        for m in poisoning.REPORTED:
            got = zero.summary.metrics[m]
            assert got.mean == pytest.approx(clean[m]) and got.sd == pytest.approx(0, abs=1e-12)


@pytest.mark.slow
def test_targeted_attack_hides_disease(result):
    targeted = result.attacks["targeted_positive_to_negative"].summary
    assert targeted.metrics["recall"].mean < result.clean["recall"] - 0.3
    assert targeted.flipped.mean == result.budget_rows


@pytest.mark.slow
def test_defense_finds_flipped_labels_better_than_chance(result):
    for attack in ("random", "targeted_positive_to_negative"):
        d = result.attacks[attack].summary.defense
        assert d.precision.mean > 2 * d.chance_precision.mean, attack
        assert d.recall.mean > 0.3, attack
    targeted = result.attacks["targeted_positive_to_negative"].summary
    assert targeted.defense.metrics_after["recall"].mean > targeted.metrics["recall"].mean


@pytest.mark.slow
def test_report_dict_keeps_the_json_shape(result):
    d = result.to_dict()
    assert list(d) == list(REPORT_KEYS)
    summary = d["attacks"]["random"]["summary"]
    assert list(summary) == ["flipped", *poisoning.REPORTED, "defense", "fits"]
    assert summary["fits"] == {"5-fold calibration": 2} and d["clean_fit"] == "5-fold calibration"
    assert summary["recall"] == {
        "mean": result.attacks["random"].summary.metrics["recall"].mean,
        "sd": result.attacks["random"].summary.metrics["recall"].sd,
    }
    run = d["attacks"]["random"]["runs"][1]
    assert (run["seed"], run["targeted"], run["flipped"]) == (1, False, result.budget_rows)
    assert run["defense"]["action"] == "drop" and set(run["defense"]["metrics_after"]) == set(poisoning.REPORTED)
    point = d["sweep"]["targeted_positive_to_negative"][1]
    assert point["rate"] == 0.2 and "defense" not in point and list(point)[:2] == ["rate", "flipped"]
    assert d["defense_on_clean_labels"]["flipped"] == 0


# Fast checks on a small synthetic set with a linear model (the tests above use the real forest).
# One informative feature; the labels are its sign, so a flipped row far from 0 is a sure label issue.
def _linear():
    return make_pipeline(SimpleImputer(), StandardScaler(), LogisticRegression())


def _synthetic(n=100):
    x = np.linspace(-3, 3, n)
    X = pd.DataFrame(0.0, index=range(n), columns=list(FEATURE_NAMES)).assign(oldpeak=x)
    return X, (x > 0).astype(int)


FLIPPED = np.array([2, 5, 10, 90, 95])  # |x| > 2: far from the boundary


@pytest.mark.parametrize("rate, n, budget", [(0.3, 9, 3), (0.5, 7, 4), (0.25, 10, 2), (0.0, 9, 0), (1.0, 9, 9)])
def test_the_budget_is_rate_times_rows_rounded_not_truncated(rate, n, budget):
    y = np.array([1, 0] * n)[:n]
    poisoned, flipped = poisoning.flip_labels(y, rate, np.random.default_rng(0))
    assert len(flipped) == budget and (poisoned != y).sum() == budget
    np.testing.assert_array_equal(poisoned[flipped], 1 - y[flipped])
    assert list(flipped) == sorted(set(flipped))


@pytest.mark.parametrize("rate", [-0.01, 1.01])
def test_a_rate_outside_0_1_is_refused(rate):
    with pytest.raises(ValueError, match=f"^flip rate must be between 0 and 1, got {rate}$"):
        poisoning.flip_labels(np.array([0, 1]), rate, np.random.default_rng(0))


def test_label_issues_are_the_flipped_rows_far_from_the_boundary():
    X, y = _synthetic()
    noisy = y.copy()
    noisy[FLIPPED] = 1 - noisy[FLIPPED]
    found, p1 = poisoning.find_label_issues(_linear(), X, noisy, seed=0)
    np.testing.assert_array_equal(found, FLIPPED)
    assert p1.shape == (100,) and p1[0] < 0.2 and p1[99] > 0.8  # P(class 1), not P(class 0)
    clean, _ = poisoning.find_label_issues(_linear(), X, y, seed=0)
    assert clean.size == 0


def test_too_few_of_a_class_to_cross_validate_finds_nothing():
    X, _ = _synthetic(20)
    y = np.array([1] * 4 + [0] * 16)
    found, p1 = poisoning.find_label_issues(_linear(), X, y, seed=0)
    assert found.size == 0 and np.isnan(p1).all()
    y[4] = 1  # five of each class: enough for 5 folds
    assert not np.isnan(poisoning.find_label_issues(_linear(), X, y, seed=0)[1]).any()


@pytest.mark.parametrize("action", ["drop", "relabel"])
def test_defense_scores_detection_against_the_known_flips(action):
    X, y = _synthetic()
    noisy = y.copy()
    noisy[FLIPPED] = 1 - noisy[FLIPPED]
    flipped = np.concatenate([FLIPPED, [50]])  # one flip the defense cannot see (we only pretend it was flipped)
    d = poisoning.defend(_linear(), X, noisy, flipped, X, y, seed=0, action=action)
    assert (d.action, d.flagged, d.flipped, d.true_positives) == (action, 5, 6, 5)
    assert d.precision == 1.0 and d.recall == pytest.approx(5 / 6) and d.chance_precision == pytest.approx(0.06)
    assert d.metrics_after["accuracy"] == 1.0 and set(d.metrics_after) == set(poisoning.REPORTED)
    nothing = poisoning.defend(_linear(), X, y, np.array([], dtype=int), X, y, seed=0, action=action)
    assert nothing.flagged == 0 and np.isnan(nothing.precision) and np.isnan(nothing.recall)


def test_unknown_defense_action():
    X, y = _synthetic()
    with pytest.raises(ValueError, match="^unknown defense action 'burn': choose drop or relabel$"):
        poisoning.defend(_linear(), X, y, np.array([], dtype=int), X, y, seed=0, action="burn")


def test_every_positive_flipped_leaves_a_one_class_model():
    X, y = _synthetic(40)
    m, fit = poisoning._score(_linear(), X, np.zeros(40, dtype=int), X, y)
    assert m == {"accuracy": 0.5, "roc_auc": 0.5, "recall": 0.0}  # it predicts "no disease" for everyone
    assert fit == poisoning.CONSTANT == "constant (one class left)"


def _run(flipped, recall, defense=None):
    return poisoning.AttackRun(
        rate=0.2,
        seed=0,
        targeted=False,
        flipped=flipped,
        metrics={"accuracy": 0.8, "roc_auc": 0.9, "recall": recall},
        defense=defense,
    )


def test_summary_is_mean_and_sample_sd_over_seeds():
    s = poisoning.summarize_runs([_run(10, 0.5), _run(12, 0.7), _run(14, 0.9)])
    assert (s.flipped.mean, s.flipped.sd) == (12.0, 2.0)  # ddof=1: sqrt((4 + 0 + 4) / 2)
    assert s.metrics["recall"].mean == pytest.approx(0.7) and s.metrics["recall"].sd == pytest.approx(0.2)
    assert s.metrics["accuracy"].sd == pytest.approx(0, abs=1e-12) and s.defense is None
    one = poisoning.summarize_runs([_run(10, 0.5)])
    assert one.flipped.sd == 0.0 and one.to_dict()["recall"] == {"mean": 0.5, "sd": 0.0}


@pytest.mark.filterwarnings("ignore:Degrees of freedom:RuntimeWarning")
def test_defense_summary_ignores_undefined_precision():
    d = dict(
        action="drop", flipped=10, chance_precision=0.1, metrics_after={"accuracy": 0.8, "roc_auc": 0.9, "recall": 0.6}
    )
    runs = [
        _run(10, 0.5, poisoning.Defense(flagged=4, true_positives=2, precision=0.5, recall=0.2, **d)),
        _run(10, 0.5, poisoning.Defense(flagged=0, true_positives=0, precision=float("nan"), recall=0.0, **d)),
    ]
    s = poisoning.summarize_runs(runs).defense
    assert s.precision.mean == 0.5 and (s.flagged.mean, s.true_positives.mean) == (2.0, 1.0)
    assert s.recall.mean == pytest.approx(0.1) and s.metrics_after["recall"].mean == pytest.approx(0.6)
    assert "defense" in poisoning.summarize_runs(runs).to_dict()
    assert (
        "defense" not in _run(10, 0.5).to_dict() and _run(10, 0.5, runs[0].defense).to_dict()["defense"]["flagged"] == 4
    )


def test_run_poisoning_counts_and_keys_on_a_small_set():
    X, y = _synthetic()
    train_idx, test_idx = np.arange(0, 100, 2)[:40], np.arange(1, 100, 2)
    r = poisoning.run_poisoning(
        _linear(), X, y, train_idx, test_idx, rate=0.15, seeds=(0, 1), sweep_rates=(0.0, 0.3), n_jobs=1
    )
    assert (r.train_rows, r.test_rows, r.train_positives, r.budget_rows) == (40, 50, int(y[train_idx].sum()), 6)
    assert r.seeds == [0, 1] and r.rate == 0.15 and r.clean["accuracy"] == 1.0
    assert r.defense_on_clean_labels.flipped == 0
    for name, targeted in (("random", False), ("targeted_positive_to_negative", True)):
        runs = r.attacks[name].runs
        assert [(x.seed, x.targeted, x.flipped, x.rate) for x in runs] == [
            (0, targeted, 6, 0.15),
            (1, targeted, 6, 0.15),
        ]
        assert all(x.defense.flipped == 6 for x in runs)
        assert [p.rate for p in r.sweep[name]] == [0.0, 0.3]
        assert [p.summary.flipped.mean for p in r.sweep[name]] == [0.0, 12.0]
        assert r.sweep[name][0].summary.metrics["accuracy"].mean == 1.0


# --- Value checks against independent computations (mutation testing, issue 15) ---


def test_random_flips_are_a_seeded_choice_without_replacement_from_all_rows():
    y = np.array([1, 0, 0] * 10)
    poisoned, flipped = poisoning.flip_labels(y, 0.3, np.random.default_rng(5))
    # round(0.3 * 30) = 9 rows, drawn as numpy draws them from the same generator (independent replication)
    expected = np.sort(np.random.default_rng(5).choice(np.arange(30), size=9, replace=False))
    np.testing.assert_array_equal(flipped, expected)
    np.testing.assert_array_equal(poisoned, np.where(np.isin(np.arange(30), expected), 1 - y, y))
    assert poisoned.dtype.kind == "i"


def test_targeted_flips_are_a_seeded_choice_among_the_positives_only():
    y = np.array([1, 0, 0] * 10)  # 10 positives at 0, 3, ..., 27
    poisoned, flipped = poisoning.flip_labels(y, 0.2, np.random.default_rng(5), targeted=True)
    expected = np.sort(np.random.default_rng(5).choice(np.arange(0, 30, 3), size=6, replace=False))
    np.testing.assert_array_equal(flipped, expected)
    assert poisoned.sum() == 4 and (poisoned[flipped] == 0).all()
    _, every = poisoning.flip_labels(y, 0.5, np.random.default_rng(5), targeted=True)
    np.testing.assert_array_equal(every, np.arange(0, 30, 3))  # budget 15 > 10 positives: all of them


# rate * n in floating point: 3.5, 4.5, 1.5, 2.1, 1.5 (checked with Python); round() takes 3.5 and 4.5 to the even
# 4, 1.5 to 2, 2.1 to 2. Truncation would give 3, 4, 1, 2, 1; ceil 4, 5, 2, 3, 2.
@pytest.mark.parametrize("rate, n, budget", [(0.35, 10, 4), (0.45, 10, 4), (0.15, 10, 2), (0.21, 10, 2), (0.06, 25, 2)])
def test_the_budget_is_rounded_half_to_even_not_truncated_nor_ceiled(rate, n, budget):
    y = np.zeros(n, dtype=int)
    _, flipped = poisoning.flip_labels(y, rate, np.random.default_rng(0))
    assert len(flipped) == budget


class _FeatureIsTheScore(ClassifierMixin, BaseEstimator):
    """P(class 1) = the row's oldpeak, whatever the training fold: out-of-fold scores chosen by hand."""

    def fit(self, X, y):
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X):
        s = X["oldpeak"].to_numpy(dtype=float)
        return np.column_stack([1 - s, s])

    def predict(self, X):
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)


def _scored(p):
    return pd.DataFrame(0.0, index=range(len(p)), columns=list(FEATURE_NAMES)).assign(oldpeak=p)


def test_a_label_is_suspicious_from_exactly_the_other_class_threshold():
    """Eight rows of each class. Class 1's threshold t1 = mean P(1) over label 1 = (7 * 0.5 + 0.75) / 8 = 0.53125,
    class 0's t0 = mean P(0) over label 0 = (6 * 0.5 + 0.75 + 0.25) / 8 = 0.5. A positive at P(1) = 0.5 has
    P(0) = 0.5 = t0 exactly (confident in class 0) and P(1) < t1 (not in its own): suspicious, rows 0-6.
    The last negative (P(1) = 0.75 >= t1, P(0) < t0) is suspicious too; the other negatives sit at P(0) = t0."""
    p = [0.5] * 7 + [0.75] + [0.5] * 6 + [0.75, 0.25]
    y = np.array([1] * 8 + [0] * 8)
    found, p1 = poisoning.find_label_issues(_FeatureIsTheScore(), _scored(p), y, seed=0)
    np.testing.assert_array_equal(found, [0, 1, 2, 3, 4, 5, 6, 14])
    np.testing.assert_array_equal(p1, p)


def test_a_label_confident_in_both_classes_by_the_same_margin_is_kept():
    """Every P(1) is 0.5, so both thresholds are 0.5 and every row is at both thresholds, with equal margins (0):
    the other class is not *more* confident, so nothing is suspicious."""
    y = np.array([1, 0] * 8)
    found, _ = poisoning.find_label_issues(_FeatureIsTheScore(), _scored([0.5] * 16), y, seed=0)
    assert found.size == 0


def test_a_label_confident_in_both_classes_but_more_in_the_other_is_suspicious():
    """A model backwards: positives at P(1) = 0.25, negatives at 0.75, so t1 = 0.25 and t0 = 0.25. A positive is at
    its own threshold (margin 0) and 0.5 above the other's: confident in both, more in the other -> every row."""
    y = np.array([1] * 8 + [0] * 8)
    found, _ = poisoning.find_label_issues(_FeatureIsTheScore(), _scored([0.25] * 8 + [0.75] * 8), y, seed=0)
    np.testing.assert_array_equal(found, np.arange(16))


def test_one_class_only_cannot_be_cross_validated():
    X, _ = _synthetic(20)
    for y in (np.zeros(20, dtype=int), np.ones(20, dtype=int)):
        found, p1 = poisoning.find_label_issues(_linear(), X, y, seed=0)
        assert found.size == 0 and found.dtype.kind == "i" and p1.shape == (20,) and np.isnan(p1).all()


def test_label_issue_folds_are_seeded_stratified_5_fold():
    X, y = _synthetic(60)
    y = y.copy()
    y[[3, 10, 20, 40, 50, 57]] = 1 - y[[3, 10, 20, 40, 50, 57]]
    _, p1 = poisoning.find_label_issues(_linear(), X, y, seed=4)
    cv = StratifiedKFold(n_splits=5, shuffle=True, random_state=4)  # independent sklearn call
    np.testing.assert_allclose(p1, cross_val_predict(_linear(), X, y, cv=cv, method="predict_proba")[:, 1], atol=1e-12)


def _metrics_by_sklearn(model, X_te, y_te):
    proba = model.predict_proba(X_te)[:, 1]
    pred = (proba >= 0.5).astype(int)
    return {
        "accuracy": accuracy_score(y_te, pred),
        "roc_auc": roc_auc_score(y_te, proba),
        "recall": recall_score(y_te, pred),
    }


@pytest.mark.parametrize("action", ["drop", "relabel"])
def test_defense_refits_on_the_cleaned_labels(action):
    """Nine positives hidden as negatives; the defense finds some of them and the refit model is scored on clean labels.
    Expected: a model fitted here on the rows minus the found ones (drop) or on the found labels flipped back."""
    X, y = _synthetic()
    flipped = np.arange(55, 100, 5)
    noisy = y.copy()
    noisy[flipped] = 0
    found, _ = poisoning.find_label_issues(_linear(), X, noisy, seed=0)
    assert 0 < found.size < flipped.size
    if action == "drop":
        keep = np.array([i for i in range(100) if i not in set(found)])
        model = _linear().fit(X.iloc[keep], noisy[keep])
    else:
        fixed = noisy.copy()
        fixed[found] = 1
        model = _linear().fit(X, fixed)
    expected = _metrics_by_sklearn(model, X, y)
    assert expected != _metrics_by_sklearn(_linear().fit(X, noisy), X, y)  # cleaning changes the numbers
    d = poisoning.defend(_linear(), X, noisy, flipped, X, y, seed=0, action=action)
    assert d.metrics_after == pytest.approx(expected)
    assert (d.flagged, d.true_positives, d.flipped) == (found.size, np.intersect1d(found, flipped).size, 9)
    assert d.chance_precision == pytest.approx(0.09) and d.recall == pytest.approx(found.size / 9)


def test_every_label_positive_leaves_a_model_that_always_says_disease():
    X, y = _synthetic(40)
    m, fit = poisoning._score(_linear(), X, np.ones(40, dtype=int), X, y)
    assert m == {"accuracy": 0.5, "roc_auc": 0.5, "recall": 1.0} and fit == poisoning.CONSTANT


def test_the_score_is_the_refitted_model_on_the_test_rows():
    X, y = _synthetic(60)
    noisy = y.copy()
    noisy[[31, 35, 40, 45]] = 0
    train, test = np.arange(0, 60, 2), np.arange(1, 60, 2)
    m, fit = poisoning._score(_linear(), X.iloc[train], noisy[train], X.iloc[test], y[test])
    assert fit == "fitted"  # no calibration step: nothing to cut
    assert m == pytest.approx(_metrics_by_sklearn(_linear().fit(X.iloc[train], noisy[train]), X.iloc[test], y[test]))
    assert list(m) == ["accuracy", "roc_auc", "recall"]


def test_two_runs_have_the_sample_sd():
    s = poisoning.summarize_runs([_run(10, 0.5), _run(13, 0.9)])
    assert s.flipped.sd == pytest.approx(np.sqrt(4.5))  # ((1.5^2 + 1.5^2) / (2 - 1)) ** 0.5
    assert s.metrics["recall"].sd == pytest.approx(np.sqrt(0.08)) and s.metrics["recall"].mean == pytest.approx(0.7)


def _noisy_synthetic(n=100):
    """As _synthetic, with labels from the feature plus noise, so rows near the boundary disagree with the model."""
    X, _ = _synthetic(n)
    x = X["oldpeak"].to_numpy()
    return X, (x + np.random.default_rng(2).normal(0, 1.0, n) > 0).astype(int)


@pytest.fixture  # per test: mutmut maps a function to the tests whose own run reaches it
def small():
    X, y = _noisy_synthetic()
    train_idx, test_idx = np.arange(0, 100, 2)[:40], np.arange(1, 100, 2)
    report = poisoning.run_poisoning(
        _linear(),
        X,
        y,
        train_idx,
        test_idx,
        rate=0.17,
        seeds=(3, 1),
        sweep_rates=(0.0, 0.33),
        action="relabel",
        n_jobs=1,
    )
    return X, y, train_idx, test_idx, report


def test_every_attack_run_is_its_seeded_flip_scored_by_a_refit(small):
    """Every run = flip_labels with its own seed's generator, a model refitted here on those labels, scored on the
    test rows; the budget is round(0.17 * 40) = round(6.8) = 7 rows (truncation: 6), the sweep's 0.33 * 40 = 13.2 -> 13."""
    X, y, train_idx, test_idx, r = small
    X_tr, y_tr, X_te, y_te = X.iloc[train_idx], y[train_idx], X.iloc[test_idx], y[test_idx]
    assert (r.train_rows, r.test_rows, r.train_positives, r.rate, r.budget_rows) == (40, 50, y_tr.sum(), 0.17, 7)
    assert r.clean == pytest.approx(_metrics_by_sklearn(_linear().fit(X_tr, y_tr), X_te, y_te))
    for name, targeted in (("random", False), ("targeted_positive_to_negative", True)):
        runs = r.attacks[name].runs
        assert [(x.seed, x.targeted, x.rate, x.flipped) for x in runs] == [
            (3, targeted, 0.17, 7),
            (1, targeted, 0.17, 7),
        ]
        for run in runs:
            poisoned, flipped = poisoning.flip_labels(y_tr, 0.17, np.random.default_rng(run.seed), targeted)
            assert run.metrics == pytest.approx(_metrics_by_sklearn(_linear().fit(X_tr, poisoned), X_te, y_te))
            expected = poisoning.defend(_linear(), X_tr, poisoned, flipped, X_te, y_te, run.seed, "relabel")
            assert run.defense == expected and run.defense.action == "relabel"
        summary = r.attacks[name].summary
        recall = [x.metrics["recall"] for x in runs]
        assert summary.metrics["recall"].mean == pytest.approx(np.mean(recall))
        assert summary.metrics["recall"].sd == pytest.approx(np.std(recall, ddof=1))
        assert summary.defense.flagged.mean == pytest.approx(np.mean([x.defense.flagged for x in runs]))
        assert [p.rate for p in r.sweep[name]] == [0.0, 0.33]
        assert [p.summary.flipped.mean for p in r.sweep[name]] == [0.0, 13.0]
        assert all(p.summary.defense is None for p in r.sweep[name])
        for point in r.sweep[name]:
            accuracy = [
                accuracy_score(
                    y_te,
                    _linear()
                    .fit(X_tr, poisoning.flip_labels(y_tr, point.rate, np.random.default_rng(s), targeted)[0])
                    .predict(X_te),
                )
                for s in (3, 1)
            ]
            assert point.summary.metrics["accuracy"].mean == pytest.approx(np.mean(accuracy)), (name, point.rate)


def test_the_clean_labels_defense_runs_with_the_first_seed(small):
    """On these labels the folds of seed 3 (the first) flag one row more than those of seed 1: the check bites."""
    X, y, train_idx, test_idx, r = small
    X_tr, y_tr, X_te, y_te = X.iloc[train_idx], y[train_idx], X.iloc[test_idx], y[test_idx]
    none = np.array([], dtype=int)
    first, second = (poisoning.defend(_linear(), X_tr, y_tr, none, X_te, y_te, s, "relabel") for s in (3, 1))
    assert first.flagged != second.flagged
    got = r.defense_on_clean_labels
    assert (got.action, got.flagged, got.flipped, got.true_positives) == ("relabel", first.flagged, 0, 0)
    assert got.precision == 0.0 and np.isnan(got.recall) and got.chance_precision == 0.0
    assert got.metrics_after == first.metrics_after


def test_the_report_dict_of_a_small_run_keeps_the_json_shape(small):
    r = small[-1]
    d = r.to_dict()
    assert list(d) == list(REPORT_KEYS)
    assert (d["train_rows"], d["test_rows"], d["train_positives"], d["rate"], d["budget_rows"], d["seeds"]) == (
        40,
        50,
        r.train_positives,
        0.17,
        7,
        [3, 1],
    )
    assert d["clean"] == r.clean and d["defense_on_clean_labels"] == dataclasses.asdict(r.defense_on_clean_labels)
    assert list(d["attacks"]) == ["random", "targeted_positive_to_negative"]
    attack = d["attacks"]["targeted_positive_to_negative"]
    assert list(attack) == ["summary", "runs"]
    summary = r.attacks["targeted_positive_to_negative"].summary
    assert attack["summary"] == {
        "flipped": {"mean": 7.0, "sd": 0.0},
        **{m: dataclasses.asdict(summary.metrics[m]) for m in poisoning.REPORTED},
        "defense": dataclasses.asdict(summary.defense),
        "fits": {"fitted": 2},
    }
    assert list(attack["summary"]) == ["flipped", "accuracy", "roc_auc", "recall", "defense", "fits"]
    assert attack["summary"]["defense"]["fits_after"] == {"fitted": 2} and d["clean_fit"] == "fitted"
    run = r.attacks["targeted_positive_to_negative"].runs[1]
    assert attack["runs"][1] == dataclasses.asdict(run) and attack["runs"][1]["defense"]["action"] == "relabel"
    point = d["sweep"]["random"][1]
    summary = r.sweep["random"][1].summary
    assert point == {
        "rate": 0.33,
        "flipped": {"mean": 13.0, "sd": 0.0},
        **{m: dataclasses.asdict(summary.metrics[m]) for m in poisoning.REPORTED},
        "fits": {"fitted": 2},
    }
    assert list(point) == ["rate", "flipped", "accuracy", "roc_auc", "recall", "fits"]
    assert [p["rate"] for p in d["sweep"]["targeted_positive_to_negative"]] == [0.0, 0.33]


def test_run_poisoning_defaults_are_five_seeds_and_drop():
    """A model that needs no fitting (its score is oldpeak) keeps the 5 seeds x (1 + 1 sweep rate) x 2 runs quick."""
    X = _scored(np.linspace(0.01, 0.99, 50))
    y = (X["oldpeak"].to_numpy() > 0.5).astype(int)
    r = poisoning.run_poisoning(
        _FeatureIsTheScore(), X, y, np.arange(0, 50, 2), np.arange(1, 50, 2), sweep_rates=(0.0,), n_jobs=1
    )
    assert r.seeds == [0, 1, 2, 3, 4] and r.rate == 0.2 and r.budget_rows == 5
    assert [x.seed for x in r.attacks["random"].runs] == [0, 1, 2, 3, 4]
    assert {x.defense.action for x in r.attacks["random"].runs} == {
        "drop"
    } and r.defense_on_clean_labels.action == "drop"


def test_the_defense_drops_by_default():
    """P(1) = oldpeak: t0 = 4.3 / 6, t1 = 4.6 / 6; only the row labelled 0 at P(1) = 0.95 >= t1 (P(0) < t0) is an issue."""
    p = np.array([0.05, 0.1, 0.15, 0.2, 0.25, 0.95, 0.7, 0.75, 0.8, 0.85, 0.9, 0.6])
    y = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    d = poisoning.defend(_FeatureIsTheScore(), _scored(p), y, np.array([5]), _scored(p), y, seed=0)
    assert (d.action, d.flagged, d.true_positives, d.precision, d.recall) == ("drop", 1, 1, 1.0, 1.0)


# --- Sets too lopsided for the calibration's inner 5-fold CV (issue 20) ---


def _calibrated(cv=5):
    """The served Pipeline's shape, preprocessing then a calibrated classifier, with a quick linear model inside."""
    model = CalibratedClassifierCV(LogisticRegression(), method="sigmoid", cv=cv, ensemble=False)
    return Pipeline([("preprocess", make_pipeline(SimpleImputer(), StandardScaler())), ("model", model)])


def _lopsided(positives, n=60):
    """The synthetic rows with only the top `positives` of them labelled 1."""
    X, _ = _synthetic(n)
    return X, (np.arange(n) >= n - positives).astype(int)


@pytest.mark.parametrize("smallest, folds", [(50, 5), (5, 5), (4, 4), (3, 3), (2, 2)])
def test_a_short_class_cuts_the_calibration_folds_to_its_rows(smallest, folds):
    template = _calibrated()
    model, fit = poisoning.fit_plan(template, smallest)
    assert fit == f"{folds}-fold calibration" and model.get_params()["model__cv"] == folds
    assert model is not template and template.get_params()["model__cv"] == 5  # the template is left as it was


@pytest.mark.parametrize("smallest, fit", [(1, "not trainable"), (0, "constant (one class left)")])
def test_one_row_of_a_class_is_not_trainable_and_none_is_a_constant(smallest, fit):
    assert poisoning.fit_plan(_calibrated(), smallest) == (None, fit)


def test_a_bare_calibrated_classifier_and_sklearns_default_cv():
    bare = CalibratedClassifierCV(LogisticRegression())  # cv=None: sklearn's 5 folds
    model, fit = poisoning.fit_plan(bare, 3)
    assert fit == "3-fold calibration" and model.cv == 3 and bare.cv is None
    model, fit = poisoning.fit_plan(bare, 7)
    assert fit == "5-fold calibration" and model.cv is None


def test_a_model_without_calibration_fits_on_one_row_of_a_class():
    template = _linear()
    model, fit = poisoning.fit_plan(template, 1)
    assert fit == "fitted" and model is not template


def test_two_positives_are_scored_by_a_2_fold_calibrated_model():
    """What crashed data_poisoning.py (45% targeted flips leave 2 positives): now a 2-fold calibration, the
    same numbers as fitting that model here."""
    X, y = _lopsided(2)
    X_te, y_te = _synthetic(40)
    with pytest.raises(ValueError, match="Requesting 5-fold cross-validation"):
        _calibrated().fit(X, y)
    m, fit = poisoning._score(_calibrated(), X, y, X_te, y_te)
    assert fit == "2-fold calibration"
    assert m == pytest.approx(_metrics_by_sklearn(_calibrated(cv=2).fit(X, y), X_te, y_te))


def test_one_positive_or_no_row_is_not_trainable():
    X_te, y_te = _synthetic(40)
    X, y = _lopsided(1)
    for X_tr, y_tr in ((X, y), (X.iloc[:0], y[:0])):
        m, fit = poisoning._score(_calibrated(), X_tr, y_tr, X_te, y_te)
        assert fit == "not trainable" and list(m) == list(poisoning.REPORTED) and np.isnan(list(m.values())).all()


def test_label_issues_on_five_of_a_class_calibrate_each_fold_on_four():
    """The defense's 5 outer folds leave 4 positives in each training part: the inner calibration gets 4 folds."""
    X, y = _lopsided(5)
    found, p1 = poisoning.find_label_issues(_calibrated(), X, y, seed=0)
    cv = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    expected = cross_val_predict(_calibrated(cv=4), X, y, cv=cv, method="predict_proba")[:, 1]
    np.testing.assert_allclose(p1, expected, atol=1e-12)


def test_a_defense_that_drops_every_row_leaves_a_set_not_trainable():
    y = np.array([1] * 8 + [0] * 8)
    X = _scored([0.25] * 8 + [0.75] * 8)  # a model backwards: every row is suspicious (see above)
    d = poisoning.defend(_FeatureIsTheScore(), X, y, np.array([], dtype=int), X, y, seed=0, action="drop")
    assert d.flagged == 16 and d.fit_after == "not trainable" and np.isnan(d.metrics_after["recall"])


def _runs(recalls, fits):
    return [
        dataclasses.replace(_run(10, r), metrics={m: r for m in poisoning.REPORTED}, fit=f)
        for r, f in zip(recalls, fits)
    ]


def test_metrics_are_over_the_trainable_seeds_and_the_fits_are_counted():
    nan = float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "mean of empty slice" or "degrees of freedom" on the way
        none = poisoning.summarize_runs(_runs([nan, nan], ["not trainable"] * 2))
        mixed = poisoning.summarize_runs(_runs([0.5, nan, 0.7], ["2-fold calibration", "not trainable", "5-fold"]))
    assert np.isnan(none.metrics["recall"].mean) and np.isnan(none.metrics["recall"].sd)
    assert none.fits == {"not trainable": 2} and none.to_dict()["fits"] == {"not trainable": 2}
    assert mixed.metrics["recall"].mean == pytest.approx(0.6) and mixed.metrics["recall"].sd == pytest.approx(0.02**0.5)
    assert mixed.fits == {"2-fold calibration": 1, "not trainable": 1, "5-fold": 1}


def test_fits_are_described_against_the_clean_models():
    assert poisoning_report.describe_fits({"5-fold calibration": 3}, "5-fold calibration") == ""
    assert poisoning_report.describe_fits({"2-fold calibration": 3}, "5-fold calibration") == "2-fold calibration"
    assert (
        poisoning_report.describe_fits(
            {"5-fold calibration": 1, "not trainable": 2, "2-fold calibration": 1}, "5-fold calibration"
        )
        == "not trainable (2 of 4 seeds), 2-fold calibration (1 of 4 seeds)"
    )


@pytest.fixture(scope="module")
def extremes(loaded, dataset):
    """The real training split (242 rows, 111 with disease), the card's Pipeline with 20 trees to keep it quick."""
    train_idx, test_idx = card_split(loaded.card, dataset.y)
    pipeline = forest_from_card(loaded.card).set_params(model__estimator__n_estimators=20)
    result = poisoning.run_poisoning(
        pipeline, dataset.X, dataset.y, train_idx, test_idx, rate=0.5, seeds=(0, 1), sweep_rates=(0.0, 0.45, 0.455, 0.5)
    )
    return pipeline, train_idx, test_idx, result


@pytest.mark.slow
def test_the_extreme_points_of_the_targeted_sweep(extremes, dataset):
    """Targeted flips of 0%, 45% (109 of 111 positives: 2 left), 45.5% (110: 1 left) and 50% (all of them)."""
    pipeline, train_idx, test_idx, r = extremes
    assert (r.train_rows, r.train_positives, r.clean_fit) == (242, 111, "5-fold calibration")
    curve = r.sweep["targeted_positive_to_negative"]
    assert [p.summary.flipped.mean for p in curve] == [0, 109, 110, 111]
    assert [p.summary.fits for p in curve] == [
        {"5-fold calibration": 2},
        {"2-fold calibration": 2},
        {"not trainable": 2},
        {"constant (one class left)": 2},
    ]
    assert all(np.isnan(curve[2].summary.metrics[m].mean) for m in poisoning.REPORTED)
    y_tr, y_te = dataset.y[train_idx], dataset.y[test_idx]
    X_tr, X_te = dataset.X.iloc[train_idx], dataset.X.iloc[test_idx]
    clean = _metrics_by_sklearn(clone(pipeline).fit(X_tr, y_tr), X_te, y_te)
    assert r.clean == pytest.approx(clean)
    assert {m: curve[0].summary.metrics[m].mean for m in clean} == r.clean  # 0%: the clean model for every seed
    recall = []
    for seed in (0, 1):
        poisoned, _ = poisoning.flip_labels(y_tr, 0.45, np.random.default_rng(seed), targeted=True)
        model = clone(pipeline).set_params(model__cv=2).fit(X_tr, poisoned)
        recall.append(_metrics_by_sklearn(model, X_te, y_te)["recall"])
    assert curve[1].summary.metrics["recall"].mean == pytest.approx(np.mean(recall))
    every = curve[3].summary.metrics
    assert (every["recall"].mean, every["roc_auc"].mean) == (0.0, 0.5)  # it says "no disease" to everyone
    assert every["accuracy"].mean == pytest.approx(np.mean(y_te == 0))


@pytest.mark.slow
def test_random_flips_at_50_percent_and_one_class_left_in_the_main_attack(extremes):
    *_, r = extremes
    assert [p.summary.fits for p in r.sweep["random"]][1:] == [{"5-fold calibration": 2}] * 3
    assert all(np.isfinite(p.summary.metrics["accuracy"].mean) for p in r.sweep["random"])
    targeted = r.attacks["targeted_positive_to_negative"]
    assert targeted.summary.fits == {"constant (one class left)": 2}
    assert targeted.summary.defense.fits_after == {
        "constant (one class left)": 2
    }  # nothing to learn from, nothing found
    assert [run.defense.flagged for run in targeted.runs] == [0, 0]


@pytest.mark.slow
def test_not_trainable_is_null_in_the_json_and_named_in_the_plot(extremes, tmp_path, monkeypatch):
    *_, r = extremes
    doc = json.loads(report.write_json(tmp_path / "poisoning.json", r.to_dict()).read_text())
    point = doc["sweep"]["targeted_positive_to_negative"][2]
    assert point["recall"] == {"mean": None, "sd": None} and point["fits"] == {"not trainable": 2}
    figures = []
    monkeypatch.setattr(poisoning_report, "save_figure", lambda fig, path: figures.append(fig) or path)
    poisoning_report.plot_poisoning(r, tmp_path / "poisoning.png")
    random_axes, targeted_axes = figures[0].axes
    assert targeted_axes.get_xlabel().splitlines()[1:] == [
        "45%: 2-fold calibration",
        "45.5%: not trainable",
        "50%: constant (one class left)",
    ]
    assert random_axes.get_xlabel() == "training labels flipped (% of training rows)"


def test_fit_notes_name_each_attack_and_sweep_point_modelled_otherwise():
    def summary(fits):
        return {"fits": fits, "defense": {"fits_after": fits}}

    five, two, constant = (
        {"5-fold calibration": 2},
        {"2-fold calibration": 1, "not trainable": 1},
        {poisoning.CONSTANT: 2},
    )
    doc = {
        "clean_fit": "5-fold calibration",
        "attacks": {
            "random": {"summary": summary(five)},
            "targeted_positive_to_negative": {"summary": summary(constant)},
        },
        "sweep": {
            "random": [{"fits": five}, {"fits": five}],
            "targeted_positive_to_negative": [{"fits": five}, {"fits": two}],
        },
    }
    main, sweep = poisoning_report.fit_notes(doc)
    assert main == ["targeted: constant (one class left)", "targeted + defense: constant (one class left)"]
    assert sweep == ["", "targeted: 2-fold calibration (1 of 2 seeds), not trainable (1 of 2 seeds)"]
    assert poisoning_report.fit_notes(doc, defense="defence")[0][1].startswith("targeted + defence: ")
    old = {**doc, "sweep": {k: [{} for _ in v] for k, v in doc["sweep"].items()}}  # written before fits were recorded
    del old["clean_fit"]
    old["attacks"] = {k: {"summary": {"defense": {}}} for k in doc["attacks"]}
    assert poisoning_report.fit_notes(old) == ([], ["", ""])
