"""Fairness numbers match a hand computation, intervals are sane, mitigation does its job."""

import dataclasses
import json
import warnings

import numpy as np
import pandas as pd
import pytest
from fairlearn.postprocessing import ThresholdOptimizer
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from heart.analyses import fairness
from heart.model import card_split, forest_from_card

# the top-level keys of the JSON report the script writes, in order
REPORT_KEYS = (
    "sensitive_feature",
    "grouping",
    "threshold",
    "bootstrap",
    "held_out",
    "out_of_fold",
    "mitigation",
)


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


@pytest.mark.slow
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


@pytest.mark.slow
def test_threshold_optimizer_reduces_the_gap_it_was_fitted_on(result):
    mit = result.mitigation.train_out_of_fold
    assert mit.after.equalized_odds_difference < mit.before.equalized_odds_difference
    held_out = result.mitigation.held_out
    assert 0 <= held_out.after.accuracy <= 1 and held_out.before.accuracy >= 0.75


@pytest.mark.slow
def test_report_dict_has_the_json_shape_the_scripts_write(result):
    d = result.to_dict()
    assert list(d) == list(REPORT_KEYS)
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


@pytest.mark.slow
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


# --- Value checks against independent computations (mutation testing, issue 15) ---


def _rates_by_confusion_counts(yt, yp):
    """The six metrics from the confusion counts (tn, fp, fn, tp): an independent route to _group_metrics."""
    tn, fp, fn, tp = np.bincount(2 * yt + yp, minlength=4)
    n = tn + fp + fn + tp
    tpr = tp / (tp + fn) if tp + fn else np.nan
    return {
        "accuracy": (tp + tn) / n if n else np.nan,
        "selection_rate": (tp + fp) / n if n else np.nan,
        "true_positive_rate": tpr,
        "false_negative_rate": 1 - tpr,
        "false_positive_rate": fp / (fp + tn) if fp + tn else np.nan,
        "precision": (tp / (tp + fp) if tp + fp else 0.0) if n else np.nan,
    }


def test_bootstrap_bounds_are_the_2_5_and_97_5_percentiles_of_an_independent_resampling():
    """Redo the bootstrap by hand (same generator, n rows drawn with replacement from all rows, the gap per
    resample from the confusion counts, undefined resamples dropped) and compare both bounds exactly."""
    data = np.random.default_rng(11)
    y = data.integers(0, 2, 40)
    y[:10] = [1, 0, 0, 0, 0, 0, 0, 0, 0, 1]  # group "f": two positives, so its TPR is often undefined
    pred = data.integers(0, 2, 40)
    groups = pd.Series(["f"] * 10 + ["m"] * 30)
    r = fairness.group_report(y, pred, groups, seed=7, n_boot=300)
    rng = np.random.default_rng(7)
    g = groups.to_numpy()
    gaps = {m: [] for m in fairness.METRICS}
    for _ in range(300):
        idx = rng.integers(0, 40, 40)
        yb, pb, gb = y[idx], pred[idx], g[idx]
        f = _rates_by_confusion_counts(yb[gb == "f"], pb[gb == "f"])
        m = _rates_by_confusion_counts(yb[gb == "m"], pb[gb == "m"])
        for k in gaps:
            gaps[k].append(m[k] - f[k])
    assert list(r.gaps) == ["m - f"]
    for k, values in gaps.items():
        v = np.array(values, dtype=float)
        v = v[~np.isnan(v)]
        got = r.gaps["m - f"][k]
        assert got.boot_samples == v.size, k
        assert got.ci95 == pytest.approx(list(np.percentile(v, [2.5, 97.5])), abs=1e-12), k
        assert got.ci95[0] < got.ci95[1], k
    # the TPR of a 2-positive group is undefined in a good share of resamples, and those are dropped
    assert 150 < r.gaps["m - f"]["true_positive_rate"].boot_samples < 300
    assert r.gaps["m - f"]["accuracy"].boot_samples == 300


def test_an_interval_touching_zero_does_not_exclude_it():
    """One wrong prediction among 40 rows of one group: a resample misses that row about 37% of the time
    ((79/80)^80), so the 2.5th percentile of the gap is exactly 0 and the interval does not exclude 0."""
    y = np.array([1, 0] * 40)
    one_wrong_in_a, one_wrong_in_b = y.copy(), y.copy()
    one_wrong_in_a[3] = 1 - y[3]
    one_wrong_in_b[43] = 1 - y[43]
    groups = pd.Series(["a"] * 40 + ["b"] * 40)
    up = fairness.group_report(y, one_wrong_in_a, groups, seed=0, n_boot=200).gaps["b - a"]["accuracy"]
    assert up.ci95[0] == 0.0 and 0 < up.ci95[1] < 0.2 and up.gap == pytest.approx(1 / 40)
    assert up.excludes_zero is False
    down = fairness.group_report(y, one_wrong_in_b, groups, seed=0, n_boot=200).gaps["b - a"]["accuracy"]
    assert down.ci95[1] == 0.0 and -0.2 < down.ci95[0] < 0 and down.gap == pytest.approx(-1 / 40)
    assert down.excludes_zero is False


def test_a_gap_undefined_in_every_resample_has_no_interval():
    y = np.array([1, 0, 1, 0, 0, 0, 0, 0])
    pred = np.array([1, 0, 0, 0, 1, 0, 0, 0])
    groups = pd.Series(["a"] * 4 + ["b"] * 4)  # b has no positives: its TPR never exists
    gap = fairness.group_report(y, pred, groups, seed=0, n_boot=50).gaps["b - a"]["true_positive_rate"]
    assert gap.boot_samples == 0 and gap.excludes_zero is False
    assert np.isnan(gap.gap) and len(gap.ci95) == 2 and np.isnan(gap.ci95).all()


def _quick():
    """Gaussian naive Bayes: fits in closed form (fast), and its out-of-fold scores depend on the folds."""
    return make_pipeline(SimpleImputer(), GaussianNB())


def _small_set(dataset, rows=120):
    """The first rows of the data set: enough for 5-fold CV of a linear model, fast."""
    X, y = dataset.X.iloc[:rows].reset_index(drop=True), dataset.y[:rows]
    train_idx, test_idx = np.arange(0, rows, 3)[:-5], np.arange(1, rows, 3)
    return X, y, train_idx, test_idx


def test_out_of_fold_scores_are_a_seeded_stratified_5_fold_cross_val_predict(dataset):
    X, y, _, _ = _small_set(dataset)
    got = fairness.out_of_fold_scores(_quick(), X, y, seed=3, n_jobs=1)
    cv = StratifiedKFold(n_splits=5, shuffle=True, random_state=3)  # independent sklearn call
    expected = cross_val_predict(_quick(), X, y, cv=cv, method="predict_proba")[:, 1]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    other_seed = fairness.out_of_fold_scores(_quick(), X, y, seed=4, n_jobs=1)
    assert np.abs(other_seed - got).max() > 1e-3  # the folds depend on the seed, so the check bites


def same(a, b) -> bool:
    """Dataclass equality where NaN (a 0/0 rate) equals NaN, as it does in the JSON report."""
    return json.dumps(dataclasses.asdict(a)) == json.dumps(dataclasses.asdict(b))


def test_analysis_wires_seed_threshold_and_rows_to_its_parts(dataset):
    """analyze() = held-out predictions of the saved model + out-of-fold scores of a fresh copy over all rows
    (and over the training rows for mitigation), each cut at the given threshold, with the given seed."""
    X, y, train_idx, test_idx = _small_set(dataset)
    fitted = _quick().fit(X.iloc[train_idx], y[train_idx])
    # a threshold from the held-out scores (their lower quartile), so that it cuts differently
    # from the default 0.5 there (asserted below) and a threshold not passed on would show
    t = float(np.sort(fitted.predict_proba(X.iloc[test_idx])[:, 1])[len(test_idx) // 4])
    r = fairness.analyze(
        fitted, _quick(), X, y, train_idx, test_idx, "gender", seed=3, n_boot=30, threshold=t, n_jobs=1
    )
    groups = fairness.sensitive_groups(X, "gender")
    proba = fitted.predict_proba(X)[:, 1]
    assert r.bootstrap == fairness.Bootstrap(resamples=30, seed=3)
    assert same(
        r.held_out, fairness.group_report(y[test_idx], (proba[test_idx] >= t).astype(int), groups.iloc[test_idx], 3, 30)
    )

    def oof(rows):
        cv = StratifiedKFold(n_splits=5, shuffle=True, random_state=3)
        return cross_val_predict(_quick(), X.iloc[rows], y[rows], cv=cv, method="predict_proba")[:, 1]

    everything = np.arange(len(y))
    assert same(r.out_of_fold, fairness.group_report(y, (oof(everything) >= t).astype(int), groups, 3, 30))
    expected = fairness.mitigate(
        oof(train_idx),
        y[train_idx],
        groups.iloc[train_idx],
        proba[test_idx],
        y[test_idx],
        groups.iloc[test_idx],
        3,
        t,
    )
    assert same(r.mitigation, expected)
    # the mitigation ran (a skipped one would hide a threshold not passed on) and the threshold
    # shows in it: its "before" is the held-out rows cut at t, not at the default 0.5
    assert not r.mitigation.skipped
    assert r.mitigation.held_out.before == fairness._disparities(
        y[test_idx], (proba[test_idx] >= t).astype(int), groups.iloc[test_idx].to_numpy()
    )
    assert (proba[test_idx] >= t).sum() != (proba[test_idx] >= 0.5).sum()


def test_analysis_defaults_are_gender_and_seed_0(dataset):
    X, y, train_idx, test_idx = _small_set(dataset, rows=60)
    fitted = _quick().fit(X.iloc[train_idx], y[train_idx])
    r = fairness.analyze(fitted, _quick(), X, y, train_idx, test_idx, n_boot=20, n_jobs=1)
    assert r.bootstrap == fairness.Bootstrap(resamples=20, seed=0, interval="percentile 95%")
    assert (r.sensitive_feature, r.grouping, r.threshold) == ("gender", "schema codes", 0.5)
    assert r.held_out.groups == ["female", "male"]


def _scores(seed, n=80):
    """Scores that separate the classes imperfectly, a little higher in group b (so the groups' error rates differ)."""
    rng = np.random.default_rng(seed)
    g = pd.Series(np.where(np.arange(n) < n // 2, "a", "b"))
    y = rng.integers(0, 2, n)
    s = np.clip(0.5 * y + rng.normal(0.25, 0.25, n) + np.where(g == "b", 0.15, 0), 0, 1)
    return s, y, g


def _by_hand(y, pred, g):
    """accuracy, selection rate, demographic parity and equalized odds differences of two groups, by hand."""
    sel = [pred[g == k].mean() for k in ("a", "b")]
    tpr = [pred[(g == k) & (y == 1)].mean() for k in ("a", "b")]
    fpr = [pred[(g == k) & (y == 0)].mean() for k in ("a", "b")]
    return fairness.Disparities(
        accuracy=pytest.approx(np.mean(pred == y)),
        selection_rate=pytest.approx(pred.mean()),
        demographic_parity_difference=pytest.approx(abs(sel[0] - sel[1])),
        equalized_odds_difference=pytest.approx(max(abs(tpr[0] - tpr[1]), abs(fpr[0] - fpr[1]))),
    )


def test_mitigation_compares_the_plain_threshold_with_seeded_equalized_odds_thresholds():
    fit_s, fit_y, fit_g = _scores(0)
    test_s, test_y, test_g = _scores(1, n=60)
    mit = fairness.mitigate(fit_s, fit_y, fit_g, test_s, test_y, test_g, seed=2, threshold=0.6)
    g_fit, g_test = fit_g.to_numpy(), test_g.to_numpy()
    assert mit.train_out_of_fold.before == _by_hand(fit_y, (fit_s >= 0.6).astype(int), g_fit)
    assert mit.held_out.before == _by_hand(test_y, (test_s >= 0.6).astype(int), g_test)
    # after: fairlearn's ThresholdOptimizer for equalized odds / balanced accuracy, fitted here independently
    opt = ThresholdOptimizer(
        estimator=fairness._GivenScores().fit(None),
        constraints="equalized_odds",
        objective="balanced_accuracy_score",
        prefit=True,
        predict_method="predict_proba",
    ).fit(fit_s.reshape(-1, 1), fit_y, sensitive_features=g_fit)
    for view, s, y, g in (("train_out_of_fold", fit_s, fit_y, g_fit), ("held_out", test_s, test_y, g_test)):
        after = np.asarray(opt.predict(s.reshape(-1, 1), sensitive_features=g, random_state=2)).astype(int)
        assert getattr(mit, view).after == _by_hand(y, after, g), view
    assert mit.method == (
        "fairlearn ThresholdOptimizer(constraints='equalized_odds', objective='balanced_accuracy_score'), "
        "randomised thresholds per group, fitted on out-of-fold scores of the training rows"
    )
    assert mit.skipped == ""
    assert mit.to_dict() == {
        "method": mit.method,
        "train_out_of_fold": dataclasses.asdict(mit.train_out_of_fold),
        "held_out": dataclasses.asdict(mit.held_out),
    }
    assert list(mit.to_dict()) == ["method", "train_out_of_fold", "held_out"]


def test_mitigation_randomises_with_its_seed_and_defaults_to_seed_0():
    s, y, g = _scores(0)
    seed0 = fairness.mitigate(s, y, g, s, y, g, seed=0)
    assert fairness.mitigate(s, y, g, s, y, g) == seed0
    assert fairness.mitigate(s, y, g, s, y, g, seed=5).held_out.after != seed0.held_out.after
    assert seed0.held_out.before == fairness.mitigate(s, y, g, s, y, g, seed=5).held_out.before


def test_group_report_defaults_to_seed_0():
    y = np.array([1, 0] * 20)
    pred = np.array([1, 0, 0, 0, 1, 1] * 6 + [1, 0, 1, 1])
    groups = pd.Series(["a"] * 20 + ["b"] * 20)
    assert fairness.group_report(y, pred, groups, n_boot=50) == fairness.group_report(
        y, pred, groups, seed=0, n_boot=50
    )
    assert fairness.group_report(y, pred, groups, n_boot=50) != fairness.group_report(
        y, pred, groups, seed=1, n_boot=50
    )


def test_report_dict_is_each_part_as_plain_data():
    y = np.array([1, 0, 1, 0, 1, 1, 0, 0])
    pred = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    held = fairness.group_report(y, pred, pd.Series(["a"] * 4 + ["b"] * 4), seed=1, n_boot=20)
    oof = fairness.group_report(y, 1 - pred, pd.Series(["a", "b"] * 4), seed=2, n_boot=20)
    mit = fairness.Mitigation(skipped="why")
    report = fairness.FairnessReport("gender", "schema codes", 0.4, fairness.Bootstrap(20, 3), held, oof, mit)
    d = report.to_dict()
    assert d == {
        "sensitive_feature": "gender",
        "grouping": "schema codes",
        "threshold": 0.4,
        "bootstrap": {"resamples": 20, "seed": 3, "interval": "percentile 95%"},
        "held_out": dataclasses.asdict(held),
        "out_of_fold": dataclasses.asdict(oof),
        "mitigation": {"skipped": "why"},
    }
    assert list(d) == list(REPORT_KEYS)
    assert (
        held.to_dict() == dataclasses.asdict(held) and held.to_dict()["gaps"]["b - a"]["accuracy"]["boot_samples"] == 20
    )
    json.dumps(d, allow_nan=False)


def three_groups():
    """'a': 1 row, first in order; 'b': 6 rows all predicted positive; 'c': 8 rows (the
    reference, the largest) none predicted positive, so its precision is 0 by zero_division."""
    y = np.array([1] + [1, 1, 1, 0, 0, 0] + [1, 1, 0, 0, 0, 0, 0, 0])
    pred = np.array([0] + [1] * 6 + [0] * 8)
    groups = pd.Series(["a"] + ["b"] * 6 + ["c"] * 8)
    return y, pred, groups


def test_group_report_counts_rates_and_summaries_by_hand():
    y, pred, groups = three_groups()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UndefinedMetricWarning)  # precision 0/0 is 0, silently
        r = fairness.group_report(y, pred, groups, seed=0, n_boot=50)
    b, c = r.by_group["b"], r.by_group["c"]
    assert (b["accuracy"], b["selection_rate"], b["true_positive_rate"], b["precision"]) == (0.5, 1.0, 1.0, 0.5)
    assert (c["accuracy"], c["selection_rate"], c["true_positive_rate"], c["precision"]) == (0.75, 0.0, 0.0, 0.0)
    counts = {k: (v["count"], v["positives"]) for k, v in r.by_group.items()}
    assert counts == {"a": (1, 1), "b": (6, 3), "c": (8, 2)}
    assert all(type(v["count"]) is int for v in r.by_group.values())
    # the summaries are the metrics only, never the group size
    assert set(r.overall) == set(r.difference) == set(r.ratio) == set(fairness.METRICS)
    assert (r.overall["accuracy"], r.overall["selection_rate"]) == (9 / 15, 6 / 15)
    assert (r.difference["selection_rate"], r.ratio["selection_rate"], r.ratio["precision"]) == (1.0, 0.0, 0.0)


def test_a_gap_whose_whole_interval_is_positive_excludes_zero():
    y, pred, groups = three_groups()
    gap = fairness.group_report(y, pred, groups, seed=0, n_boot=50).gaps["b - c"]["selection_rate"]
    # b always selects, c never: every resample's gap is exactly 1
    assert (gap.gap, gap.ci95, gap.excludes_zero) == (1.0, [1.0, 1.0], True)


def test_a_group_missing_from_a_resample_does_not_drop_the_others():
    y, pred, groups = three_groups()
    n_boot, g = 60, groups.to_numpy()
    report = fairness.group_report(y, pred, groups, seed=4, n_boot=n_boot)
    # replay the resamples: "b - c" is defined whenever b and c are drawn, whether or not "a" is
    rng = np.random.default_rng(4)
    draws = [set(g[rng.integers(0, len(y), len(y))]) for _ in range(n_boot)]
    both = sum({"b", "c"} <= d for d in draws)
    assert sum("a" not in d for d in draws) > 10  # "a" is often left out, so the rule is exercised
    assert report.gaps["b - c"]["selection_rate"].boot_samples == both
    assert report.gaps["a - c"]["accuracy"].boot_samples == sum({"a", "c"} <= d for d in draws)


def test_a_value_exactly_on_a_tertile_cut_belongs_to_the_lower_third():
    # 7 values 1..7: numpy's linear quantiles at 1/3 and 2/3 fall on 3 and 5 exactly (positions 2
    # and 4); each third's label reads "low-high", so a value on a cut is the top of the lower one
    X = pd.DataFrame({"trestbps": [1.0, 2, 3, 4, 5, 6, 7]})
    assert (
        list(fairness.sensitive_groups(X, "trestbps"))
        == ["1: 1-3 mm Hg"] * 3 + ["2: 3-5 mm Hg"] * 2 + ["3: 5-7 mm Hg"] * 2
    )
