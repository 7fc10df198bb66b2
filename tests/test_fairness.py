"""Fairness numbers match a hand computation, intervals are sane, mitigation does its job."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from heart import fairness
from heart.model import card_split, forest_from_card


def test_group_metrics_match_a_hand_computation():
    y = np.array([1, 1, 0, 0, 1, 0, 0, 0])
    pred = np.array([1, 0, 0, 1, 1, 1, 0, 0])
    groups = pd.Series(["A"] * 4 + ["B"] * 4)
    r = fairness.group_report(y, pred, groups, seed=0, n_boot=300)
    a, b = r.by_group["A"], r.by_group["B"]
    assert (
        a["accuracy"],
        a["selection_rate"],
        a["true_positive_rate"],
        a["false_negative_rate"],
        a["false_positive_rate"],
        a["precision"],
        a["count"],
    ) == (0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 4)
    assert b["accuracy"] == 0.75 and b["selection_rate"] == 0.5 and b["true_positive_rate"] == 1.0
    assert (
        b["false_negative_rate"] == 0.0 and b["false_positive_rate"] == pytest.approx(1 / 3) and b["precision"] == 0.5
    )
    assert list(r.gaps) == ["B - A"]
    gaps = r.gaps["B - A"]
    assert gaps["accuracy"].gap == pytest.approx(0.25)
    assert gaps["true_positive_rate"].gap == pytest.approx(0.5)
    assert gaps["false_positive_rate"].gap == pytest.approx(-1 / 6)
    for m, gap in gaps.items():
        assert gap.ci95[0] <= gap.gap <= gap.ci95[1], m
    assert r.demographic_parity_difference == pytest.approx(0.0)
    assert r.equalized_odds_difference == pytest.approx(0.5)  # max(|TPR gap|, |FPR gap|)
    assert r.difference["accuracy"] == pytest.approx(0.25)  # Fairlearn's unsigned between-groups difference
    assert r.overall["accuracy"] == pytest.approx(5 / 8)


def test_sensitive_groups_from_the_schema(dataset):
    g = fairness.sensitive_groups(dataset.X, "gender")
    assert set(g) == {"female", "male"} and (g == "female").sum() == 97
    age = fairness.sensitive_groups(dataset.X, "age")
    ages = dataset.X["age"].to_numpy()
    assert (age == "40-59").sum() == ((ages >= 40) & (ages < 60)).sum()
    assert set(age) == {"20-39", "40-59", "60-79"}
    ca = fairness.sensitive_groups(dataset.X, "ca")
    assert (ca == "missing").sum() == 4  # missing values form their own group
    chol = fairness.sensitive_groups(dataset.X, "chol")
    assert chol.nunique() == 3 and abs(chol.value_counts().max() - chol.value_counts().min()) <= 5
    with pytest.raises(ValueError, match="unknown sensitive feature"):
        fairness.sensitive_groups(dataset.X, "height")


@pytest.fixture(scope="module")
def result(loaded, dataset):
    train_idx, test_idx = card_split(loaded.card, dataset.y)
    return fairness.analyze(
        loaded.pipeline,
        forest_from_card(loaded.card),
        dataset.X,
        dataset.y,
        train_idx,
        test_idx,
        "gender",
        seed=0,
        n_boot=300,
    )


def test_real_model_both_views_and_intervals_contain_the_estimate(result):
    assert result.held_out.n == 61 and result.out_of_fold.n == 303
    assert sum(g["count"] for g in result.out_of_fold.by_group.values()) == 303
    views = {"held_out": result.held_out, "out_of_fold": result.out_of_fold}
    for view, part in views.items():
        assert list(part.gaps) == ["male - female"]
        for metric, gap in part.gaps["male - female"].items():
            low, high = gap.ci95
            assert low <= gap.gap <= high, (view, metric, gap)
            assert gap.excludes_zero == (low > 0 or high < 0)
    # more rows, narrower intervals: the out-of-fold view is the one that can tell gaps from noise
    width = {
        v: np.mean([g.ci95[1] - g.ci95[0] for g in part.gaps["male - female"].values()]) for v, part in views.items()
    }
    assert width["out_of_fold"] < width["held_out"]


def test_more_than_two_groups_are_compared_with_the_largest():
    y = np.array([1, 0] * 30)
    pred = np.array([1, 0] * 20 + [0, 0] * 10)
    groups = pd.Series(["a"] * 10 + ["b"] * 30 + ["c"] * 20)
    r = fairness.group_report(y, pred, groups, seed=0, n_boot=200)
    assert list(r.gaps) == ["a - b", "c - b"]
    assert r.gaps["c - b"]["true_positive_rate"].gap == pytest.approx(-1.0)
    assert r.gaps["a - b"]["true_positive_rate"].gap == pytest.approx(0.0)
    assert r.difference["true_positive_rate"] == pytest.approx(1.0)


def test_threshold_optimizer_reduces_the_gap_it_was_fitted_on(result):
    mit = result.mitigation.train_out_of_fold
    assert mit.after.equalized_odds_difference < mit.before.equalized_odds_difference
    held_out = result.mitigation.held_out
    assert 0 <= held_out.after.accuracy <= 1 and held_out.before.accuracy >= 0.75


def test_report_dict_has_the_json_shape_the_scripts_write(result):
    d = result.to_dict()
    assert list(d) == [
        "sensitive_feature",
        "grouping",
        "threshold",
        "bootstrap",
        "held_out",
        "out_of_fold",
        "mitigation",
    ]
    assert d["bootstrap"] == {"resamples": 300, "seed": 0, "interval": "percentile 95%"}
    gap = d["held_out"]["gaps"]["male - female"]["true_positive_rate"]
    assert gap == {
        "gap": result.held_out.gaps["male - female"]["true_positive_rate"].gap,
        "ci95": result.held_out.gaps["male - female"]["true_positive_rate"].ci95,
        "boot_samples": 300,
        "excludes_zero": gap["excludes_zero"],
    }
    assert list(d["mitigation"]) == ["method", "train_out_of_fold", "held_out"]
    assert d["mitigation"]["held_out"]["after"]["accuracy"] == result.mitigation.held_out.after.accuracy
    json.dumps(d, allow_nan=False)


def test_mitigation_skipped_for_a_one_class_group_says_why_and_only_that():
    scores = np.array([0.2, 0.8, 0.3, 0.9, 0.1, 0.7])
    y = np.array([0, 1, 0, 1, 0, 0])
    g = pd.Series(["a", "a", "a", "a", "b", "b"])  # group b has no positives
    mit = fairness.mitigate(scores, y, g, scores, y, g)
    assert "group 'b' has only one class in the training rows" in mit.skipped
    assert mit.to_dict() == {"skipped": mit.skipped}


def test_analysis_is_reproducible(loaded, dataset, result):
    train_idx, test_idx = card_split(loaded.card, dataset.y)
    again = fairness.analyze(
        loaded.pipeline,
        forest_from_card(loaded.card),
        dataset.X,
        dataset.y,
        train_idx,
        test_idx,
        "gender",
        seed=0,
        n_boot=300,
    )
    assert again == result


def test_age_bins_are_floored_to_twenty_years_at_both_edges():
    X = pd.DataFrame({"age": [20, 39, 40, 59, 60, 79, 80, np.nan]})
    got = list(fairness.sensitive_groups(X, "age"))
    assert got == ["20-39", "20-39", "40-59", "40-59", "60-79", "60-79", "80-99", "missing"]


def test_continuous_groups_are_tertiles_named_by_their_edges():
    X = pd.DataFrame({"chol": [100.0, 200, 300, 400, 500, 600, 700, 800, 900, np.nan]})
    g = fairness.sensitive_groups(X, "chol")
    assert list(g) == ["1: 100-366.7 mg/dl"] * 3 + ["2: 366.7-633.3 mg/dl"] * 3 + ["3: 633.3-900 mg/dl"] * 3 + [
        "missing"
    ]
    assert g.name == "chol" and list(g.index) == list(X.index)


def test_codes_are_named_by_their_meaning_and_unknown_codes_kept():
    X = pd.DataFrame({"cp": [0.0, 3.0, 7.0, np.nan]}, index=[5, 6, 7, 8])
    assert fairness.sensitive_groups(X, "cp").to_dict() == {
        5: "asymptomatic",
        6: "typical angina",
        7: "7.0",
        8: "missing",
    }
    with pytest.raises(ValueError, match="^unknown sensitive feature 'height': choose one of age, gender, cp, "):
        fairness.sensitive_groups(X, "height")


def test_metrics_of_a_group_without_positives_negatives_or_selections_are_undefined_not_zero():
    y = np.array([0, 0, 1, 1, 1, 0])
    pred = np.array([0, 0, 1, 0, 1, 1])
    g = np.array(["neg", "neg", "pos", "pos", "mix", "mix"])
    m = fairness._group_metrics(y, pred, g, ["neg", "pos", "mix", "absent"])
    assert np.isnan(m["true_positive_rate"][0]) and np.isnan(m["false_negative_rate"][0])
    assert m["false_positive_rate"][0] == 0.0 and m["precision"][0] == 0.0 and m["accuracy"][0] == 1.0
    assert np.isnan(m["false_positive_rate"][1]) and m["true_positive_rate"][1] == 0.5
    assert m["false_negative_rate"][1] == 0.5 and m["precision"][1] == 1.0 and m["selection_rate"][1] == 0.5
    assert m["false_positive_rate"][2] == 1.0 and m["precision"][2] == 0.5 and m["accuracy"][2] == 0.5
    assert all(np.isnan(v[3]) for v in m.values())


def test_comparisons_against_the_largest_group():
    assert fairness.comparisons(["a", "b"], {"a": 10, "b": 3}) == [(1, 0)]
    assert fairness.comparisons(["a", "b", "c"], {"a": 5, "b": 9, "c": 7}) == [(0, 1), (2, 1)]
    assert fairness.comparisons(["a", "b", "c"], {"a": 9, "b": 2, "c": 7}) == [(1, 0), (2, 0)]


def test_bootstrap_interval_is_the_central_95_percent_not_narrower_or_wider():
    """Selection rates of 0.5 in two groups of 500: the gap's standard error is sqrt(2 * 0.25 / 500) = 0.0316,
    so a 95% percentile interval is about +-0.062 (a 90% one +-0.052, a 99% one +-0.081)."""
    y = np.ones(1000, dtype=int)
    pred = np.tile([0, 1], 500)
    groups = pd.Series(["a"] * 500 + ["b"] * 500)
    gap = fairness.group_report(y, pred, groups, seed=1, n_boot=2000).gaps["b - a"]["selection_rate"]
    assert gap.gap == 0.0 and gap.boot_samples == 2000 and gap.excludes_zero is False
    low, high = gap.ci95
    assert -0.070 < low < -0.056 and 0.056 < high < 0.070


def test_an_interval_away_from_zero_is_flagged_and_undefined_resamples_are_dropped():
    y = np.array([1, 0] * 40)
    pred = np.array([1, 0] * 20 + [0, 1] * 20)  # group a always right, group b always wrong
    groups = pd.Series(["a"] * 40 + ["b"] * 40)
    r = fairness.group_report(y, pred, groups, seed=0, n_boot=200)
    acc = r.gaps["b - a"]["accuracy"]
    assert (acc.gap, acc.ci95, acc.excludes_zero, acc.boot_samples) == (-1.0, [-1.0, -1.0], True, 200)
    assert r.by_group["a"]["positives"] == 20 and r.by_group["b"]["count"] == 40 and r.n == 80
    one = fairness.group_report(np.array([1, 0, 1]), np.array([1, 0, 0]), pd.Series(["a"] * 3), n_boot=10)
    assert one.gaps == {} and one.groups == ["a"]


def test_given_scores_threshold_is_inclusive():
    est = fairness._GivenScores().fit(None)
    np.testing.assert_array_equal(est.predict(np.array([[0.49], [0.5], [0.9]])), [0, 1, 1])
    np.testing.assert_allclose(est.predict_proba(np.array([[0.25]])), [[0.75, 0.25]])
    np.testing.assert_array_equal(est.classes_, [0, 1])


def test_mitigation_names_the_held_out_group_with_one_class():
    scores = np.array([0.2, 0.8, 0.3, 0.9, 0.1, 0.7, 0.6, 0.4])
    y = np.array([0, 1, 0, 1, 0, 1, 1, 0])
    g = pd.Series(["a", "a", "a", "a", "b", "b", "b", "b"])
    mit = fairness.mitigate(scores, y, g, scores[:4], np.array([0, 1, 0, 0]), pd.Series(["a", "a", "c", "c"]))
    assert mit.skipped == (
        "group 'c' has only one class in the held-out rows: equalized odds thresholds cannot be fitted or checked"
    )


def _linear():
    return make_pipeline(SimpleImputer(), StandardScaler(), LogisticRegression())


def test_analysis_with_a_small_model_reports_what_it_was_asked(dataset):
    train_idx, test_idx = np.arange(0, 303, 5)[:50], np.arange(1, 303, 5)
    X, y = dataset.X, dataset.y
    fitted = _linear().fit(X.iloc[train_idx], y[train_idx])
    r = fairness.analyze(
        fitted, _linear(), X, y, train_idx, test_idx, "gender", seed=0, n_boot=20, threshold=0.5, n_jobs=1
    )
    assert (r.sensitive_feature, r.grouping, r.threshold) == ("gender", "schema codes", 0.5)
    assert r.bootstrap == fairness.Bootstrap(resamples=20, seed=0)
    assert r.held_out.n == len(test_idx) and r.out_of_fold.n == 303
    proba = fitted.predict_proba(X.iloc[test_idx])[:, 1]
    assert r.held_out.overall["selection_rate"] == pytest.approx(np.mean(proba >= 0.5))
    before = r.mitigation.held_out.before
    assert before.accuracy == pytest.approx(np.mean((proba >= 0.5) == y[test_idx]))
    assert r.mitigation.train_out_of_fold.before.selection_rate < 1
    high = fairness.analyze(
        fitted, _linear(), X, y, train_idx, test_idx, "age", seed=0, n_boot=5, threshold=1.01, n_jobs=1
    )
    assert high.grouping == "20-year bins" and high.threshold == 1.01
    assert high.held_out.overall["selection_rate"] == 0.0 and high.out_of_fold.overall["selection_rate"] == 0.0
    assert (
        fairness.analyze(fitted, _linear(), X, y, train_idx, test_idx, "chol", n_boot=5, n_jobs=1).grouping
        == "tertiles"
    )
