"""The label-direction check: never refuses honest labels, always refuses inverted ones, and
train.py / the analyses refuse the widely shared (inverted) copy unless --flip-target fixes it."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
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


def test_train_refuses_the_shared_copy_and_writes_nothing(legacy, tmp_path):
    out = tmp_path / "out"
    assert_refused(run("train.py", "--data", legacy, "--out", out / "model.joblib", "--no-cv"), out)


@pytest.fixture(scope="module")
def flipped_model(legacy, tmp_path_factory):
    path = tmp_path_factory.mktemp("flipped") / "model.joblib"
    proc = run("train.py", "--data", legacy, "--out", path, "--no-cv", "--flip-target")
    assert proc.returncode == 0, proc.stderr
    assert "labels: flipped by --flip-target; direction check consistent" in proc.stdout
    return load_model(path)


def test_flip_target_trains_the_model_data_csv_trains(flipped_model, loaded, dataset):
    labels = flipped_model.card["labels"]
    assert labels["flipped"] is True and labels["verdict"] == "consistent" and labels["features_agreeing"] == 8
    assert flipped_model.card["data"]["class_balance"] == {"heart disease": 139, "no heart disease": 164}
    ours, reference = predict_proba(flipped_model.pipeline, dataset.X), predict_proba(loaded.pipeline, dataset.X)
    agreement = float(np.mean(decide(ours) == decide(reference)))
    assert agreement >= 0.90, agreement
    assert np.corrcoef(ours, reference)[0, 1] > 0.95


def test_no_label_check_trains_the_shared_copy_and_the_card_says_so(legacy, tmp_path):
    path = tmp_path / "model.joblib"
    proc = run("train.py", "--data", legacy, "--out", path, "--no-cv", "--no-label-check", "--n-estimators", 20)
    assert proc.returncode == 0, proc.stderr
    card = json.loads(path.with_name("model.card.json").read_text())
    assert card["labels"] == {"flipped": False, "check": "off (--no-label-check)"}


@pytest.mark.parametrize("script", ["fairness_check.py", "explainability.py", "data_poisoning.py"])
def test_analyses_refuse_the_shared_copy_without_the_flag(script, legacy, flipped_model, tmp_path):
    out = tmp_path / "reports"
    assert_refused(run(script, "--model", flipped_model.path, "--data", legacy, "--out-dir", out), out)


def test_analysis_with_flip_target_reports_it(legacy, flipped_model, tmp_path):
    proc = run(
        "explainability.py", "--model", flipped_model.path, "--data", legacy, "--out-dir", tmp_path, "--flip-target"
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "explainability.json").read_text())
    assert report["labels"]["flipped"] is True and report["labels"]["verdict"] == "consistent"
    assert report["additivity"]["holds"]


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
