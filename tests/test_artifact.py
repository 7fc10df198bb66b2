"""The artifact on disk: verified before unpickling, written atomically, hashed in one place."""
from __future__ import annotations

import hashlib
import shutil

import joblib
import pytest

from heart import artifact
from heart.artifact import ModelError, card_path_for, check_training_data, load_model, save_model, sha256_file
from heart.data import load_dataset

from conftest import DATA


@pytest.fixture
def copy_of_model(model_path, tmp_path):
    dst = tmp_path / "model.joblib"
    shutil.copy(model_path, dst)
    shutil.copy(card_path_for(model_path), card_path_for(dst))
    return dst


def test_tampered_artifact_is_refused_before_unpickling(copy_of_model, monkeypatch):
    blob = bytearray(copy_of_model.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    copy_of_model.write_bytes(bytes(blob))
    unpickled = []
    monkeypatch.setattr(joblib, "load", lambda *a, **k: unpickled.append(1))
    with pytest.raises(ModelError, match="does not match"):
        load_model(copy_of_model)
    assert unpickled == [], "a tampered file must never reach the unpickler"


def test_missing_card_or_model_is_refused(copy_of_model):
    card_path_for(copy_of_model).unlink()
    with pytest.raises(ModelError, match="cannot be verified"):
        load_model(copy_of_model)
    with pytest.raises(ModelError, match="not found"):
        load_model(copy_of_model.with_name("other.joblib"))


def test_garbled_card_is_refused(copy_of_model):
    card_path_for(copy_of_model).write_text("{not json")
    with pytest.raises(ModelError, match="not a valid model card"):
        load_model(copy_of_model)


def test_failed_save_leaves_the_previous_model_intact(copy_of_model, trained, monkeypatch):
    before = copy_of_model.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(artifact.os, "replace", broken_replace)
    with pytest.raises(OSError):
        save_model(trained.pipeline, {}, copy_of_model)
    monkeypatch.undo()
    assert copy_of_model.read_bytes() == before
    assert sorted(p.name for p in copy_of_model.parent.iterdir()) == ["model.card.json", "model.joblib"]
    load_model(copy_of_model)


def test_saved_files_are_readable_by_others(model_path):
    assert model_path.stat().st_mode & 0o044 == 0o044


def test_file_hash_streams_to_the_same_digest_as_the_bytes(tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * 9000)  # over 2 MiB: more than one read chunk
    assert sha256_file(big) == hashlib.sha256(big.read_bytes()).hexdigest() == artifact.sha256_bytes(big.read_bytes())
    assert sha256_file(DATA) == load_dataset(DATA).sha256


def test_analyses_refuse_data_the_model_was_not_trained_on(loaded, dataset, tmp_path):
    check_training_data(loaded.card, dataset)
    other = tmp_path / "other.csv"
    other.write_text(DATA.read_text() + "\n")  # the same rows, a different file
    with pytest.raises(ModelError, match="not the file this model was trained on"):
        check_training_data(loaded.card, load_dataset(other))
