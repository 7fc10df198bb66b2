"""Fairness numbers match a hand computation, intervals are sane, mitigation does its job."""
import json

import numpy as np
import pandas as pd
import pytest

from heart import fairness
from heart.model import card_split, forest_from_card


def test_group_metrics_match_a_hand_computation():
    y = np.array([1, 1, 0, 0, 1, 0, 0, 0])
    pred = np.array([1, 0, 0, 1, 1, 1, 0, 0])
    groups = pd.Series(["A"] * 4 + ["B"] * 4)
    r = fairness.group_report(y, pred, groups, seed=0, n_boot=300)
    a, b = r.by_group["A"], r.by_group["B"]
    assert (a["accuracy"], a["selection_rate"], a["true_positive_rate"], a["false_negative_rate"],
            a["false_positive_rate"], a["precision"], a["count"]) == (0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 4)
    assert b["accuracy"] == 0.75 and b["selection_rate"] == 0.5 and b["true_positive_rate"] == 1.0
    assert b["false_negative_rate"] == 0.0 and b["false_positive_rate"] == pytest.approx(1 / 3) and b["precision"] == 0.5
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
    return fairness.analyze(loaded.pipeline, forest_from_card(loaded.card), dataset.X, dataset.y, train_idx,
                            test_idx, "gender", seed=0, n_boot=300)


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
    width = {v: np.mean([g.ci95[1] - g.ci95[0] for g in part.gaps["male - female"].values()])
             for v, part in views.items()}
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
    assert list(d) == ["sensitive_feature", "grouping", "threshold", "bootstrap", "held_out", "out_of_fold", "mitigation"]
    assert d["bootstrap"] == {"resamples": 300, "seed": 0, "interval": "percentile 95%"}
    gap = d["held_out"]["gaps"]["male - female"]["true_positive_rate"]
    assert gap == {"gap": result.held_out.gaps["male - female"]["true_positive_rate"].gap,
                   "ci95": result.held_out.gaps["male - female"]["true_positive_rate"].ci95,
                   "boot_samples": 300, "excludes_zero": gap["excludes_zero"]}
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
    again = fairness.analyze(loaded.pipeline, forest_from_card(loaded.card), dataset.X, dataset.y, train_idx,
                             test_idx, "gender", seed=0, n_boot=300)
    assert again == result
