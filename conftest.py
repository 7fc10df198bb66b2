"""Fixtures for test.py and tests/: the bundled data set and one model trained once per test run
(once for all of pytest-xdist's workers: the first trains it, the others read it)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import joblib
import pytest

from heart.artifact import load_model, read_artifact
from heart.data import load_dataset
from heart.export import save_model
from heart.model import build_card, train

ROOT = Path(__file__).resolve().parent
DATA = ROOT / "data" / "data.csv"


@pytest.fixture(scope="session")
def dataset():
    return load_dataset(DATA)


@pytest.fixture(scope="session")
def trained(dataset, tmp_path_factory):
    """TrainResult of the default pipeline without CV (CV is checked once, in test_model)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return train(dataset, cv=False)
    shared = tmp_path_factory.getbasetemp().parent  # the run's directory, above each worker's own
    with open(shared / "trained.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the first worker trains; the others wait, then read it
        path = shared / "trained.joblib"
        if path.exists():
            return joblib.load(path)
        result = train(dataset, cv=False)
        joblib.dump(result, path)
        return result


@pytest.fixture(scope="session")
def model_path(tmp_path_factory, trained, dataset):
    """A saved, verified model.zip + card in a temp dir: tests never touch the user's model."""
    path = tmp_path_factory.mktemp("model") / "model.zip"
    save_model(trained.pipeline, build_card(trained, dataset, 42, 0.2), path, dataset.X)
    return path


@pytest.fixture(scope="session")
def loaded(model_path):
    return load_model(model_path)


@pytest.fixture(scope="session")
def artifact(model_path):
    """The session's model as the server reads it: card, ONNX graph and reference, nothing unpickled."""
    return read_artifact(model_path)
