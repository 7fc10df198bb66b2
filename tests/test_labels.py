"""The label-direction check: never refuses honest labels, always refuses inverted ones, and
train.py / the analyses refuse the widely shared (inverted) copy unless --flip-target fixes it."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from bench.label_check_sweep import NOISE_RATES, SUBSET_ROWS, scenario, write_legacy_copy
from heart import label_check
from heart.artifact import load_model
from heart.data import load_dataset
from heart.decision import decide
from heart.label_check import REFUSE_BELOW, InvertedTargetError, check_labels, risk_matrix
from heart.model import predict_proba
from heart.schema import BY_NAME, RISK_DIRECTIONS

from conftest import DATA, ROOT

RUNS = 150  # per scenario: the bench runs 1,000 (python -m bench.label_check_sweep)


def run(script, *args):
    return subprocess.run(
        [sys.executable, str(ROOT / script), *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=900
    )


def test_directions_are_declared_once_on_real_features_and_codes():
    assert len(RISK_DIRECTIONS) == 8 and len({(r.feature, r.code) for r in RISK_DIRECTIONS}) == 8
    for r in RISK_DIRECTIONS:
        f = BY_NAME[r.feature]
        assert r.direction in (1, -1)
        assert (r.code is None) == (f.kind != "categorical" or f.ordered), r
        assert r.code is None or r.code in f.codes
    lowers = {r.feature for r in RISK_DIRECTIONS if r.direction < 0}
    assert lowers == {"thalach", "slope"}


def test_shipped_data_agrees_with_every_declared_direction(dataset):
    result = check_labels(dataset.X, dataset.y)
    assert result.verdict == "consistent" and result.agree == 8 and result.against == 0
    assert 0.20 < result.score < 0.24
    assert all(0.13 < e.signed < 0.27 for e in result.evidence)
    assert {e.rows for e in result.evidence} == {303, 299, 301}  # ca and thal skip their missing rows


def test_inverted_labels_are_the_mirror_image_and_refused(dataset):
    result = check_labels(dataset.X, 1 - dataset.y)
    assert result.verdict == "inverted" and result.against == 8
    assert result.score == pytest.approx(-check_labels(dataset.X, dataset.y).score)
    assert result.summary().startswith("8 of 8 known risk factors point the other way")


@pytest.mark.parametrize(
    "how",
    [
        dict(bootstrap=True),
        *(dict(noise=r) for r in NOISE_RATES),
        dict(rows=SUBSET_ROWS),
        dict(rows=SUBSET_ROWS, noise=0.2),
    ],
    ids=lambda h: "-".join(f"{k}={v}" for k, v in h.items()),
)
def test_honest_labels_are_never_refused(dataset, how):
    scores, verdicts = scenario(risk_matrix(dataset.X), dataset.y, RUNS, seed=11, **how)
    assert "inverted" not in verdicts
    assert scores.min() > REFUSE_BELOW + 0.05, scores.min()  # a clear gap, not a near miss
    assert scores.max() < 0.35


@pytest.mark.parametrize(
    "how",
    [dict(bootstrap=True), dict(noise=0.2), dict(rows=SUBSET_ROWS)],
    ids=lambda h: "-".join(f"{k}={v}" for k, v in h.items()),
)
def test_inverted_labels_are_always_refused(dataset, how):
    _, verdicts = scenario(risk_matrix(dataset.X), 1 - dataset.y, RUNS, seed=12, **how)
    assert set(verdicts) == {"inverted"}


def test_labels_without_signal_warn_but_are_not_refused(dataset):
    scrambled = dataclasses.replace(dataset, y=np.random.default_rng(0).permutation(dataset.y))
    _, record = label_check.apply(scrambled)
    assert record["verdict"] == "inconclusive" and abs(record["score"]) < 0.05
    assert "inconclusive" in label_check.warning(record)
    assert label_check.warning(label_check.apply(dataset)[1]) is None


def test_flip_on_honest_data_is_refused_and_says_drop_the_flag(dataset):
    with pytest.raises(InvertedTargetError, match="drop --flip-target"):
        label_check.apply(dataset, flip=True)
    data, record = label_check.apply(dataset, flip=True, check=False)
    assert record == {"flipped": True, "check": "off (--no-label-check)"}
    np.testing.assert_array_equal(data.y, 1 - dataset.y)


# --- the widely shared copy through the real scripts ------------------------------------


@pytest.fixture(scope="module")
def legacy(tmp_path_factory):
    path = write_legacy_copy(DATA, tmp_path_factory.mktemp("legacy") / "heart.csv")
    head = path.read_text().splitlines()
    assert head[0].startswith("age,gender,") and ",male," in head[1]
    data = load_dataset(path)
    assert data.sentinels == {"ca": 4, "thal": 2} and data.class_balance() == {
        "heart disease": 164,
        "no heart disease": 139,
    }
    return path


def assert_refused(proc, out_dir):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith("error: ") and "the target looks inverted" in proc.stderr
    assert "8 of 8 known risk factors point the other way" in proc.stderr and "--flip-target" in proc.stderr
    assert not out_dir.exists() or not any(out_dir.iterdir()), "nothing is written"


@pytest.mark.slow
def test_train_refuses_the_shared_copy_and_writes_nothing(legacy, tmp_path):
    out = tmp_path / "out"
    assert_refused(run("train.py", "--data", legacy, "--out", out / "model.zip", "--no-cv"), out)


@pytest.fixture(scope="module")
def flipped_model(legacy, tmp_path_factory):
    path = tmp_path_factory.mktemp("flipped") / "model.zip"
    proc = run("train.py", "--data", legacy, "--out", path, "--no-cv", "--flip-target")
    assert proc.returncode == 0, proc.stderr
    assert "labels: flipped by --flip-target; direction check consistent" in proc.stdout
    return load_model(path)


@pytest.mark.slow
def test_flip_target_trains_the_model_data_csv_trains(flipped_model, loaded, dataset):
    labels = flipped_model.card["labels"]
    assert labels["flipped"] is True and labels["verdict"] == "consistent" and labels["features_agreeing"] == 8
    assert flipped_model.card["data"]["class_balance"] == {"heart disease": 139, "no heart disease": 164}
    ours, reference = predict_proba(flipped_model.pipeline, dataset.X), predict_proba(loaded.pipeline, dataset.X)
    agreement = float(np.mean(decide(ours) == decide(reference)))
    assert agreement >= 0.90, agreement
    assert np.corrcoef(ours, reference)[0, 1] > 0.95


@pytest.mark.slow
def test_no_label_check_trains_the_shared_copy_and_the_card_says_so(legacy, tmp_path):
    path = tmp_path / "model.zip"
    proc = run("train.py", "--data", legacy, "--out", path, "--no-cv", "--no-label-check", "--n-estimators", 20)
    assert proc.returncode == 0, proc.stderr
    card = json.loads(path.with_name("model.card.json").read_text())
    assert card["labels"] == {"flipped": False, "check": "off (--no-label-check)"}


@pytest.mark.slow
@pytest.mark.parametrize("script", ["fairness_check.py", "explainability.py", "data_poisoning.py"])
def test_analyses_refuse_the_shared_copy_without_the_flag(script, legacy, flipped_model, tmp_path):
    out = tmp_path / "reports"
    assert_refused(run(script, "--model", flipped_model.path, "--data", legacy, "--out-dir", out), out)


@pytest.mark.slow
def test_analysis_with_flip_target_reports_it(legacy, flipped_model, tmp_path):
    proc = run(
        "explainability.py", "--model", flipped_model.path, "--data", legacy, "--out-dir", tmp_path, "--flip-target"
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "explainability.json").read_text())
    assert report["labels"]["flipped"] is True and report["labels"]["verdict"] == "consistent"
    assert report["additivity"]["holds"]


@pytest.mark.slow
def test_analysis_flag_must_match_how_the_model_was_trained(legacy, flipped_model, tmp_path):
    proc = run(
        "explainability.py",
        "--model",
        flipped_model.path,
        "--data",
        legacy,
        "--out-dir",
        tmp_path / "x",
        "--no-label-check",
    )
    assert proc.returncode == 2 and "trained with --flip-target" in proc.stderr and "add --flip-target" in proc.stderr
    assert not (tmp_path / "x").exists()


# --- the rule on hand-made evidence: boundaries, counts, messages ------------------------


def checked(*signed):
    """A LabelCheck on hand-made signed deviations (the verdict depends on nothing else)."""
    return label_check.LabelCheck(tuple(label_check.Evidence(f"f{i}", 0.5 + d, d, 10) for i, d in enumerate(signed)))


def test_a_mean_exactly_at_refuse_below_with_a_majority_against_is_inverted():
    # (3 * -0.07 + 0.01) / 4 is -0.05 in floats too (checked below): the rule is "at or below".
    at = checked(-0.07, -0.07, -0.07, 0.01)
    assert at.score == REFUSE_BELOW and at.against == 3
    assert at.verdict == "inverted"
    # just above it, the same majority against is not enough: too weak to judge, not refused
    above = checked(-0.06, -0.06, -0.06, -0.016)
    assert REFUSE_BELOW < above.score < -0.048 and above.against == 3
    assert above.verdict == "inconclusive"


def test_half_the_features_against_is_not_a_majority():
    # 2 of 4 against, mean -0.17: far below REFUSE_BELOW, but "inverted" needs MORE than half
    half = checked(-0.3, -0.3, -0.04, -0.04)
    assert half.against == 2 and half.verdict == "consistent"
    # a clear negative mean is a signal, so "consistent", not "inconclusive" (|mean| is compared)
    assert checked(-0.3, -0.3, 0.1, 0.1).verdict == "consistent"
    assert checked(-0.3, -0.3, -0.3, -0.04).verdict == "inverted"  # 3 of 4 is a majority


def test_a_feature_exactly_at_the_margin_counts_neither_way():
    margin = label_check.MARGIN
    result = checked(-margin, margin, -margin - 0.001, margin + 0.001, 0.0)
    assert result.against == 1 and result.agree == 1


def test_a_mean_exactly_at_the_inconclusive_bound_is_a_verdict():
    # (0.1 + 0) / 2 and (-0.1 + 0) / 2 halve a float exactly: +-0.05, the bound itself
    assert checked(0.1, 0.0).score == label_check.INCONCLUSIVE_WITHIN
    assert checked(0.1, 0.0).verdict == "consistent"
    assert checked(-0.1, 0.0).verdict == "consistent"  # 1 of 2 against: no majority
    assert checked(0.049).verdict == "inconclusive" and checked(-0.049).verdict == "inconclusive"


def test_summary_names_the_count_and_the_signed_mean():
    assert (
        checked(-0.07, -0.07, -0.07, 0.01).summary()
        == "3 of 4 known risk factors point the other way (mean signed AUC deviation -0.050)"
    )
    # mean 0.2 / 4 = +0.05; two of the four (0.2, 0.1) are above the margin
    assert (
        checked(0.2, 0.1, 0.0, -0.1).summary()
        == "2 of 4 known risk factors point the expected way (mean signed AUC deviation +0.050)"
    )


def test_as_dict_rounds_to_four_places_and_keeps_every_field():
    result = label_check.LabelCheck(
        (label_check.Evidence("age", 0.712346, 0.212346, 303), label_check.Evidence("sex", 0.5, 0.0, 299))
    )
    # mean (0.212346 + 0) / 2 = 0.106173 -> 0.1062 at four places (0.106 at three, in the summary)
    assert result.as_dict() == {
        "verdict": "consistent",
        "summary": "1 of 2 known risk factors point the expected way (mean signed AUC deviation +0.106)",
        "score": 0.1062,
        "features_against": 0,
        "features_agreeing": 1,
        "features": 2,
        "margin": 0.05,
        "refuse_below": -0.05,
        "statistic": "direction * (ROC AUC of the feature for the label - 0.5)",
        "per_feature": {
            "age": {"auc": 0.7123, "signed": 0.2123, "rows": 303},
            "sex": {"auc": 0.5, "signed": 0.0, "rows": 299},
        },
    }


def test_rank_auc_is_sklearns_roc_auc_with_ties_and_half_without_a_class():
    from sklearn.metrics import roc_auc_score

    y = np.array([0, 0, 1, 1, 0, 1, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.4, 0.4, 0.9])  # three tied at 0.4, across both classes
    assert label_check.rank_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert label_check.rank_auc(np.array([0, 1]), np.array([1.0, 2.0])) == 1.0  # by hand: the case ranks higher
    assert label_check.rank_auc(np.array([1, 0]), np.array([1.0, 2.0])) == 0.0
    assert label_check.rank_auc(np.array([1, 0, 1]), np.array([3.0, 3.0, 3.0])) == 0.5  # all tied
    assert label_check.rank_auc(np.array([1, 1, 1]), np.array([1.0, 2.0, 3.0])) == 0.5  # no controls
    assert label_check.rank_auc(np.array([0, 0]), np.array([1.0, 2.0])) == 0.5  # no cases


def test_risk_matrix_turns_coded_features_into_indicators_and_keeps_missing():
    X = pd.DataFrame(
        {
            "age": [40.0, 60.0, 50.0, 70.0],
            "cp": [0.0, 1.0, np.nan, 3.0],  # indicator of code 0 (asymptomatic)
            "thalach": [170.0, 120.0, 150.0, 110.0],
            "exang": [0.0, 1.0, 0.0, 1.0],
            "oldpeak": [0.0, 2.5, 1.0, 3.0],
            "slope": [2.0, 1.0, 0.0, np.nan],  # indicator of code 2 (upsloping)
            "ca": [0.0, np.nan, 1.0, 3.0],
            "thal": [3.0, 2.0, 1.0, np.nan],  # indicator of code 3
        }
    )
    V = risk_matrix(X)
    expected = np.array(
        [
            [40, 1, 170, 0, 0.0, 1, 0, 1],
            [60, 0, 120, 1, 2.5, 0, np.nan, 0],
            [50, np.nan, 150, 0, 1.0, 0, 1, 0],
            [70, 0, 110, 1, 3.0, np.nan, 3, np.nan],
        ]
    )
    np.testing.assert_array_equal(V, expected)  # NaN where the feature is missing, in place


def test_check_matrix_skips_missing_rows_and_signs_by_direction():
    # Column j is the label itself (AUC 1), the opposite (AUC 0) or half missing, by hand.
    y = np.array([1, 0, 1, 0, 1, 0])
    V = np.column_stack(
        [
            y,  # age, +1: AUC 1 -> +0.5
            1 - y,  # cp, +1: AUC 0 -> -0.5
            y,  # thalach, -1 (lowers risk): AUC 1 -> -0.5
            1 - y,  # exang, +1: -0.5
            [5, np.nan, 3, 1, np.nan, 2],  # oldpeak, 4 rows: cases 5, 3 over controls 1, 2: AUC 1
            1 - y,  # slope, -1: AUC 0 -> +0.5
            [np.nan] * 6,  # ca: no rows -> AUC 0.5 by rule
            [1, 1, 0, 0, 1, 0],  # thal: cases (1, 0, 1) vs controls (1, 0, 0), see below
        ]
    ).astype(float)
    result = label_check.check_matrix(V, y)
    auc = [e.auc for e in result.evidence]
    # thal by hand, 9 (case, control) pairs: each case 1 beats two 0s and ties the 1 (2.5, twice: 5);
    # the case 0 ties two 0s and loses to the 1 (1); (5 + 1) / 9 = 2/3
    assert auc == pytest.approx([1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.5, 2 / 3])
    assert [e.signed for e in result.evidence] == pytest.approx([0.5, -0.5, -0.5, -0.5, 0.5, 0.5, 0.0, 1 / 6])
    assert [e.rows for e in result.evidence] == [6, 6, 6, 6, 4, 6, 0, 6]
    assert [e.label for e in result.evidence] == [r.label for r in RISK_DIRECTIONS]


@pytest.mark.parametrize(
    "spelling",
    [
        pytest.param(lambda y: y.astype(float), id="floats"),
        pytest.param(lambda y: y.astype(bool), id="booleans"),
        pytest.param(lambda y: y.astype(str), id="text"),
        pytest.param(lambda y: y.tolist(), id="list"),
        pytest.param(lambda y: pd.Series(y, index=np.arange(len(y)) + 1000), id="series-other-index"),
    ],
)
def test_labels_spelled_otherwise_give_the_same_check(dataset, spelling):
    reference = check_labels(dataset.X, dataset.y)
    assert check_labels(dataset.X, spelling(np.asarray(dataset.y))) == reference


def test_flipped_turns_labels_of_any_spelling_into_ints(dataset):
    y = np.array([1.0, 0.0, 0.0, 1.0])
    data = dataclasses.replace(dataset, X=dataset.X.iloc[:4], y=y)
    out = label_check.flipped(data).y
    assert out.tolist() == [0, 1, 1, 0] and out.dtype.kind == "i"
    assert label_check.flipped(dataclasses.replace(data, y=["1", "0", "0", "1"])).y.tolist() == [0, 1, 1, 0]


def test_apply_on_honest_labels_keeps_them_and_records_the_check(dataset):
    data, record = label_check.apply(dataset)
    assert data is dataset
    assert record == {"flipped": False, "check": "on", **check_labels(dataset.X, dataset.y).as_dict()}
    assert record["verdict"] == "consistent"


def test_apply_without_the_check_records_that_it_was_skipped(dataset):
    inverted = label_check.flipped(dataset)
    data, record = label_check.apply(inverted, check=False)  # would be refused with the check on
    assert data is inverted and record == {"flipped": False, "check": "off (--no-label-check)"}


def test_inverted_labels_are_refused_with_the_evidence_and_the_fix(dataset):
    inverted = label_check.flipped(dataset)
    with pytest.raises(InvertedTargetError) as e:
        label_check.apply(inverted)
    summary = check_labels(inverted.X, inverted.y).summary()
    assert summary.startswith("8 of 8 known risk factors point the other way (mean signed AUC deviation -0.2")
    assert str(e.value) == (
        f"{dataset.source}: the target looks inverted: {summary}; if this file marks 1 as 'no disease' "
        "(the widely shared copy of this data does), rerun with --flip-target "
        "(--no-label-check skips this check, for synthetic data)"
    )
    assert e.value.source == dataset.source


def test_flip_target_fixes_inverted_labels_and_says_so(dataset):
    data, record = label_check.apply(label_check.flipped(dataset), flip=True)
    np.testing.assert_array_equal(data.y, dataset.y)
    assert record["flipped"] is True and record["check"] == "on" and record["verdict"] == "consistent"


def test_flip_on_honest_data_gives_the_one_message_that_says_drop_the_flag(dataset):
    with pytest.raises(InvertedTargetError) as e:
        label_check.apply(dataset, flip=True)
    summary = check_labels(dataset.X, 1 - dataset.y).summary()
    assert str(e.value) == (
        f"{dataset.source}: the target looks inverted: {summary}; this file's labels were flipped by "
        "--flip-target and now point the wrong way: drop --flip-target "
        "(--no-label-check skips this check, for synthetic data)"
    )


def test_warning_only_for_an_inconclusive_record():
    record = {"verdict": "inconclusive", "summary": "3 of 8 known risk factors point the expected way (...)"}
    assert label_check.warning(record) == (
        "warning: label-direction check inconclusive: 3 of 8 known risk factors point the expected way (...); "
        "the labels carry little of the known risk signal (synthetic or scrambled data?)"
    )
    assert label_check.warning({"verdict": "consistent", "summary": "x"}) is None
    assert label_check.warning({"verdict": "inverted", "summary": "x"}) is None
    assert label_check.warning({"flipped": False, "check": "off (--no-label-check)"}) is None


def test_a_yes_no_finding_typed_as_nullable_boolean_is_read_as_0_1_with_missing(dataset):
    # exang (exercise-induced angina) as pandas' "boolean" dtype, one value missing (pd.NA):
    # the same evidence as the float column with NaN there (the missing row is skipped).
    X = dataset.X.copy()
    X["exang"] = X["exang"].astype("boolean")
    X.loc[5, "exang"] = pd.NA
    reference = dataset.X.copy()
    reference.loc[5, "exang"] = np.nan
    result = check_labels(X, dataset.y)
    assert result == check_labels(reference, dataset.y)
    assert [e.rows for e in result.evidence][3] == 302
