"""train.py as users run it: a real process, real files, one-line errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

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


def test_seed_and_jobs_flags_take_what_numpy_and_joblib_accept():
    import argparse

    from heart import cli

    assert cli.seed("0") == 0 and cli.seed(str(2**32 - 1)) == 2**32 - 1
    assert cli.jobs("-1") == -1 and cli.jobs("1") == 1 and cli.jobs(str(cli.MAX_JOBS)) == cli.MAX_JOBS
    for parse, value, rule in (
        (cli.seed, "-1", "must be between 0 and 4294967295, got -1"),
        (cli.seed, str(2**32), "must be between 0 and 4294967295"),
        (cli.jobs, "0", r"must be -1 \(one per core\) or between 1 and 256, got 0"),
        (cli.jobs, "-2", "got -2"),
        (cli.jobs, "257", "got 257"),
    ):
        with pytest.raises(argparse.ArgumentTypeError, match=rule):
            parse(value)


def test_an_output_path_that_is_not_a_regular_file_is_refused_by_name(tmp_path):
    import argparse
    import socket

    from heart import cli

    regular = tmp_path / "old.json"
    regular.write_text("{}")
    (tmp_path / "link.json").symlink_to(regular)
    assert cli.output_file(str(regular)) == str(regular)
    assert cli.output_file(str(tmp_path / "link.json"))  # written through: the target is replaced
    assert cli.output_file(str(tmp_path / "new" / "deeper" / "r.json"))  # parents are created
    os.mkfifo(tmp_path / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock"))
    (tmp_path / "to_dir").symlink_to(tmp_path)
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    for value, why in (
        (tmp_path, f"{tmp_path} is a directory, not a regular file"),
        ("/dev/null", "/dev/null is a character device, not a regular file"),
        (tmp_path / "fifo", "is a FIFO (named pipe), not a regular file"),
        (tmp_path / "sock", "is a socket, not a regular file"),
        (tmp_path / "to_dir", f"{tmp_path / 'to_dir'} (a symlink to {tmp_path}) is a directory"),
        (tmp_path / "dangling", "(a symlink to"),
        (regular / "x.json", f"cannot create {regular / 'x.json'}: {regular} is a regular file, not a directory"),
    ):
        with pytest.raises(argparse.ArgumentTypeError, match=re.escape(why)):
            cli.output_file(str(value))
    sock.close()
    assert cli.output_dir(str(tmp_path)) and cli.output_dir(str(tmp_path / "new" / "reports"))
    for value, why in (
        (regular, f"{regular} is a regular file, not a directory"),
        ("/dev/null", "/dev/null is a character device, not a directory"),
        (regular / "reports", f"{regular} is a regular file, not a directory"),
    ):
        with pytest.raises(argparse.ArgumentTypeError, match=re.escape(why)):
            cli.output_dir(str(value))


def test_an_empty_output_path_or_a_file_path_ending_in_a_slash_is_refused_before_any_work():
    """An empty path resolved to the working directory (train.py crashed in card_path_for, batch_predict sent
    every request first); "newdir/" made a file called newdir."""
    from heart import cli

    assert cli.unwritable("") == "an empty path: give a file name"
    assert cli.unwritable("  ", directory=True) == "an empty path: give a directory name"
    assert cli.unwritable("newdir/") == "newdir/ ends with a slash: give a file name, not a directory"
    assert cli.unwritable("newdir/", directory=True) is None
    for script, flag in (("train.py", "--out"), ("batch_predict.py", "--out"), ("fairness_check.py", "--out-dir")):
        done = subprocess.run([sys.executable, script, flag, ""], cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 2 and done.stderr.strip().endswith(
            f"error: argument {flag}: an empty path: give a {'directory' if flag == '--out-dir' else 'file'} name"
        )


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_an_output_under_a_read_only_directory_is_refused(tmp_path):
    from heart import cli

    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert cli.unwritable(locked / "r.json") == f"cannot create {locked / 'r.json'}: {locked} is not writable"
    assert cli.unwritable(locked, directory=True) == f"{locked} is not writable"


def test_train_refuses_an_unwritable_model_or_card_before_training(tmp_path):
    (tmp_path / "m.card.json").mkdir()
    for out, why in (
        (tmp_path, f"argument --out: {tmp_path} is a directory, not a regular file"),
        (tmp_path / "m.zip", f"argument --out: {tmp_path / 'm.card.json'} is a directory, not a regular file"),
    ):
        proc = run("--out", out, "--no-cv")
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert proc.stderr.splitlines()[-1] == f"train.py: error: {why}: give a new path or a regular file to replace"
        assert "data:" not in proc.stdout  # refused before the data was read
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.card.json"]


def test_train_seed_and_jobs_out_of_range_are_usage_errors():
    for args, why in (
        (["--seed", "-1"], "argument --seed: must be between 0 and 4294967295, got -1"),
        (["--jobs", "0"], "argument --jobs: must be -1 (one per core) or between 1 and 256, got 0"),
    ):
        proc = run(*args)
        assert proc.returncode == 2 and proc.stderr.splitlines()[-1] == f"train.py: error: {why}"
