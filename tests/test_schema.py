"""The schema and the random patients derived from it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from heart.data import load_dataset
from heart.samples import sample, to_records
from heart.schema import BY_NAME, FEATURE_NAMES, FEATURES, REQUIRED, Feature, describe, lower_first, markdown_table


def test_thirteen_features_with_a_rule_each():
    assert len(FEATURES) == 13 and len(set(FEATURE_NAMES)) == 13
    assert REQUIRED == ("age", "gender")
    for f in FEATURES:
        if f.kind == "continuous":
            assert f.low < f.high and f.low <= f.typical[0] < f.typical[1] <= f.high
        else:
            assert f.codes and not set(f.missing_codes) & set(f.codes)
    assert [r["name"] for r in describe()] == list(FEATURE_NAMES)


def test_check_rejects_and_accepts():
    assert BY_NAME["age"].check(63) is None
    assert "1 to 120" in BY_NAME["age"].check(130)
    assert BY_NAME["thal"].check(2) is None and BY_NAME["thal"].check(0)
    assert BY_NAME["oldpeak"].check(float("nan"))


def test_docs_table_lists_every_feature():
    table = markdown_table()
    for name in FEATURE_NAMES:
        assert f"| {name} |" in table


@pytest.mark.parametrize("mode", ["uniform", "marginal"])
def test_samples_are_valid_by_the_loader_itself(tmp_path, dataset, mode):
    """Written to CSV and read back through the validating loader: no sample breaks a rule."""
    X = sample(2000, seed=11, mode=mode, reference=dataset.X)
    path = tmp_path / "samples.csv"
    X.to_csv(path, index=False)
    got = load_dataset(path, require_target=False)
    pd.testing.assert_frame_equal(got.X, X)
    assert not X.isna().any().any()


def test_uniform_samples_cover_the_typical_range_and_every_code():
    X = sample(5000, seed=1)
    for f in FEATURES:
        if f.discrete:
            assert set(np.unique(X[f.name])) == set(f.codes), f.name
        else:
            assert X[f.name].min() >= f.typical[0] and X[f.name].max() <= f.typical[1]
            assert X[f.name].max() - X[f.name].min() > 0.9 * (f.typical[1] - f.typical[0])


def test_marginal_samples_follow_the_training_distribution(dataset):
    X = sample(20000, seed=2, mode="marginal", reference=dataset.X)
    assert abs(X["gender"].mean() - np.nanmean(dataset.X["gender"])) < 0.02
    assert abs(X["chol"].median() - np.nanmedian(dataset.X["chol"])) < 6
    assert set(np.unique(X["thal"])) <= {1.0, 2.0, 3.0}


def test_samples_are_seeded():
    pd.testing.assert_frame_equal(sample(50, seed=5), sample(50, seed=5))
    assert not sample(50, seed=5).equals(sample(50, seed=6))


def test_bad_mode_and_missing_reference():
    with pytest.raises(ValueError, match="unknown sampling mode"):
        sample(3, mode="gaussian")
    with pytest.raises(ValueError, match="needs the reference"):
        sample(3, mode="marginal")


def test_records_are_json_ready_and_round_trip(dataset):
    X = dataset.X.iloc[:3].copy()
    X.loc[0, "chol"] = np.nan
    recs = to_records(X)
    assert "chol" not in recs[0]
    assert recs[1]["gender"] in ("male", "female") and isinstance(recs[1]["cp"], int)
    assert isinstance(recs[1]["oldpeak"], float)


def test_rule_in_words_for_each_kind():
    assert BY_NAME["age"].rule() == "an integer from 1 to 120 years"
    assert BY_NAME["oldpeak"].rule() == "a number from -5 to 10 mm"
    assert BY_NAME["gender"].rule() == "one of 0, 1, 'female', 'male'"
    assert BY_NAME["thal"].rule() == "one of 1, 2, 3"
    assert Feature("x", "continuous", "X", low=0, high=1.5).rule() == "a number from 0 to 1.5"
    assert Feature("x", "continuous", "X").rule() == "a number from ? to ?"


@pytest.mark.parametrize(
    "name, value",
    [
        ("age", 1),
        ("age", 120),
        ("oldpeak", -5),
        ("oldpeak", 10),
        ("oldpeak", 0.1),
        ("trestbps", 50),
        ("ca", 0),
        ("ca", 3),
        ("gender", 0),
        ("gender", 1.0),
    ],
)
def test_limits_are_inclusive(name, value):
    assert BY_NAME[name].check(value) is None


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("age", 0, "must be an integer from 1 to 120 years, got 0"),
        ("age", 121, "must be an integer from 1 to 120 years, got 121"),
        ("age", 50.5, "must be an integer from 1 to 120 years, got 50.5"),
        ("oldpeak", 10.1, "must be a number from -5 to 10 mm, got 10.1"),
        ("oldpeak", -5.5, "must be a number from -5 to 10 mm, got -5.5"),
        ("cp", 7, "must be one of 0, 1, 2, 3, got 7"),
        ("ca", 1.5, "must be one of 0, 1, 2, 3, got 1.5"),
        ("ca", 4, "must be one of 0, 1, 2, 3, got 4"),  # the sentinel is the loader's business, not a code
        ("oldpeak", float("inf"), "must be a finite number, a number from -5 to 10 mm"),
        ("oldpeak", float("-inf"), "must be a finite number, a number from -5 to 10 mm"),
        ("gender", float("nan"), "must be a finite number, one of 0, 1, 'female', 'male'"),
    ],
)
def test_check_names_the_rule_and_the_value(name, value, message):
    assert BY_NAME[name].check(value) == message


def test_describe_gives_each_kind_its_own_fields():
    rows = {r["name"]: r for r in describe()}
    age, cp, ca, gender = rows["age"], rows["cp"], rows["ca"], rows["gender"]
    assert {
        k: age[k] for k in ("kind", "description", "required", "rule", "unit", "low", "high", "typical", "integer")
    } == {
        "kind": "continuous",
        "description": "Age",
        "required": True,
        "rule": "an integer from 1 to 120 years",
        "unit": "years",
        "low": 1,
        "high": 120,
        "typical": [29, 77],
        "integer": True,
    }
    assert "codes" not in age and "missing_codes" not in age and "ordered" not in age
    assert rows["oldpeak"]["integer"] is False and rows["oldpeak"]["typical"] == [0, 6.2]
    assert cp["codes"] == {"0": "asymptomatic", "1": "atypical angina", "2": "non-anginal pain", "3": "typical angina"}
    assert cp["required"] is False and "ordered" not in cp and "unit" not in cp and "low" not in cp
    assert ca["ordered"] is True and ca["missing_codes"] == [4]
    assert rows["thal"]["missing_codes"] == [0]
    assert gender["codes"] == {"0": "female", "1": "male"} and gender["kind"] == "binary"


def test_docs_table_rows_by_kind():
    rows = {line.split(" | ")[0][2:]: line for line in markdown_table().splitlines()[2:]}
    assert markdown_table().splitlines()[:2] == [
        "| feature | kind | meaning | allowed values | missing allowed |",
        "| --- | --- | --- | --- | --- |",
    ]
    assert rows["age"] == "| age | continuous | Age | 1–120 years | no |"
    assert rows["gender"] == "| gender | binary | Sex | 0 female, 1 male (or female / male, any case) | no |"
    assert rows["oldpeak"] == (
        "| oldpeak | continuous | ST depression induced by exercise relative to rest | -5–10 mm | yes |"
    )
    assert rows["thal"] == (
        "| thal | categorical | Thallium stress test | 1 fixed defect, 2 normal, "
        "3 reversible defect (legacy 0 = unknown) | yes |"
    )
    assert len(rows) == 13


@pytest.mark.parametrize(
    "text, inside_a_sentence",
    [
        ("Chest pain type", "chest pain type"),
        ("ST depression induced by exercise relative to rest", "ST depression induced by exercise relative to rest"),
        ("STs in leads V1-V3", "STs in leads V1-V3"),  # an acronym is its first two letters
        ("Ab", "ab"),  # two letters, only the first is a capital
        ("aB", "aB"),  # already lower: nothing to do, the capital B is not touched
        ("", ""),
    ],
)
def test_lower_first_lowers_a_capital_but_keeps_an_acronym(text, inside_a_sentence):
    assert lower_first(text) == inside_a_sentence
