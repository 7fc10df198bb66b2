"""The artifact on disk: verified before anything in it is used, read as data, written atomically."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import stat
import tempfile
import zipfile
from pathlib import Path
from types import SimpleNamespace

import joblib
import numpy as np
import pytest

from heart import artifact, export, files
from heart.artifact import ModelError, card_path_for, load_model, load_pipeline, read_artifact, sha256_file
from heart.cli import check_training_data
from heart.data import load_dataset
from heart.schema import FEATURE_NAMES

from conftest import DATA

# Tests on small hand-made archives, not on the session's trained forest: reading does not depend
# on what the members hold beyond their stated shape, and each test runs in milliseconds. The
# format, as the module docstring states it: a zip of card.json, model.onnx, reference.npz and
# pipeline.joblib whose comment, the file's last bytes, is b"heart-model/3 sha256=" + the 64
# lower-case hex digits of the sha256 of everything before it + b"\n". The helpers below build it
# from that description, not from the module.

MAGIC = b"heart-model/3 sha256="
TRAILER = len(MAGIC) + 65
NAMES = ("card.json", "model.onnx", "reference.npz", "pipeline.joblib")
# Stands in for a fitted Pipeline: loading only checks its feature_names_in_.
PIPE = SimpleNamespace(feature_names_in_=list(FEATURE_NAMES))
HEX = hashlib.sha256(b"any bytes").hexdigest()
CARD = {"model_version": "1.0.0-abc", "artifact": {"format": "heart-model/3", "features": list(FEATURE_NAMES)}}


def dump(obj) -> bytes:
    buf = io.BytesIO()
    joblib.dump(obj, buf)
    return buf.getvalue()


def npz(**arrays) -> bytes:
    base = {
        "X": np.arange(39, dtype=float).reshape(3, 13),
        "proba": np.array([0.25, 0.5, 0.75]),
        "classes": np.array([0, 1]),
        "data_rows": np.int64(2),
    }
    buf = io.BytesIO()
    np.savez(buf, **{k: v for k, v in {**base, **arrays}.items() if v is not None})
    return buf.getvalue()


def members(**changes) -> dict[str, bytes]:
    """Valid member bytes, some replaced (or, given None, left out)."""
    base = {
        "card.json": json.dumps(CARD).encode(),
        "model.onnx": b"an ONNX graph (read_artifact only hands it over)",
        "reference.npz": npz(),
        "pipeline.joblib": dump(PIPE),
    }
    return {k: v for k, v in {**base, **changes}.items() if v is not None}


def archive(content: dict[str, bytes] | list[tuple[str, bytes]]) -> bytes:
    """A zip of `content` in order, then a correct trailer: what a writer (or an attacker) who knows the format makes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, blob in content.items() if isinstance(content, dict) else content:
            zf.writestr(name, blob)
        zf.comment = b"x" * TRAILER
    body = buf.getvalue()[:-TRAILER]
    return body + MAGIC + hashlib.sha256(body).hexdigest().encode() + b"\n"


def write(path: Path, **changes) -> Path:
    path.write_bytes(archive(members(**changes)))
    return path


@pytest.fixture
def small_model(tmp_path):
    path = tmp_path / "model.zip"
    export.write_artifact(path, {**CARD, "note": "small"}, {k: v for k, v in members().items() if k != "card.json"})
    return path


@pytest.fixture
def no_unpickling(monkeypatch):
    """Records any call of joblib.load (loading a tampered pickle runs its code)."""
    calls = []
    monkeypatch.setattr(joblib, "load", lambda *a, **k: calls.append(a))
    return calls


def refusal(path, pin=None, load=read_artifact) -> str:
    with pytest.raises(ModelError) as e:
        load(path, pin)
    return str(e.value)


# ------------------------------------------------------------------------- the archive as written


def test_the_archive_is_a_zip_of_four_members_and_a_trailer_over_the_rest(small_model):
    blob = small_model.read_bytes()
    body, trailer = blob[:-TRAILER], blob[-TRAILER:]
    assert trailer == MAGIC + hashlib.sha256(body).hexdigest().encode() + b"\n"
    with zipfile.ZipFile(small_model) as zf:
        assert tuple(zf.namelist()) == NAMES and zf.comment == trailer
        assert all(
            i.date_time == (1980, 1, 1, 0, 0, 0) and i.compress_type == zipfile.ZIP_DEFLATED for i in zf.infolist()
        )
        assert json.loads(zf.read("card.json")) == {**CARD, "note": "small"}
        assert zf.read("pipeline.joblib") == dump(PIPE)


def test_the_same_members_give_the_same_bytes(tmp_path):
    """Fixed timestamps and modes: the sha256 (and so a pin) depends on the content alone."""
    content = {k: v for k, v in members().items() if k != "card.json"}
    assert export.pack(CARD, content) == export.pack(CARD, content)
    assert export.pack(CARD, content) != export.pack({**CARD, "note": 1}, content)


def test_read_gives_the_card_as_served_the_graph_and_the_reference(small_model):
    model = read_artifact(small_model, sha256_file(small_model))
    assert model.card == {
        **CARD,
        "note": "small",
        "artifact": {
            **CARD["artifact"],
            "file": "model.zip",
            "sha256": sha256_file(small_model),
            "bytes": small_model.stat().st_size,
        },
    }
    assert model.version == "1.0.0-abc" and model.sha256 == sha256_file(small_model) and model.pinned is True
    assert model.onnx == members()["model.onnx"] and model.path == small_model
    ref = model.reference
    np.testing.assert_array_equal(ref.X, np.arange(39, dtype=float).reshape(3, 13))
    np.testing.assert_array_equal(ref.proba, [0.25, 0.5, 0.75])
    assert ref.classes == (0, 1) and ref.positive == 1 and ref.data_rows == 2
    np.testing.assert_array_equal(ref.data, ref.X[:2])
    assert read_artifact(small_model).pinned is False


def test_reading_never_unpickles(small_model, no_unpickling):
    read_artifact(small_model)
    assert no_unpickling == []


def test_load_model_adds_the_pipeline(small_model):
    loaded = load_model(small_model)
    assert loaded.pipeline == PIPE and loaded.card == read_artifact(small_model).card
    assert loaded.version == "1.0.0-abc" and loaded.sha256 == sha256_file(small_model) and not loaded.pinned


# ------------------------------------------------------------------------------ the pin and trailer


def test_tampered_artifact_is_refused_before_any_member_is_read(small_model, no_unpickling, monkeypatch):
    opened = []
    monkeypatch.setattr(zipfile, "ZipFile", lambda *a, **k: opened.append(a))
    blob = bytearray(small_model.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    small_model.write_bytes(bytes(blob))
    assert "does not match" in refusal(small_model)
    assert no_unpickling == [] and opened == [], "a tampered file must never be opened as an archive"


def test_a_pin_is_the_exact_digest_of_the_whole_file_and_is_checked_first(small_model, no_unpickling):
    blob = small_model.read_bytes()
    digest = hashlib.sha256(blob).hexdigest()
    wrong = {
        "last character differs": digest[:-1] + ("0" if digest[-1] != "0" else "1"),
        "one digit short": digest[:-1],
        "upper-case": digest.upper(),  # read_artifact takes canonical pins; parse_sha256 makes them
        "empty": "",
        "of the body without its trailer": hashlib.sha256(blob[:-TRAILER]).hexdigest(),
        "of the card copy": sha256_file(card_path_for(small_model)),
    }
    for why, pin in wrong.items():
        assert refusal(small_model, pin) == (
            f"{small_model}: sha256 {digest} does not match the pinned {pin}: refusing to load it (its Pipeline is "
            "a pickle, and unpickling a tampered one runs its code); if this is the model you mean to serve, pin "
            "its sha256 (MODEL_SHA256)"
        ), why
    assert no_unpickling == []
    assert read_artifact(small_model, digest).pinned is True


CUT_MESSAGE = (
    "{}: the file does not match the heart-model/3 checksum written at its end (it was cut or changed after it "
    "was written, or is not a model archive: retrain with `python train.py`); refusing to load it"
)


@pytest.mark.parametrize(
    "cut",
    [
        lambda b: b"",
        lambda b: b[:10],
        lambda b: b[: len(b) // 2],
        lambda b: b[:-1],  # the final newline lost
        lambda b: b[:-TRAILER],  # the whole trailer lost
        lambda b: b + b"\n",  # something appended
        lambda b: b[:-1] + b" ",  # the newline replaced
        lambda b: b.replace(MAGIC, b"heart-model/4 sha256="),  # another format, a correct digest
    ],
    ids=["empty", "10-bytes", "half", "no-final-newline", "no-trailer", "appended", "newline-replaced", "other-magic"],
)
def test_a_cut_or_reshaped_trailer_is_refused_before_reading(small_model, no_unpickling, cut):
    small_model.write_bytes(cut(small_model.read_bytes()))
    message = refusal(small_model)
    assert message == CUT_MESSAGE.format(small_model) or "written at its end: the file changed" in message, message
    assert no_unpickling == []


@pytest.mark.parametrize(
    "digest",
    [
        lambda p: hashlib.sha256(p).hexdigest().upper().encode(),  # right digest, wrong case
        lambda p: hashlib.sha256(p[:-1]).hexdigest().encode(),  # the digest of a cut body
        lambda p: b"\xff" * 64,  # not even ASCII
    ],
    ids=["upper-case", "other-body", "non-ascii"],
)
def test_a_trailer_digest_must_be_the_lower_case_sha256_of_the_body(small_model, no_unpickling, digest):
    body = small_model.read_bytes()[:-TRAILER]
    small_model.write_bytes(body + MAGIC + digest(body) + b"\n")
    written = digest(body).decode("ascii", "replace")
    assert refusal(small_model) == (
        f"{small_model}: sha256 {hashlib.sha256(body).hexdigest()[:16]}... does not match {written[:16]}... "
        "written at its end: the file changed after training; refusing to load it"
    )


def test_a_heart_model_2_file_says_to_retrain(tmp_path, no_unpickling):
    """model.joblib of the previous format: a pickle with a trailer line. Pinned or not, it is not loaded."""
    path = tmp_path / "model.joblib"
    payload = dump({"format": "heart-model/2", "card": "{}", "pipeline": PIPE})
    path.write_bytes(payload + b"\n#heart-model sha256=" + hashlib.sha256(payload).hexdigest().encode() + b"\n")
    expected = (
        f"{path}: a heart-model/2 file (model.joblib, a pickle), which this version no longer serves: retrain "
        "with `python train.py`, which writes heart-model/3 (model.zip)"
    )
    assert refusal(path) == refusal(path, sha256_file(path)) == expected
    assert no_unpickling == []


def test_a_missing_model_says_how_to_create_it_and_names_an_old_one_beside_it(tmp_path):
    path = tmp_path / "model.zip"
    assert refusal(path) == f"{path}: model file not found (run `python train.py` to create it)"
    # main said "not found" for these too: a directory, and a device that would be read forever
    assert (
        refusal(tmp_path)
        == f"{tmp_path}: a directory, not a model file: give the path of the model.zip train.py writes"
    )
    assert (
        refusal(Path("/dev/zero")) == "/dev/zero: not a regular file (a device, a FIFO or a socket): give a model.zip"
    )
    (tmp_path / "model.joblib").write_bytes(b"old")
    assert refusal(tmp_path / "model.zip").endswith(
        f"; {tmp_path / 'model.joblib'} beside it is the old format (heart-model/2), which this version no longer serves"
    )


@pytest.mark.parametrize(
    "error, reason",
    [(PermissionError(13, "Permission denied"), "Permission denied"), (OSError("odd device"), "odd device")],
)
def test_an_unreadable_model_says_why(small_model, monkeypatch, error, reason):
    def unreadable(self):
        raise error

    monkeypatch.setattr(Path, "read_bytes", unreadable)
    assert refusal(small_model) == f"{small_model}: cannot be read ({reason})"


# --------------------------------------------------------------------------- members, checked


@pytest.mark.parametrize("member", NAMES)
def test_a_missing_member_is_refused_even_pinned(tmp_path, member, no_unpickling):
    path = write(tmp_path / "model.zip", **{member: None})
    assert refusal(path, sha256_file(path)) == (
        f"{path}: missing member {member} (heart-model/3 holds exactly card.json, model.onnx, reference.npz, "
        "pipeline.joblib); refusing to load it"
    )
    assert no_unpickling == []


def test_an_unexpected_or_repeated_member_is_refused(tmp_path):
    path = tmp_path / "model.zip"
    path.write_bytes(archive({**members(), "payload.py": b"print('hi')"}))
    assert "unexpected member payload.py" in refusal(path)
    with pytest.warns(UserWarning, match="Duplicate name"):
        path.write_bytes(archive([*members().items(), ("card.json", b"{}")]))  # which card would count?
    assert refusal(path) == (
        f"{path}: unexpected member card.json (heart-model/3 holds exactly card.json, model.onnx, reference.npz, "
        "pipeline.joblib); refusing to load it"
    )


def test_a_member_that_inflates_past_the_limit_is_refused_unread(tmp_path, monkeypatch):
    path = write(tmp_path / "model.zip")
    monkeypatch.setattr(artifact, "MAX_MEMBER_BYTES", 100)
    assert refusal(path).startswith(f"{path}: card.json inflates to ")


def test_a_damaged_member_under_a_forged_trailer_is_refused(tmp_path):
    """A correct trailer over a member whose CRC-32 no longer matches: caught when the member is read."""
    path = tmp_path / "model.zip"
    graph = np.random.default_rng(0).bytes(400)  # incompressible: deflate keeps the bytes as they are
    blob = archive(members(**{"model.onnx": graph}))
    i = blob.index(graph[100:140])  # inside the member's data
    damaged = blob[:i] + bytes([blob[i] ^ 0x01]) + blob[i + 1 : -TRAILER]
    path.write_bytes(damaged + MAGIC + hashlib.sha256(damaged).hexdigest().encode() + b"\n")
    assert refusal(path).startswith(f"{path}: model.onnx cannot be read from the archive (")


@pytest.mark.parametrize(
    "card, reason",
    [
        (b"{not json", "the model card inside it is not valid JSON"),
        (b"\xff\xfe", "the model card inside it is not valid JSON"),
        (b"[]", "the model card inside it has no model_version"),
        (json.dumps({**CARD, "model_version": ""}).encode(), "has no model_version"),
        (json.dumps({**CARD, "model_version": 5}).encode(), "has no model_version"),
        (json.dumps({"model_version": "1"}).encode(), "does not say heart-model/3"),
        (json.dumps({**CARD, "artifact": {**CARD["artifact"], "format": "heart-model/2"}}).encode(), "does not say"),
    ],
    ids=["garbled", "not-utf8", "list", "empty-version", "number-version", "no-artifact", "other-format"],
)
def test_an_embedded_card_that_is_not_a_heart_model_3_card_is_refused(tmp_path, card, reason):
    path = write(tmp_path / "model.zip", **{"card.json": card})
    assert reason in refusal(path)


@pytest.mark.parametrize(
    "features", [None, list(FEATURE_NAMES)[::-1], list(FEATURE_NAMES)[:-1]], ids=["none", "reordered", "one-short"]
)
def test_a_model_for_other_columns_is_refused_naming_both(tmp_path, features):
    card = {**CARD, "artifact": {"format": "heart-model/3", "features": features}}
    path = write(tmp_path / "model.zip", **{"card.json": json.dumps(card).encode()})
    assert refusal(path) == f"{path}: the model expects columns {features}, not this schema's {list(FEATURE_NAMES)}"


class Payload:
    """Unpickling this runs code: it touches a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize(
    "arrays, reason",
    [
        ({"X": None}, "lacks X (it holds X, proba, classes, data_rows)"),
        ({"classes": None, "data_rows": None}, "lacks classes, data_rows (it holds"),
        ({"X": np.zeros((3, 12))}, "X must be a float array of (rows, 13)"),
        ({"X": np.zeros((0, 13))}, "X must be a float array of (rows, 13)"),
        ({"X": np.zeros((3, 13), dtype=int)}, "X must be a float array"),
        ({"proba": np.array([0.1, 0.2])}, "proba must be 3 probabilities"),
        ({"proba": np.array([0.1, np.nan, 0.2])}, "proba must be 3 probabilities"),
        ({"proba": np.array([0.1, 1.5, 0.2])}, "probabilities over 1"),
        ({"classes": np.array([0, 2])}, "without class 1"),
        ({"data_rows": np.int64(4)}, "data_rows must be a whole number from 0 to 3"),
        ({"data_rows": np.array([1, 2])}, "data_rows must be a whole number"),
    ],
)
def test_a_reference_of_the_wrong_shape_is_refused(tmp_path, arrays, reason):
    path = write(tmp_path / "model.zip", **{"reference.npz": npz(**arrays)})
    message = refusal(path)
    assert message.startswith(f"{path}: reference.npz") and reason in message, message


def test_a_reference_that_needs_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    buf = io.BytesIO()
    np.savez(buf, X=np.array([Payload(marker)], dtype=object), proba=np.zeros(1), classes=[0, 1], data_rows=0)
    path = write(tmp_path / "model.zip", **{"reference.npz": buf.getvalue()})
    assert "reference.npz cannot be read as NumPy arrays without pickle" in refusal(path, sha256_file(path))
    assert not marker.exists()


# ------------------------------------------------------------------------- the Pipeline, lazily


def test_the_pipeline_is_unpickled_only_from_the_file_read_at_load(small_model, no_unpickling):
    model = read_artifact(small_model)
    write(small_model, **{"pipeline.joblib": dump(Payload("/nonexistent"))})  # replaced since
    message = refusal(model, load=lambda m, _: load_pipeline(m))
    assert message == (
        f"{small_model}: sha256 {sha256_file(small_model)} is no longer the {model.sha256} verified when the "
        "model was loaded (the file was replaced since): refusing to unpickle its Pipeline; restart to load the "
        "new file"
    )
    assert no_unpickling == []


def test_a_pipeline_member_that_is_not_the_one_the_card_names_is_refused(tmp_path, no_unpickling):
    card = {**CARD, "artifact": {**CARD["artifact"], "pipeline_sha256": "0" * 64}}
    path = write(tmp_path / "model.zip", **{"card.json": json.dumps(card).encode()})
    message = refusal(read_artifact(path), load=lambda m, _: load_pipeline(m))
    assert (
        message
        == f"{path}: pipeline.joblib does not match the pipeline_sha256 in its card; retrain with `python train.py`"
    )
    assert no_unpickling == []


@pytest.mark.parametrize(
    "pipeline, columns",
    [
        (SimpleNamespace(), []),
        (SimpleNamespace(feature_names_in_=list(FEATURE_NAMES)[::-1]), list(FEATURE_NAMES)[::-1]),
    ],
    ids=["unnamed", "reordered"],
)
def test_a_pipeline_for_other_columns_is_refused_naming_both(tmp_path, pipeline, columns):
    path = write(tmp_path / "model.zip", **{"pipeline.joblib": dump(pipeline)})
    assert refusal(path, load=load_model) == (
        f"{path}: the Pipeline expects columns {columns}, not this schema's {list(FEATURE_NAMES)}"
    )


def test_a_pipeline_member_that_is_no_pickle_names_the_library_versions_only_when_they_differ(tmp_path):
    import sklearn

    path = write(tmp_path / "model.zip", **{"pipeline.joblib": b"not a pickle"})
    message = refusal(path, load=load_model)
    assert message.startswith(f"{path}: checksum verified but its Pipeline could not be loaded (")
    assert message.endswith("the file is damaged or was not written by train.py: retrain with `python train.py`")
    card_path_for(path).write_text(json.dumps({"libraries": {"scikit-learn": sklearn.__version__}}))
    assert "scikit-learn" not in refusal(path, load=load_model)
    card_path_for(path).write_text(json.dumps({"libraries": {"scikit-learn": "0.1.0"}}))
    assert refusal(path, load=load_model).endswith(
        f"; it was saved with scikit-learn 0.1.0, this is {sklearn.__version__}: retrain, or install 0.1.0"
    )


# ------------------------------------------------------------------------------- the card copy


def test_the_card_beside_the_model_is_only_a_copy(small_model):
    """Loading reads the card inside the file: the copy beside it may be absent, garbled or edited."""
    expected = read_artifact(small_model).card
    card_path_for(small_model).unlink()
    assert read_artifact(small_model).card == expected
    card_path_for(small_model).write_text("{not json")
    assert read_artifact(small_model).card == expected
    card_path_for(small_model).write_text(json.dumps({**expected, "model_version": "edited"}))
    assert read_artifact(small_model).card == expected


def _stale_warnings(caplog):
    return [r for r in caplog.records if r.name == "heart.artifact" and r.getMessage() == "model_card_copy_stale"]


def test_a_card_copy_describing_another_file_is_warned_about(small_model, caplog):
    caplog.set_level(logging.WARNING, logger="heart.artifact")
    read_artifact(small_model)
    assert _stale_warnings(caplog) == [], "the copy written with the model describes it"
    copy = json.loads(card_path_for(small_model).read_text())
    copy["artifact"]["sha256"] = "0" * 64
    card_path_for(small_model).write_text(json.dumps(copy))
    read_artifact(small_model)
    [record] = _stale_warnings(caplog)
    assert (record.model_path, record.card, record.card_sha256, record.file_sha256) == (
        str(small_model),
        str(card_path_for(small_model)),
        "0" * 64,
        sha256_file(small_model),
    )


@pytest.mark.parametrize("copy", [None, "{not json", "[1]", "{}", '{"artifact": {}}', '{"artifact": []}'])
def test_a_card_copy_that_names_no_sha256_is_not_called_stale(small_model, caplog, copy):
    caplog.set_level(logging.WARNING, logger="heart.artifact")
    if copy is None:
        card_path_for(small_model).unlink()
    else:
        card_path_for(small_model).write_text(copy)
    assert read_artifact(small_model).card["note"] == "small"
    assert _stale_warnings(caplog) == []


def test_the_card_copy_is_named_after_the_model_beside_it():
    assert card_path_for("models/model.zip") == Path("models/model.card.json")
    assert card_path_for(Path("/srv/m.v2.zip")) == Path("/srv/m.v2.card.json")


# ---------------------------------------------------------------------------- writing, atomically


def test_write_returns_the_card_as_served_and_writes_the_same_card_beside_the_model(tmp_path):
    path = tmp_path / "new" / "dir" / "m.zip"  # missing directories are created
    card = export.write_artifact(path, CARD, {k: v for k, v in members().items() if k != "card.json"})
    assert card["artifact"] == {
        **CARD["artifact"],
        "file": "m.zip",
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
    }
    assert read_artifact(path).card == card
    copy = card_path_for(path).read_text()
    assert json.loads(copy) == card and copy.endswith("}\n")
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.card.json", "m.zip"]


def test_failed_write_leaves_the_previous_model_intact(small_model, monkeypatch):
    before = small_model.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", broken_replace)
    with pytest.raises(OSError, match="^disk full$"):
        export.write_artifact(
            small_model, {**CARD, "note": "new"}, {k: v for k, v in members().items() if k != "card.json"}
        )
    monkeypatch.undo()
    assert small_model.read_bytes() == before
    assert sorted(p.name for p in small_model.parent.iterdir()) == ["model.card.json", "model.zip"]


@pytest.mark.parametrize("crash_at", [1, 2])
def test_a_crash_at_any_point_of_a_write_leaves_a_loadable_model(small_model, monkeypatch, crash_at):
    """Model and card are one file: its rename is the switch; the copy beside it follows."""
    old = read_artifact(small_model)
    calls, real = [], export.atomic_write

    def crashing(path, blob):
        calls.append(path)
        if len(calls) == crash_at:
            raise KeyboardInterrupt("killed")
        real(path, blob)

    monkeypatch.setattr(export, "atomic_write", crashing)
    content = {k: v for k, v in members().items() if k != "card.json"}
    with pytest.raises(KeyboardInterrupt):
        export.write_artifact(small_model, {**CARD, "note": "the new model"}, content)
    monkeypatch.undo()
    assert calls[0] == small_model, "the model file is switched first"
    now = read_artifact(small_model, sha256_file(small_model))
    if crash_at == 1:  # before the switch: the old model, whole
        assert now.card == old.card
    else:  # after it: the new one, whatever the stale copy beside it says
        stale_copy = json.loads(card_path_for(small_model).read_text())
        assert now.card["note"] == "the new model" and stale_copy["note"] == "small"


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_card_that_is_not_strict_json_is_refused_before_anything_is_written(small_model, bad):
    before = small_model.read_bytes(), card_path_for(small_model).read_text()
    with pytest.raises(ValueError, match="JSON compliant"):
        export.write_artifact(small_model, {**CARD, "auc": bad}, {})
    assert (small_model.read_bytes(), card_path_for(small_model).read_text()) == before


def test_saved_files_are_readable_by_others(small_model):
    assert small_model.stat().st_mode & 0o044 == 0o044
    assert card_path_for(small_model).stat().st_mode & 0o044 == 0o044


def test_file_hash_streams_to_the_same_digest_as_the_bytes(tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * 9000)  # over 2 MiB: more than one read chunk
    assert sha256_file(big) == hashlib.sha256(big.read_bytes()).hexdigest() == artifact.sha256_bytes(big.read_bytes())
    assert sha256_file(DATA) == load_dataset(DATA).sha256


def test_atomic_write_stages_the_file_in_the_destination_directory(tmp_path, monkeypatch):
    """The temporary file must be on the destination's filesystem, or os.replace is no atomic rename."""
    dest_dir = tmp_path / "dest"
    dest_dir.mkdir()
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # neither the working directory nor $TMPDIR may host it
    monkeypatch.setenv("TMPDIR", str(elsewhere))
    monkeypatch.setattr(tempfile, "tempdir", None)
    staged, real_replace = [], os.replace

    def watching_replace(src, dst):
        src = Path(src)
        staged.append((src.parent, src.name, src.read_bytes(), Path(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", watching_replace)
    files.atomic_write(dest_dir / "model.zip", b"new bytes")
    [(parent, name, blob, dst)] = staged
    assert parent == dest_dir and dst == dest_dir / "model.zip"
    assert name.startswith(".model.zip.") and name.endswith(".tmp"), name  # hidden, named after the target
    assert blob == b"new bytes", "the temporary file is complete before the rename"
    assert [p.name for p in dest_dir.iterdir()] == ["model.zip"], "no temporary file left"
    assert list(elsewhere.iterdir()) == []


def test_atomic_write_replaces_a_symlinks_target_and_never_a_directory_or_device(tmp_path):
    target = tmp_path / "real" / "r.json"
    target.parent.mkdir()
    target.write_bytes(b"old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    files.atomic_write(link, b"new")
    assert link.is_symlink() and target.read_bytes() == b"new"
    device = tmp_path / "device"
    device.symlink_to("/dev/null")
    (tmp_path / "dir").mkdir()
    for path in (tmp_path / "dir", device, Path("/dev/null")):
        with pytest.raises(FileExistsError, match=f"^{path} exists and is not a regular file: not replaced$"):
            files.atomic_write(path, b"x")
    assert device.is_symlink() and Path("/dev/null").is_char_device() and (tmp_path / "dir").is_dir()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["device", "dir", "link.json", "r.json", "real"]


def test_atomic_write_never_follows_a_symlink_to_nothing_and_keeps_a_replaced_files_mode(tmp_path):
    """A dangling link would send the write anywhere its target names (another directory): refused.
    A replaced file keeps its permissions (a 0600 secret-bearing report stays 0600)."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    dangling = tmp_path / "report.json"
    dangling.symlink_to(elsewhere / "victim.txt")
    with pytest.raises(FileExistsError, match=f"^{dangling} is a symlink to a missing file: not followed$"):
        files.atomic_write(dangling, b"pwned")
    assert list(elsewhere.iterdir()) == [] and dangling.is_symlink()
    private = tmp_path / "private.json"
    private.write_bytes(b"old")
    private.chmod(0o600)
    link = tmp_path / "link.json"
    link.symlink_to(private)
    for path in (private, link):
        files.atomic_write(path, b"new")
        assert stat.S_IMODE(private.stat().st_mode) == 0o600 and private.read_bytes() == b"new"
    assert link.is_symlink()


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_write_gives_the_file_the_permissions_of_an_ordinary_file(tmp_path, umask, mode):
    """0o666 less the umask, as open() would give (mkstemp alone gives 0o600); the umask is left as it was."""
    old = os.umask(umask)
    try:
        files.atomic_write(tmp_path / "f.bin", b"x")
        after = os.umask(umask)
    finally:
        os.umask(old)
    assert after == umask
    assert stat.S_IMODE((tmp_path / "f.bin").stat().st_mode) == mode


@pytest.mark.parametrize("fail_in", ["fsync", "replace"])
@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt("disk full")])
def test_a_failed_atomic_write_leaves_the_old_file_and_no_temporary_one(tmp_path, monkeypatch, fail_in, error):
    target = tmp_path / "model.zip"
    target.write_bytes(b"the old model")
    tried = []

    def failing(*args):
        tried.append(args)
        raise error

    monkeypatch.setattr(files.os, fail_in, failing)
    with pytest.raises(type(error), match="^disk full$"):  # the original error, not one from the cleanup
        files.atomic_write(target, b"the new model")
    assert tried, f"os.{fail_in} was reached"
    assert target.read_bytes() == b"the old model"
    assert [p.name for p in tmp_path.iterdir()] == ["model.zip"]


# --------------------------------------------------------------------------------------- pins


@pytest.mark.parametrize(
    "written",
    [HEX, HEX.upper(), f"  {HEX}\n", f"{HEX}  model.zip\n", f"sha256:{HEX}", f"SHA256:{HEX.upper()}\n"],
    ids=["plain", "upper-case", "whitespace", "sha256sum-output", "prefixed", "prefixed-upper"],
)
def test_a_pin_is_read_as_people_write_it_and_kept_canonical(written):
    assert artifact.parse_sha256(written, "MODEL_SHA256") == HEX


@pytest.mark.parametrize(
    "written",
    [
        "",
        "  \n",
        HEX[:-1],  # 63 digits
        HEX + "0",  # 65 digits
        HEX[:-1] + "g",  # not hex
        f"{HEX[:32]} {HEX[32:]}",  # split by a space: only the first word is the digest
        f"model.zip  {HEX}",  # the file name first
        f"{HEX}:sha256",  # the prefix, but at the end
        f"md5:{HEX}",
    ],
)
def test_a_malformed_pin_is_refused_quoting_what_was_given(written):
    with pytest.raises(ModelError) as e:
        artifact.parse_sha256(written, "MODEL_SHA256")
    assert str(e.value) == (
        f"MODEL_SHA256 must be a sha256 (64 hex digits, as `sha256sum model.zip` prints), got {written.strip()!r}"
    )


def test_a_long_malformed_pin_is_quoted_up_to_80_characters():
    with pytest.raises(ModelError) as e:
        artifact.parse_sha256("\t" + "z" * 100 + " \n", "the pin file /run/pin")
    assert str(e.value).startswith("the pin file /run/pin must be a sha256 ")
    assert str(e.value).endswith(" got '" + "z" * 80 + "'")


# ------------------------------------------------------------------------------ analyses' data


def test_analyses_refuse_data_the_model_was_not_trained_on(loaded, dataset, tmp_path):
    check_training_data(loaded.card, dataset)
    other = tmp_path / "other.csv"
    other.write_text(DATA.read_text() + "\n")  # the same rows, a different file
    with pytest.raises(ModelError, match="not the file this model was trained on"):
        check_training_data(loaded.card, load_dataset(other))


def test_analyses_accept_data_when_the_card_names_no_training_file():
    data = SimpleNamespace(source="x.csv", sha256=HEX)
    for card in ({}, {"data": {}}, {"data": {"sha256": ""}}, {"data": {"sha256": HEX}}):
        check_training_data(card, data)


def test_the_training_data_message_names_both_digests():
    data = SimpleNamespace(source=Path("other.csv"), sha256="ab" * 32)
    with pytest.raises(ModelError) as e:
        check_training_data({"data": {"sha256": "cd" * 32}}, data)
    assert str(e.value) == (
        "other.csv is not the file this model was trained on (sha256 abababababab... vs cdcdcdcdcdcd... in "
        "the model card): its 'held-out' rows would include training rows; pass the training data with "
        "--data, or retrain on this file"
    )
