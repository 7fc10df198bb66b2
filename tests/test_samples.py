"""Random patients from the schema: exact ranges, rounding, errors and record values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from heart.samples import sample, to_records
from heart.schema import BY_NAME, FEATURE_NAMES, FEATURES


def test_integer_features_reach_both_ends_of_the_typical_range():
    """endpoint=True: the top of the range is drawn too (randint's half-open range would never give 77)."""
    X = sample(3000, seed=3)
    for f in FEATURES:
        if f.integer:
            assert (X[f.name].min(), X[f.name].max()) == f.typical, f.name
            assert (X[f.name] == X[f.name].round()).all()


def test_continuous_values_have_one_decimal_not_more_not_fewer():
    x = sample(2000, seed=4)["oldpeak"].to_numpy()
    np.testing.assert_array_equal(x, np.round(x, 1))
    assert (x != np.round(x)).mean() > 0.8  # rounded to tenths, not to whole numbers


def test_zero_patients_is_an_empty_frame_and_negative_is_an_error():
    empty = sample(0)
    assert list(empty.columns) == list(FEATURE_NAMES) and len(empty) == 0
    assert len(sample(1)) == 1
    with pytest.raises(ValueError, match=r"^n must be >= 0, got -1$"):
        sample(-1)


def test_error_messages_name_the_choices():
    with pytest.raises(ValueError, match=r"^unknown sampling mode 'gaussian': choose one of uniform, marginal$"):
        sample(3, mode="gaussian")
    with pytest.raises(ValueError, match=r"^mode 'marginal' needs the reference data to draw from$"):
        sample(3, mode="marginal")


def _reference(**columns) -> pd.DataFrame:
    base = {f.name: [float(sorted(f.codes)[0]) if f.discrete else float(f.typical[0])] * 3 for f in FEATURES}
    base.update(columns)
    return pd.DataFrame(base)


def test_marginal_draws_only_observed_values_and_skips_missing_ones():
    ref = _reference(chol=[200.0, np.nan, 300.0])
    X = sample(500, seed=1, mode="marginal", reference=ref)
    assert set(X["chol"]) == {200.0, 300.0}
    single = sample(20, seed=1, mode="marginal", reference=_reference(chol=[np.nan, 250.0, np.nan]))
    assert set(single["chol"]) == {250.0}  # one observed value is enough to draw from


def test_marginal_from_an_integer_frame_still_gives_floats():
    ref = _reference(age=[40, 50, 60]).astype({"age": "int64"})
    X = sample(10, seed=0, mode="marginal", reference=ref)
    assert (X.dtypes == np.float64).all()


def test_marginal_without_any_value_names_the_feature():
    ref = _reference(thal=[np.nan] * 3)
    with pytest.raises(ValueError, match=r"^the reference data has no values for 'thal' to draw from$"):
        sample(5, mode="marginal", reference=ref)


def test_records_carry_the_values_the_api_takes():
    X = pd.DataFrame(
        [
            [63, 1, 3, 145, 233, 1, 0, 150, 0, 2.3, 0, 0, 1],
            [41, 0, 1, 130, 204, 0, 0, 172, 0, 1.4, 2, np.nan, 2],
            [57, 1, 0, 140, np.nan, 0, 1, 144.5, 1, 0.0, 2, 0, 3],
        ],
        columns=list(FEATURE_NAMES),
        dtype=float,
    )
    recs = to_records(X)
    assert recs[0] == {
        "age": 63,
        "gender": "male",
        "cp": 3,
        "trestbps": 145.0,
        "chol": 233.0,
        "fbs": 1,
        "restecg": 0,
        "thalach": 150.0,
        "exang": 0,
        "oldpeak": 2.3,
        "slope": 0,
        "ca": 0,
        "thal": 1,
    }
    assert recs[1]["gender"] == "female" and "ca" not in recs[1] and recs[1]["thal"] == 2  # NaN skipped, row goes on
    assert "chol" not in recs[2] and recs[2]["thalach"] == 144.5 and recs[2]["ca"] == 0
    assert [type(recs[0][k]) for k in ("age", "cp", "trestbps", "oldpeak")] == [int, int, float, float]
    assert BY_NAME["gender"].text_codes == {"female": 0, "male": 1}


def test_the_default_seed_is_zero():
    """Scripts that pass no seed get the same patients as seed 0 (the documented default)."""
    pd.testing.assert_frame_equal(sample(20), sample(20, seed=0))
