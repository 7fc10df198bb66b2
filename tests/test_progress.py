"""Progress of long work (heart.progress): a bar on a terminal, a line per stage off one, nothing when quiet;
and the stages training, fairness and poisoning report, in process and from the scripts as users run them."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import struct
import subprocess
import sys
import termios

import numpy as np
import pytest
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import data_poisoning
import fairness_check
import train as train_script
from heart import cli
from heart.analyses import fairness, poisoning
from heart.model import card_split, forest_from_card, train
from heart.progress import BAR, LINES, OFF, SILENT, Stages

from conftest import ROOT


class Terminal(io.StringIO):
    def isatty(self):
        return True


def clock(*times):
    """A clock that reads the given times, one per call."""
    it = iter(times)
    return lambda: next(it)


def test_off_a_terminal_each_stage_is_one_line_with_its_elapsed_time():
    out = io.StringIO()
    stages = Stages(stream=out, clock=clock(10.0, 12.25, 20.0, 20.5))
    assert stages.mode == LINES
    with stages.stage("cross-validation", 3, "folds") as s:
        for _ in range(3):
            s.update()
    with stages.stage("bootstrap", 100, "resamples") as s:
        s.update(40)
    assert out.getvalue() == "cross-validation: 3/3 folds in 2.2 s\nbootstrap: 40/100 resamples in 0.5 s\n"


def test_on_a_terminal_a_tqdm_bar_and_no_line():
    out = Terminal()
    stages = Stages(stream=out)
    assert stages.mode == BAR
    with stages.stage("cross-validation", 4, "folds") as s:
        for _ in range(4):
            s.update()
    text = out.getvalue()
    assert "\r" in text and "cross-validation: 100%" in text and "4/4" in text and " folds" in text
    assert " in " not in text.replace("it/s", "")  # no stage line besides the bar


@pytest.mark.parametrize("stream", [io.StringIO(), Terminal()])
def test_quiet_says_nothing_on_or_off_a_terminal(stream):
    stages = Stages(quiet=True, stream=stream)
    assert stages.mode == OFF
    with stages.stage("fits", 2) as s:
        s.update(2)
    assert stream.getvalue() == ""


def test_a_failed_stage_prints_no_line_and_the_error_goes_on():
    out = io.StringIO()
    with pytest.raises(ValueError, match="boom"), Stages(stream=out, clock=clock(0.0, 1.0)).stage("fits", 2) as s:
        s.update()
        raise ValueError("boom")
    assert out.getvalue() == ""


def test_a_stream_that_cannot_say_is_not_a_terminal():
    closed = io.StringIO()
    closed.close()
    assert Stages(stream=closed).mode == LINES
    assert Stages(stream=object()).mode == LINES
    assert SILENT.mode == OFF


def test_training_reports_each_model_cv_folds_and_fit(dataset):
    out = io.StringIO()
    train(dataset, params={"n_estimators": 5}, n_jobs=2, stages=Stages(stream=out))
    lines = out.getvalue().splitlines()
    assert [line.split(" in ")[0] for line in lines] == [
        "random_forest: 5x5 CV + fit: 26/26 fits",
        "logistic_regression: 5x5 CV + fit: 26/26 fits",
    ]
    assert all(line.endswith(" s") for line in lines)


def test_fairness_reports_the_out_of_fold_fits_and_each_bootstrap(loaded, dataset):
    out = io.StringIO()
    train_idx, test_idx = card_split(loaded.card, dataset.y)
    fresh = forest_from_card(loaded.card).set_params(model__estimator__n_estimators=5)
    fairness.analyze(
        loaded.pipeline,
        fresh,
        dataset.X,
        dataset.y,
        train_idx,
        test_idx,
        n_boot=20,
        n_jobs=1,
        stages=Stages(stream=out),
    )
    assert [line.split(" in ")[0] for line in out.getvalue().splitlines()] == [
        "out-of-fold predictions: all rows, training rows (5 folds each): 2/2 CVs",
        "bootstrap: held-out split: 20/20 resamples",
        "bootstrap: out-of-fold predictions: 20/20 resamples",
    ]


def test_poisoning_reports_every_run_once(dataset):
    """2 (clean, its defense) + 2 attacks x 2 seeds + the sweep's 0.3 point x 2 x 2; 0% and 0.2 are not refitted."""
    out = io.StringIO()
    idx = np.arange(len(dataset.y))
    poisoning.run_poisoning(
        make_pipeline(SimpleImputer(), StandardScaler(), LogisticRegression()),
        dataset.X,
        dataset.y,
        idx[idx % 3 != 0],
        idx[idx % 3 == 0],
        seeds=(0, 1),
        sweep_rates=(0.0, 0.2, 0.3),
        n_jobs=1,
        stages=Stages(stream=out),
    )
    assert out.getvalue().startswith("poisoning: clean model, attacks with defense, sweep: 10/10 runs in ")


def run_train(tmp_path, *flags, terminal=False):
    """train.py as a user runs it, its stderr a pipe or (terminal=True) a pseudo-terminal."""
    argv = [sys.executable, "train.py", "--no-cv", "--n-estimators", "5", "--out", str(tmp_path / "m.joblib"), *flags]
    if not terminal:
        proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
        return proc.returncode, proc.stdout, proc.stderr
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a terminal has a size
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=follower, text=True)
    os.close(follower)
    stdout, _ = proc.communicate(timeout=300)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal is gone once the process exited and everything was read
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return proc.returncode, stdout, b"".join(chunks).decode()


def test_train_py_off_a_terminal_writes_a_line_per_stage_and_quiet_nothing(tmp_path):
    code, stdout, stderr = run_train(tmp_path)
    assert code == 0 and "wrote " in stdout
    assert [line.split(" in ")[0] for line in stderr.splitlines()] == [
        "random_forest: fit: 1/1 fits",
        "logistic_regression: fit: 1/1 fits",
    ]
    code, stdout, stderr = run_train(tmp_path, "--quiet")
    assert code == 0 and "wrote " in stdout and stderr == ""


def test_train_py_on_a_terminal_draws_a_bar(tmp_path):
    code, stdout, stderr = run_train(tmp_path, terminal=True)
    assert code == 0 and "wrote " in stdout
    assert "\r" in stderr and "random_forest: fit: 100%" in stderr and "1/1" in stderr
    assert "fits in " not in stderr
    code, _, stderr = run_train(tmp_path, "--quiet", terminal=True)
    assert code == 0 and stderr == ""


@pytest.mark.parametrize("script", [train_script, fairness_check, data_poisoning])
def test_each_script_with_progress_takes_quiet(script):
    assert cli.stages(script.parse_args([])).mode in (BAR, LINES)
    assert cli.stages(script.parse_args(["--quiet"])).mode == OFF
