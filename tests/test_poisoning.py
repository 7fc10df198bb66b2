"""Poisoning: flips are counted and seeded, 0% is the clean model, the defense beats chance."""
import numpy as np
import pytest

from heart import poisoning
from heart.model import card_split, forest_from_card


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
    return poisoning.run_poisoning(forest_from_card(loaded.card), dataset.X, dataset.y, train_idx, test_idx,
                                   rate=0.2, seeds=(0, 1), sweep_rates=(0.0, 0.2))


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
    assert list(d) == ["train_rows", "test_rows", "train_positives", "rate", "budget_rows", "seeds", "clean",
                       "defense_on_clean_labels", "attacks", "sweep"]
    summary = d["attacks"]["random"]["summary"]
    assert list(summary) == ["flipped", *poisoning.REPORTED, "defense"]
    assert summary["recall"] == {"mean": result.attacks["random"].summary.metrics["recall"].mean,
                                 "sd": result.attacks["random"].summary.metrics["recall"].sd}
    run = d["attacks"]["random"]["runs"][1]
    assert (run["seed"], run["targeted"], run["flipped"]) == (1, False, result.budget_rows)
    assert run["defense"]["action"] == "drop" and set(run["defense"]["metrics_after"]) == set(poisoning.REPORTED)
    point = d["sweep"]["targeted_positive_to_negative"][1]
    assert point["rate"] == 0.2 and "defense" not in point and list(point)[:2] == ["rate", "flipped"]
    assert d["defense_on_clean_labels"]["flipped"] == 0
