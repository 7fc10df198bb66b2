"""The artifact on disk: verified before unpickling, written atomically, hashed in one place."""

from __future__ import annotations

import hashlib
import json
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


def rewrite(path, card=None, pipeline=None, trailer=True):
    """Write an artifact by hand, as someone with write access to the file could (a valid trailer)."""
    payload = joblib.load(path) if path.exists() else {}
    import io

    buf = io.BytesIO()
    content = {
        **payload,
        **({"card": json.dumps(card)} if card is not None else {}),
        **({"pipeline": pipeline} if pipeline is not None else {}),
    }
    joblib.dump(content, buf)
    blob = buf.getvalue()
    path.write_bytes(blob + (artifact.TRAILER_MAGIC + artifact.sha256_bytes(blob).encode() + b"\n" if trailer else b""))
    return artifact.sha256_bytes(path.read_bytes())


def test_the_card_beside_the_model_is_only_a_copy(copy_of_model):
    """Loading reads the card inside the file: the copy beside it may be absent, garbled or edited."""
    expected = load_model(copy_of_model).card
    card_path_for(copy_of_model).unlink()
    assert load_model(copy_of_model).card == expected
    card_path_for(copy_of_model).write_text("{not json")
    assert load_model(copy_of_model).card == expected
    with pytest.raises(ModelError, match="not found"):
        load_model(copy_of_model.with_name("other.joblib"))


def test_a_pin_is_checked_before_unpickling(copy_of_model, monkeypatch):
    digest = sha256_file(copy_of_model)
    assert load_model(copy_of_model, digest).pinned and not load_model(copy_of_model).pinned
    unpickled = []
    monkeypatch.setattr(joblib, "load", lambda *a, **k: unpickled.append(1))
    with pytest.raises(ModelError, match=f"does not match the pinned {'0' * 64}"):
        load_model(copy_of_model, "0" * 64)
    assert unpickled == []


def test_a_file_without_its_trailer_is_refused(copy_of_model):
    blob = copy_of_model.read_bytes()
    copy_of_model.write_bytes(blob[: -artifact.TRAILER_LEN])
    with pytest.raises(ModelError, match="does not match the checksum written at its end"):
        load_model(copy_of_model)


def test_an_unloadable_file_does_not_blame_matching_library_versions(copy_of_model):
    """Bytes that pass the checksum but are no pickle: the error says damaged, not scikit-learn."""
    garbage = b"this is not a pickle at all"
    copy_of_model.write_bytes(garbage + artifact.TRAILER_MAGIC + artifact.sha256_bytes(garbage).encode() + b"\n")
    with pytest.raises(ModelError) as e:
        load_model(copy_of_model)
    assert "damaged or was not written by train.py" in str(e.value) and "scikit-learn" not in str(e.value)
    card = json.loads(card_path_for(copy_of_model).read_text())
    card["libraries"]["scikit-learn"] = "0.1.0"
    card_path_for(copy_of_model).write_text(json.dumps(card))
    with pytest.raises(ModelError, match="saved with scikit-learn 0.1.0, this is"):
        load_model(copy_of_model)


def test_an_embedded_card_without_model_version_is_refused(copy_of_model, loaded):
    card = {k: v for k, v in loaded.card.items() if k not in ("model_version", "artifact")}
    rewrite(copy_of_model, card=card)
    with pytest.raises(ModelError, match="has no model_version"):
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


@pytest.mark.parametrize("crash_at", [1, 2])
def test_a_crash_at_any_point_of_a_save_leaves_a_loadable_pair(copy_of_model, trained, monkeypatch, crash_at):
    """Model and card are one file: its rename is the switch; the copy beside it follows."""
    old = load_model(copy_of_model)
    new_card = {"note": "the new model"}
    calls, real = [], artifact.atomic_write

    def crashing(path, blob):
        calls.append(path)
        if len(calls) == crash_at:
            raise KeyboardInterrupt("killed")
        real(path, blob)

    monkeypatch.setattr(artifact, "atomic_write", crashing)
    with pytest.raises(KeyboardInterrupt):
        save_model(trained.pipeline, new_card, copy_of_model)
    monkeypatch.undo()
    now = load_model(copy_of_model, sha256_file(copy_of_model))
    if crash_at == 1:  # before the switch: the old pair, whole
        assert now.card == old.card
    else:  # after it: the new pair, whatever the stale copy beside it says
        assert now.card["note"] == "the new model" and "note" not in json.loads(
            card_path_for(copy_of_model).read_text()
        )


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
