"""The four analysis scripts as users run them: real processes, real files, one-line errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from conftest import DATA, ROOT

PNG = b"\x89PNG\r\n\x1a\n"


def run(script, *args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, str(ROOT / script), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def assert_pngs(out, *names):
    for name in names:
        blob = (out / name).read_bytes()
        assert blob.startswith(PNG) and len(blob) > 5000, name


def assert_one_line_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: ")
    for needle in needles:
        assert needle in proc.stderr


def test_fairness_check_end_to_end(model_path, tmp_path):
    proc = run(
        "fairness_check.py", "--model", model_path, "--out-dir", tmp_path, "--bootstrap", 100, "--sensitive", "age"
    )
    assert proc.returncode == 0, proc.stderr
    assert "held-out split (n=61), by age" in proc.stdout and "ThresholdOptimizer" in proc.stdout
    report = json.loads((tmp_path / "fairness_age.json").read_text())
    assert report["held_out"]["groups"] == ["20-39", "40-59", "60-79"]
    assert list(report["out_of_fold"]["gaps"]) == ["20-39 - 40-59", "60-79 - 40-59"]
    assert report["bootstrap"]["resamples"] == 100
    assert_pngs(tmp_path, "fairness_age.png")
    assert [line.split(" in ")[0] for line in proc.stderr.splitlines()] == [
        "out-of-fold predictions: all rows, training rows (5 folds each): 2/2 CVs",
        "bootstrap: held-out split: 100/100 resamples",
        "bootstrap: out-of-fold predictions: 100/100 resamples",
    ]


def test_explainability_end_to_end(model_path, tmp_path):
    proc = run("explainability.py", "--model", model_path, "--out-dir", tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "explainability.json").read_text())
    assert report["additivity"]["holds"] and report["additivity"]["max_abs_error"] < 1e-6
    assert len(report["importance"]) == 13
    assert report["summaries"]["true_positives"]["text"].endswith("raised the predicted risk.")
    assert_pngs(tmp_path, "shap_bar.png", "shap_beeswarm.png", "shap_waterfall.png")


def test_drift_end_to_end_and_fail_on_drift(tmp_path):
    proc = run("drift_analysis_ks.py", "--out-dir", tmp_path, "--fail-on-drift")
    assert proc.returncode == 1, proc.stderr  # uniform random patients drift by design
    report = json.loads((tmp_path / "drift.json").read_text())
    assert report["dataset_drift"] and report["correction"] == "bh" and len(report["features"]) == 13
    assert_pngs(tmp_path, "drift.png")
    same = run("drift_analysis_ks.py", "--out-dir", tmp_path, "--current", DATA, "--fail-on-drift")
    assert same.returncode == 0, same.stderr
    assert json.loads((tmp_path / "drift.json").read_text())["drifted_features"] == []


def test_drift_from_the_api_prediction_log(dataset, tmp_path):
    log = tmp_path / "predictions.jsonl"
    with log.open("w") as fh:
        for _, row in dataset.X.sample(100, random_state=0).iterrows():
            inputs = {k: (None if v != v else (int(v) if float(v).is_integer() else float(v))) for k, v in row.items()}
            fh.write(
                json.dumps(
                    {
                        "event": "prediction",
                        "trace_id": "0" * 32,
                        "inputs": inputs,
                        "imputed": [],
                        "predicted_class": 0,
                        "probability": 0.2,
                    }
                )
                + "\n"
            )
    proc = run("drift_analysis_ks.py", "--from-log", log, "--out-dir", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "out" / "drift.json").read_text())
    assert report["current"]["kind"] == "prediction_log" and report["n_current"] == 100
    assert not report["dataset_drift"]


def test_poisoning_end_to_end_through_the_points_that_used_to_crash(model_path, tmp_path):
    """--step 0.45 is issue 20's reproducer: 45% targeted flips leave 2 positives, too few for the 5-fold
    calibration (it crashed); --rate 0.5 flips every positive in the main attack. Both are scored, never a traceback."""
    proc = run(
        "data_poisoning.py", "--model", model_path, "--out-dir", tmp_path, "--seeds", 1, "--step", 0.45, "--rate", 0.5
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("poisoning: clean model, attacks with defense, sweep: 6/6 runs in ")
    report = json.loads((tmp_path / "poisoning.json").read_text())
    assert [c["rate"] for c in report["sweep"]["random"]] == [0, 0.45]
    assert report["seeds"] == [0] and report["clean_fit"] == "5-fold calibration"
    assert report["sweep"]["targeted_positive_to_negative"][1]["fits"] == {"2-fold calibration": 1}
    assert report["attacks"]["targeted_positive_to_negative"]["summary"]["fits"] == {"constant (one class left)": 1}
    lines = proc.stdout.splitlines()
    assert "model of targeted: constant (one class left)" in lines
    assert any(line.startswith("45% ") and line.endswith("targeted: 2-fold calibration") for line in lines), proc.stdout
    assert_pngs(tmp_path, "poisoning.png")


@pytest.mark.parametrize("script", ["fairness_check.py", "explainability.py", "data_poisoning.py"])
def test_missing_model_is_a_one_line_error(script, tmp_path):
    proc = run(script, "--model", tmp_path / "nope.zip", "--out-dir", tmp_path / "out")
    assert_one_line_error(proc, "model file not found")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("script", ["fairness_check.py", "explainability.py", "data_poisoning.py"])
def test_tampered_model_is_refused(script, model_path, tmp_path):
    shutil.copy(model_path.with_name("model.card.json"), tmp_path / "model.card.json")
    (tmp_path / "model.zip").write_bytes(model_path.read_bytes() + b"\0")
    proc = run(script, "--model", tmp_path / "model.zip", "--out-dir", tmp_path / "out")
    assert_one_line_error(proc, "does not match")


@pytest.fixture
def bad_data(tmp_path):
    bad = tmp_path / "bad.csv"
    lines = DATA.read_text().splitlines()
    lines[5] = lines[5].replace("male", "robot", 1)
    bad.write_text("\n".join(lines) + "\n")
    return bad


@pytest.mark.parametrize("script", ["fairness_check.py", "explainability.py", "data_poisoning.py"])
def test_bad_data_is_a_one_line_error(script, model_path, bad_data, tmp_path):
    proc = run(script, "--model", model_path, "--data", bad_data, "--out-dir", tmp_path / "out")
    assert_one_line_error(proc, f"{bad_data}: line 6, column 'gender'")
    assert not (tmp_path / "out").exists()


def test_other_data_than_the_models_is_refused(model_path, tmp_path):
    other = tmp_path / "other.csv"
    other.write_text(DATA.read_text().replace("\n0,63,", "\n0,64,", 1))
    proc = run("fairness_check.py", "--model", model_path, "--data", other, "--out-dir", tmp_path / "out")
    assert_one_line_error(proc, "not the file this model was trained on")


def test_drift_bad_inputs_are_one_line_errors(bad_data, tmp_path):
    assert_one_line_error(
        run("drift_analysis_ks.py", "--current", bad_data, "--out-dir", tmp_path / "o"), "line 6, column 'gender'"
    )
    assert_one_line_error(
        run("drift_analysis_ks.py", "--data", tmp_path / "missing.csv", "--out-dir", tmp_path / "o"), "file not found"
    )
    log = tmp_path / "private.jsonl"
    log.write_text(json.dumps({"event": "prediction", "probability": 0.3}) + "\n")
    assert_one_line_error(
        run("drift_analysis_ks.py", "--from-log", log, "--out-dir", tmp_path / "o"), "LOG_INPUTS=false"
    )
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "script", ["fairness_check.py", "explainability.py", "drift_analysis_ks.py", "data_poisoning.py"]
)
def test_help_lists_the_options(script):
    proc = run(script, "--help")
    assert proc.returncode == 0 and "--out-dir" in proc.stdout


def test_explainability_patient_outside_the_explained_rows(model_path, tmp_path):
    proc = run("explainability.py", "--model", model_path, "--patient", 0, "--out-dir", tmp_path / "out")
    assert_one_line_error(proc, "--patient 0 is not among the explained rows")
    assert not (tmp_path / "out").exists()


def assert_usage_error(proc, message):
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.splitlines()[-1].endswith(f"error: {message}"), proc.stderr


SCRIPTS = ["fairness_check.py", "explainability.py", "drift_analysis_ks.py", "data_poisoning.py"]
REPORT = {
    "fairness_check.py": "fairness_gender.json",
    "explainability.py": "shap_waterfall.png",
    "drift_analysis_ks.py": "drift.png",
    "data_poisoning.py": "poisoning.json",
}


@pytest.mark.parametrize("script", SCRIPTS)
def test_an_out_dir_that_cannot_hold_the_reports_is_refused_before_any_work(script, tmp_path):
    assert_usage_error(
        run(script, "--out-dir", DATA),
        f"argument --out-dir: {DATA} is a regular file, not a directory",
    )
    assert_usage_error(
        run(script, "--out-dir", DATA / "reports"),
        f"argument --out-dir: cannot create {DATA / 'reports'}: {DATA} is a regular file, not a directory",
    )
    report = tmp_path / "out" / REPORT[script]
    report.mkdir(parents=True)
    assert_usage_error(
        run(script, "--out-dir", tmp_path / "out"),
        f"argument --out-dir: {report} is a directory, not a regular file: give a new path or a regular file to replace",
    )
    assert [p.name for p in (tmp_path / "out").iterdir()] == [REPORT[script]]


@pytest.mark.parametrize(
    "script, args, message",
    [
        (script, ["--seed", "-1"], "argument --seed: must be between 0 and 4294967295, got -1")
        for script in ("fairness_check.py", "drift_analysis_ks.py", "data_poisoning.py")
    ]
    + [
        (script, ["--jobs", jobs], f"argument --jobs: must be -1 (one per core) or between 1 and 256, got {jobs}")
        for script in ("fairness_check.py", "data_poisoning.py")
        for jobs in ("0", "-3")
    ]
    + [
        (
            "data_poisoning.py",
            ["--seed", str(2**32 - 2), "--seeds", "3"],
            "argument --seed: the last attack seed (--seed + --seeds - 1) must be at most 4294967295",
        )
    ],
)
def test_seeds_and_jobs_out_of_range_are_usage_errors(script, args, message, tmp_path):
    assert_usage_error(run(script, *args, "--out-dir", tmp_path / "out"), message)
    assert not (tmp_path / "out").exists()


def test_jobs_minus_one_means_every_core_and_says_so():
    proc = run("data_poisoning.py", "--help")
    assert "--jobs JOBS" in proc.stdout and "-1 for one per core" in " ".join(proc.stdout.split())
