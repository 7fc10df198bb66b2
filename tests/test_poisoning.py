"""Poisoning: flips are counted and seeded, 0% is the clean model, the defense beats chance."""

import numpy as np
import pandas as pd
import pytest
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from heart import poisoning
from heart.model import card_split, forest_from_card
from heart.schema import FEATURE_NAMES


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


def test_targeted_attack_hides_disease(result):
    targeted = result.attacks["targeted_positive_to_negative"].summary
    assert targeted.metrics["recall"].mean < result.clean["recall"] - 0.3
    assert targeted.flipped.mean == result.budget_rows


def test_defense_finds_flipped_labels_better_than_chance(result):
    for attack in ("random", "targeted_positive_to_negative"):
        d = result.attacks[attack].summary.defense
        assert d.precision.mean > 2 * d.chance_precision.mean, attack
        assert d.recall.mean > 0.3, attack
    targeted = result.attacks["targeted_positive_to_negative"].summary
    assert targeted.defense.metrics_after["recall"].mean > targeted.metrics["recall"].mean


def test_report_dict_keeps_the_json_shape(result):
    d = result.to_dict()
    assert list(d) == [
        "train_rows",
        "test_rows",
        "train_positives",
        "rate",
        "budget_rows",
        "seeds",
        "clean",
        "defense_on_clean_labels",
        "attacks",
        "sweep",
    ]
    summary = d["attacks"]["random"]["summary"]
    assert list(summary) == ["flipped", *poisoning.REPORTED, "defense"]
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
    m = poisoning._score(_linear(), X, np.zeros(40, dtype=int), X, y)
    assert m == {"accuracy": 0.5, "roc_auc": 0.5, "recall": 0.0}  # it predicts "no disease" for everyone


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
