"""Fixtures for test.py and tests/: the bundled data set and one model trained once per test session."""

from __future__ import annotations

from pathlib import Path

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
def trained(dataset):
    """TrainResult of the default pipeline without CV (CV is checked once, in test_model)."""
    return train(dataset, cv=False)


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
