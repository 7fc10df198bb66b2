"""train.py as users run it: a real process, real files, one-line errors."""

from __future__ import annotations

import subprocess
import sys

from heart.artifact import load_model

from conftest import DATA, ROOT


def run(*args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_train_writes_a_verified_model_and_prints_the_table(tmp_path):
    out = tmp_path / "m.zip"
    proc = run("--out", out, "--no-cv", "--n-estimators", 50)
    assert proc.returncode == 0, proc.stderr
    assert "random_forest test" in proc.stdout and "logistic_regression test" in proc.stdout
    assert "roc_auc" in proc.stdout and "specificity" in proc.stdout
    loaded = load_model(out)
    assert loaded.card["model"]["hyperparameters"]["n_estimators"] == 50
    assert loaded.version in proc.stdout


def test_bad_data_exits_2_with_a_one_line_reason_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.csv"
    lines = DATA.read_text().splitlines()
    lines[5] = lines[5].replace("male", "robot", 1)
    bad.write_text("\n".join(lines) + "\n")
    out = tmp_path / "m.zip"
    proc = run("--data", bad, "--out", out, "--no-cv")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"error: {bad}: line 6, column 'gender'")
    assert list(tmp_path.iterdir()) == [bad]


def test_help_explains_every_option():
    proc = run("--help")
    assert proc.returncode == 0
    for flag in (
        "--data",
        "--out",
        "--seed",
        "--test-size",
        "--n-estimators",
        "--max-depth",
        "--min-samples-leaf",
        "--max-features",
        "--tune",
    ):
        assert flag in proc.stdout


def test_bad_flag_value_is_a_usage_error():
    proc = run("--test-size", "0.9")
    assert proc.returncode == 2 and "must be between" in proc.stderr


def test_flag_types_name_the_rule_and_refuse_non_finite_numbers():
    import argparse

    import pytest

    from heart import cli

    assert cli.integer(1)("3") == 3 and cli.number(0, 1, low_open=True)("1") == 1.0
    for parse, value, rule in (
        (cli.integer(1), "0", "must be at least 1, got 0"),
        (cli.integer(1, 1000), "5000", "must be between 1 and 1000"),
        (cli.number(0, 0.5), "0.6", "must be between 0 and 0.5"),
        (cli.number(0, 1, low_open=True), "0", "must be above 0 and at most 1"),
        (cli.number(0, low_open=True), "-1", "must be above 0, got -1"),
        (cli.number(0), "nan", "finite"),
        (cli.number(), "inf", "finite"),
    ):
        with pytest.raises(argparse.ArgumentTypeError, match=rule):
            parse(value)
    with pytest.raises(ValueError):  # argparse turns this into "invalid integer value: 'x'"
        cli.integer()("x")


def test_a_nonsensical_forest_setting_is_a_usage_error_not_a_traceback():
    proc = run("--n-estimators", "0")
    assert proc.returncode == 2 and "--n-estimators: must be at least 1" in proc.stderr
    assert "Traceback" not in proc.stderr
