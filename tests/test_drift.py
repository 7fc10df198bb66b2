"""Drift: the test follows the schema's kind, catches real shifts, and does not cry wolf."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from heart.analyses import drift
from heart.data import DataError
from heart.predlog import load_prediction_log
from heart.samples import sample
from heart.schema import FEATURES


def test_the_test_follows_the_feature_kind(dataset):
    r = drift.drift_report(dataset.X, dataset.X.sample(100, random_state=0))
    for f, res in zip(FEATURES, r.features):
        assert res.test == ("ks" if f.kind == "continuous" else "chi2"), f.name
        assert (res.wasserstein is not None) == (f.kind == "continuous")


def test_benjamini_hochberg_and_bonferroni_by_hand():
    p = np.array([0.01, 0.04, 0.03, 0.5])
    np.testing.assert_allclose(drift.adjust(p, "bh"), [0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.5])
    np.testing.assert_allclose(drift.adjust(p, "bonferroni"), [0.04, 0.16, 0.12, 1.0])
    with pytest.raises(ValueError, match="unknown correction"):
        drift.adjust(p, "holm")


@pytest.mark.parametrize(
    "p",
    [
        [0.01, 0.04, 0.03, 0.5],
        [0.02, 0.02, 0.02, 0.02, 0.9],  # ties
        [1.0, 1.0, 0.049, 1.0],  # ones
        [0.0, 0.0, 0.3, 1e-300, 0.051],  # zeros and a tiny p
        [0.7],  # one test
        [0.04, 0.04, 0.2, 0.2, 0.2, 1.0, 0.0, 0.999, 0.5, 0.01, 0.01, 0.3, 0.06],  # 13 features, mixed
        list(np.random.default_rng(0).uniform(size=13)),
        list(np.random.default_rng(1).beta(0.2, 3, size=40)),  # many small p-values
    ],
)
def test_benjamini_hochberg_equals_scipys(p):
    got = drift.adjust(np.array(p), "bh")
    np.testing.assert_allclose(got, scipy_stats.false_discovery_control(p, method="bh"), rtol=1e-12, atol=0)
    assert np.all((got >= np.asarray(p)) & (got <= 1.0))


def test_a_sample_of_the_training_data_flags_nothing_in_95_percent_of_seeds(dataset):
    seeds = range(60)
    quiet = sum(
        not drift.drift_report(dataset.X, dataset.X.sample(100, random_state=s)).drifted_features for s in seeds
    )
    assert quiet >= 0.95 * len(seeds)


def test_disjoint_halves_of_the_data_do_not_cry_wolf(dataset):
    """Stricter than resampling the reference itself: the 100 rows are not in the reference."""
    quiet = 0
    for s in range(60):
        cur = dataset.X.sample(100, random_state=s)
        quiet += not drift.drift_report(dataset.X.drop(cur.index), cur).drifted_features
    assert quiet >= 57


@pytest.mark.parametrize(
    "feature, shift",
    [
        ("age", lambda X: X.assign(age=X["age"] + 10)),
        ("chol", lambda X: X.assign(chol=X["chol"] * 1.3)),
    ],
)
def test_shifted_continuous_feature_is_flagged(dataset, feature, shift):
    for s in range(10):
        r = drift.drift_report(dataset.X, shift(dataset.X.sample(100, random_state=s)))
        flagged = {f.feature: f for f in r.features}
        assert flagged[feature].drifted and flagged[feature].test == "ks", s


def test_flipped_gender_ratio_is_flagged_by_chi_squared(dataset):
    X = dataset.X
    men, women = X[X["gender"] == 1], X[X["gender"] == 0]
    share_men = len(men) / len(X)  # about 0.68: the flipped sample has 68% women
    n_men = int(round(100 * (1 - share_men)))
    for s in range(10):
        cur = pd.concat([men.sample(n_men, random_state=s), women.sample(100 - n_men, random_state=s)])
        assert (cur["gender"] == 0).mean() > 0.6
        g = {f.feature: f for f in drift.drift_report(X, cur).features}["gender"]
        assert g.drifted and g.test == "chi2", s


def test_uniform_samples_drift_as_a_data_set(dataset):
    r = drift.drift_report(dataset.X, sample(100, seed=42))
    assert r.dataset_drift and r.share_drifted >= 0.5


def test_prediction_log_goes_through_the_schema(tmp_path, dataset):
    rows = dataset.X.iloc[:5]
    lines = [json.dumps({"event": "startup"})]
    for _, row in rows.iterrows():
        inputs = {k: (None if v != v else (int(v) if float(v).is_integer() else float(v))) for k, v in row.items()}
        lines.append(json.dumps({"event": "prediction", "inputs": inputs, "probability": 0.5}))
    log = tmp_path / "pred.jsonl"
    log.write_text("\n".join(lines) + "\n")
    got = load_prediction_log(log)
    np.testing.assert_array_equal(got.X.to_numpy(), rows.to_numpy())
    assert got.y is None

    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        lines[1] + "\n" + lines[2].replace('"gender": 1', '"gender": 7').replace('"gender": 0', '"gender": 7') + "\n"
    )
    with pytest.raises(DataError, match="line 2, column 'gender'"):
        load_prediction_log(bad)

    private = tmp_path / "private.jsonl"
    private.write_text(json.dumps({"event": "prediction", "probability": 0.3}) + "\n")
    with pytest.raises(DataError, match="LOG_INPUTS=false"):
        load_prediction_log(private)


def test_psi_by_hand_over_codes_and_over_bins():
    ref, cur = np.array([0, 0, 0, 1]), np.array([0, 1, 1, 1])  # shares 0.75/0.25 -> 0.25/0.75
    want = (0.25 - 0.75) * np.log(0.25 / 0.75) + (0.75 - 0.25) * np.log(0.75 / 0.25)
    assert drift.psi(ref, cur, codes=[0, 1]) == pytest.approx(want)
    edges = np.array([-np.inf, 1.5, np.inf])
    assert drift.psi(np.array([1.0, 1, 1, 2]), np.array([1.0, 2, 2, 2]), edges) == pytest.approx(want)
    # a bin empty on one side counts as PSI_EPS, on either side, so PSI stays finite
    lone = (1 - 1e-4) * np.log(1 / 1e-4) + (1e-4 - 1) * np.log(1e-4 / 1)
    assert drift.psi(np.array([0, 0]), np.array([1, 1]), codes=[0, 1]) == pytest.approx(lone)
    assert drift.psi(ref, ref, codes=[0, 1]) == 0.0


def test_decile_edges_are_the_reference_deciles_open_at_both_ends():
    edges = drift._decile_edges(np.arange(101, dtype=float))
    np.testing.assert_allclose(edges, [-np.inf, 10, 20, 30, 40, 50, 60, 70, 80, 90, np.inf], rtol=1e-12)


def test_a_feature_with_fewer_than_two_values_on_either_side_is_skipped_not_tested(dataset):
    f = next(x for x in FEATURES if x.name == "chol")
    two, one = np.array([200.0, np.nan, 250.0]), np.array([np.nan, 230.0])
    tested = drift.feature_drift(f, two, two)
    assert (tested.test, tested.n_reference, tested.n_current, tested.kind) == ("ks", 2, 2, "continuous")
    for ref, cur in ((one, two), (two, one)):
        r = drift.feature_drift(f, ref, cur)
        assert (r.test, r.note, r.drifted, r.wasserstein) == ("skipped", "fewer than 2 non-missing values", False, None)
        assert np.isnan([r.statistic, r.p_value, r.psi, r.p_adjusted]).all()
        assert (r.n_reference, r.n_current) == (int((~np.isnan(ref)).sum()), int((~np.isnan(cur)).sum()))
    cur = dataset.X.copy()
    cur["chol"] = np.nan
    report = drift.drift_report(dataset.X, cur)
    chol = {x.feature: x for x in report.features}["chol"]
    assert chol.test == "skipped" and chol.drifted is False and np.isnan(chol.p_adjusted)
    assert report.share_drifted == 0.0 and report.to_dict()["features"][4]["test"] == "skipped"


def test_continuous_effect_sizes_by_hand():
    f = next(x for x in FEATURES if x.name == "age")
    r = drift.feature_drift(f, np.array([40.0, 50, 60, 70]), np.array([50.0, 60, 70, 80]))
    assert r.wasserstein == pytest.approx(10.0) and (r.reference_mean, r.current_mean) == (55.0, 65.0)
    assert r.statistic == pytest.approx(0.25) and r.p_adjusted != r.p_adjusted and r.drifted is False


def test_the_data_set_verdict_is_at_the_share_threshold_inclusive():
    def report(n_drifted, n_tested, n_skipped=0):
        feats = [
            drift.FeatureDrift(
                feature=f"f{i}",
                kind="continuous",
                test="ks",
                statistic=0.5,
                p_value=0.001,
                p_adjusted=0.001,
                drifted=i < n_drifted,
                psi=0.1,
                wasserstein=1.0,
                n_reference=10,
                n_current=10,
            )
            for i in range(n_tested)
        ]
        feats += [
            drift.FeatureDrift(
                feature="s",
                kind="binary",
                test="skipped",
                statistic=np.nan,
                p_value=np.nan,
                p_adjusted=np.nan,
                drifted=False,
                psi=np.nan,
                wasserstein=None,
                n_reference=0,
                n_current=0,
            )
        ] * n_skipped
        return drift.DriftReport(
            alpha=0.05, correction="bh", share_threshold=0.5, n_reference=10, n_current=10, features=feats
        )

    assert report(2, 4).dataset_drift and report(2, 4).share_drifted == 0.5
    assert not report(1, 4).dataset_drift
    assert report(2, 4, n_skipped=4).share_drifted == 0.5  # skipped features are not in the denominator
    assert report(0, 0, n_skipped=2).share_drifted == 0.0
    d = report(2, 4).to_dict()
    assert (d["drifted_features"], d["share_drifted"], d["dataset_drift"]) == (["f0", "f1"], 0.5, True)


def test_alpha_is_a_strict_bound_and_the_correction_is_checked(dataset):
    cur = dataset.X.sample(100, random_state=0).assign(age=lambda X: X["age"] + 10)
    r = drift.drift_report(dataset.X, cur, correction="bonferroni")
    age = {x.feature: x for x in r.features}["age"]
    assert age.p_adjusted == pytest.approx(min(1.0, age.p_value * 13)) and age.drifted
    strict = drift.drift_report(dataset.X, cur, alpha=age.p_adjusted, correction="bonferroni")
    assert not {x.feature: x for x in strict.features}["age"].drifted  # p < alpha, not p <= alpha
    with pytest.raises(ValueError, match="^unknown correction 'holm': choose one of bh, bonferroni$"):
        drift.drift_report(dataset.X, cur, correction="holm")


def test_report_dict_carries_the_settings_and_sizes(dataset):
    d = drift.drift_report(
        dataset.X, dataset.X.iloc[:100], alpha=0.01, correction="bonferroni", share_threshold=0.3
    ).to_dict()
    assert {k: d[k] for k in ("alpha", "correction", "share_threshold", "n_reference", "n_current")} == {
        "alpha": 0.01,
        "correction": "bonferroni",
        "share_threshold": 0.3,
        "n_reference": 303,
        "n_current": 100,
    }


def test_a_constant_reference_still_sees_a_shift():
    ref = np.full(200, 200.0)
    edges = drift._decile_edges(ref)
    assert edges.tolist() == [-np.inf, 200.0, np.nextafter(200.0, np.inf), np.inf]
    assert drift.psi(ref, ref, edges) == 0.0
    shifted = np.array([200.0, 250.0, 300.0] * 50)
    assert drift.psi(ref, shifted, edges) > 1.0
    assert drift.psi(ref, np.full(200, 150.0), edges) > 1.0


def test_a_mostly_constant_reference_still_sees_a_shift():
    """Two distinct deciles (95 zeros then 1..5: every decile up to the 9th is 0, the 10th is 5)
    used to give the single bin [-inf, inf] and PSI 0 whatever the current data."""
    ref = np.r_[np.zeros(95), np.arange(1.0, 6.0)]
    edges = drift._decile_edges(ref)
    assert edges.tolist() == [-np.inf, 0.0, np.nextafter(0.0, np.inf), np.inf]
    # ref shares (below, at, above 0) = (0, 0.95, 0.05); all-5 current = (0, 0, 1):
    # (1 - 0.05) ln(1 / 0.05) + (1e-4 - 0.95) ln(1e-4 / 0.95), the empty bins clipped to PSI_EPS
    want = 0.95 * np.log(20) + (1e-4 - 0.95) * np.log(1e-4 / 0.95)
    assert drift.psi(ref, np.full(100, 5.0), edges) == pytest.approx(want)
    # three distinct deciles keep the ordinary rule: 50 zeros then 50 ones have deciles 0 (x5),
    # 0.5 (the median, halfway between rows 49 and 50) and 1 (x5): ends opened, 0.5 stays
    half = drift._decile_edges(np.r_[np.zeros(50), np.ones(50)])
    assert half.tolist() == [-np.inf, 0.5, np.inf]


def test_adjust_defaults_to_benjamini_hochberg_and_names_the_choices():
    p = np.array([0.01, 0.04, 0.03, 0.5])
    # BH by hand: sorted 0.01, 0.03, 0.04, 0.5 -> 0.04, 0.04 (0.03*4/3 and 0.04*4/3 step-up), 0.5
    np.testing.assert_allclose(drift.adjust(p), [0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.5])
    with pytest.raises(ValueError, match="^unknown correction 'holm': choose one of bh, bonferroni$"):
        drift.adjust(p, "holm")


def test_float32_p_values_are_adjusted_in_double_precision():
    p32 = np.array([0.1, 0.3, 0.7], dtype=np.float32)
    got = drift.adjust(p32, "bonferroni")
    # the float32 product 3 * float32(0.1) rounds to another float32 than the exact double product
    want = np.minimum(p32.astype(np.float64) * 3, 1.0)
    assert got.dtype == np.float64 and got.tolist() == want.tolist()
    assert want[0] != float(np.float32(0.1) * np.float32(3))


def test_a_frame_of_python_objects_is_read_as_floats(dataset):
    """A frame built from JSON rows can hold Python objects (None for a missing value): both
    sides are read as floats, so the report is the one of the float frame."""
    ref, cur = dataset.X.iloc[:150], dataset.X.iloc[150:]
    assert ref.isna().any().any()  # missing values (ca, thal) are among the objects
    want = json.dumps(drift.drift_report(ref, cur).to_dict())  # json: NaN compares equal as text
    for a, b in ((ref.astype(object), cur), (ref, cur.astype(object))):
        assert json.dumps(drift.drift_report(a, b).to_dict()) == want


def test_bonferroni_multiplies_every_p_value_by_the_number_of_tests(dataset):
    cur = dataset.X.sample(100, random_state=0).assign(age=lambda X: X["age"] + 10, chol=lambda X: X["chol"] * 1.3)
    r = drift.drift_report(dataset.X, cur, correction="bonferroni")
    p = np.array([x.p_value for x in r.features])
    got = np.array([x.p_adjusted for x in r.features])
    np.testing.assert_allclose(got, np.minimum(p * 13, 1.0), rtol=1e-12)
    assert not np.allclose(got, drift.adjust(p, "bh"))  # the two corrections differ on these data


def _feature(name):
    return next(x for x in FEATURES if x.name == name)


def test_chi_squared_by_hand_keeps_a_code_seen_once_and_drops_a_code_never_seen():
    """cp: code 2 (non-anginal pain) is seen once in all, code 3 (typical angina) never; the test
    runs on the 2x3 table of codes 0-2, every code of the schema gets a share, 0.0 if absent."""
    ref = np.array([0, 0, 0, 0, 1, 1, 2], dtype=float)  # counts 4, 2, 1, 0
    cur = np.array([0, 1, 1, 1, 1, 1], dtype=float)  # counts 1, 5, 0, 0
    r = drift.feature_drift(_feature("cp"), ref, cur)
    observed = np.array([[4, 2, 1], [1, 5, 0]])
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / observed.sum()  # row total * column total / N
    stat = ((observed - expected) ** 2 / expected).sum()  # no continuity correction: 2 degrees of freedom
    assert (r.test, r.wasserstein) == ("chi2", None)
    assert r.statistic == pytest.approx(stat, rel=1e-12)
    assert r.p_value == pytest.approx(scipy_stats.chi2.sf(stat, df=2), rel=1e-12)
    assert r.reference_share == {
        "asymptomatic": 4 / 7,
        "atypical angina": 2 / 7,
        "non-anginal pain": 1 / 7,
        "typical angina": 0.0,
    }
    assert r.current_share == {
        "asymptomatic": 1 / 6,
        "atypical angina": 5 / 6,
        "non-anginal pain": 0.0,
        "typical angina": 0.0,
    }
    rs, cs = np.array([4 / 7, 2 / 7, 1 / 7, 1e-4]), np.array([1 / 6, 5 / 6, 1e-4, 1e-4])  # empty codes at PSI_EPS
    assert r.psi == pytest.approx(np.sum((cs - rs) * np.log(cs / rs)), rel=1e-12)


def test_one_and_the_same_code_on_both_sides_is_no_drift():
    """fbs all 'no' in both samples: the 'yes' column is empty, chi-squared is not defined on it,
    and the distributions are identical: statistic 0, p-value 1, PSI 0."""
    r = drift.feature_drift(_feature("fbs"), np.zeros(20), np.zeros(30))
    assert (r.test, r.statistic, r.p_value, r.psi) == ("chi2", 0.0, 1.0, 0.0)
    assert r.reference_share == r.current_share == {"no": 1.0, "yes": 0.0}


def test_a_code_outside_the_schema_is_shown_by_its_number():
    r = drift.feature_drift(_feature("gender"), np.array([0.0, 1, 1, 0]), np.array([0.0, 1, 7, 7]))
    assert r.reference_share == {"female": 0.5, "male": 0.5, "7": 0.0}
    assert r.current_share == {"female": 0.25, "male": 0.25, "7": 0.5}


def test_continuous_psi_by_hand_over_the_reference_deciles():
    """ref 40, 50, 60, 70: its deciles are 40, 43, ..., 70 (linear interpolation, a step of 3),
    so the ten bins hold ref at bins 0, 3, 6, 9 (a quarter each); cur 50, 60, 70, 80 fills bins
    3, 6 (a quarter each) and 9 (a half), and leaves bin 0 empty (PSI_EPS)."""
    r = drift.feature_drift(_feature("age"), np.array([40.0, 50, 60, 70]), np.array([50.0, 60, 70, 80]))
    want = (1e-4 - 0.25) * np.log(1e-4 / 0.25) + (0.5 - 0.25) * np.log(0.5 / 0.25)
    assert r.psi == pytest.approx(want, rel=1e-12)
