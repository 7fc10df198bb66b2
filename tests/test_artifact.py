"""The artifact on disk: verified before unpickling, written atomically, hashed in one place."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import stat
import tempfile
from pathlib import Path
from types import SimpleNamespace

import joblib
import pytest

import heart
from heart import artifact
from heart.artifact import ModelError, card_path_for, load_model, save_model, sha256_file
from heart.cli import check_training_data
from heart.data import load_dataset
from heart.schema import FEATURE_NAMES

from conftest import DATA

# Tests on small hand-made files, not on the session's trained forest: the artifact does not
# depend on what the pipeline is, and each test runs in milliseconds (mutation testing reruns them).
# The format, as the module docstring states it: a joblib dump of {"format", "card", "pipeline"},
# then b"\n#heart-model sha256=" + the 64 lower-case hex digits of the sha256 of everything
# before it + b"\n". The helpers below build it from that description, not from the module.

MAGIC = b"\n#heart-model sha256="
# Stands in for a fitted Pipeline: loading only checks its feature_names_in_.
PIPE = SimpleNamespace(feature_names_in_=list(FEATURE_NAMES))
HEX = hashlib.sha256(b"any bytes").hexdigest()


def dump(obj) -> bytes:
    buf = io.BytesIO()
    joblib.dump(obj, buf)
    return buf.getvalue()


def trailed(payload: bytes) -> bytes:
    """payload + a correct trailer: what a writer (or an attacker) who knows the format produces."""
    return payload + MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n"


def content(**changes):
    """A valid heart-model/2 content dict, with some keys replaced (or removed, given None)."""
    base = {"format": "heart-model/2", "card": json.dumps({"model_version": "1.0.0-abc"}), "pipeline": PIPE}
    return {k: v for k, v in {**base, **changes}.items() if v is not None}


@pytest.fixture
def small_model(tmp_path):
    path = tmp_path / "model.joblib"
    save_model(PIPE, {"note": "small"}, path)
    return path


@pytest.fixture
def no_unpickling(monkeypatch):
    """Records any call of joblib.load (loading a tampered pickle runs its code)."""
    calls = []
    monkeypatch.setattr(joblib, "load", lambda *a, **k: calls.append(a))
    return calls


def refusal(path, pin=None) -> str:
    with pytest.raises(ModelError) as e:
        load_model(path, pin)
    return str(e.value)


def test_tampered_artifact_is_refused_before_unpickling(small_model, no_unpickling):
    blob = bytearray(small_model.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    small_model.write_bytes(bytes(blob))
    assert "does not match" in refusal(small_model)
    assert no_unpickling == [], "a tampered file must never reach the unpickler"


def test_the_card_beside_the_model_is_only_a_copy(small_model):
    """Loading reads the card inside the file: the copy beside it may be absent, garbled or edited."""
    expected = load_model(small_model).card
    card_path_for(small_model).unlink()
    assert load_model(small_model).card == expected
    card_path_for(small_model).write_text("{not json")
    assert load_model(small_model).card == expected
    card_path_for(small_model).write_text(json.dumps({**expected, "model_version": "edited"}))
    assert load_model(small_model).card == expected


def test_a_pin_is_checked_before_unpickling(small_model, no_unpickling):
    assert "does not match the pinned " + "0" * 64 in refusal(small_model, "0" * 64)
    assert no_unpickling == []


def test_a_file_without_its_trailer_is_refused(small_model):
    blob = small_model.read_bytes()
    small_model.write_bytes(blob[: -artifact.TRAILER_LEN])
    assert "does not match the checksum written at its end" in refusal(small_model)


def test_an_unloadable_file_does_not_blame_matching_library_versions(small_model):
    """Bytes that pass the checksum but are no pickle: the error says damaged, not scikit-learn."""
    import sklearn

    small_model.write_bytes(trailed(b"this is not a pickle at all"))
    copy = card_path_for(small_model)
    copy.write_text(json.dumps({"libraries": {"scikit-learn": sklearn.__version__}}))
    message = refusal(small_model)
    assert "damaged or was not written by train.py" in message and "scikit-learn" not in message
    copy.write_text(json.dumps({"libraries": {"scikit-learn": "0.1.0"}}))
    assert "saved with scikit-learn 0.1.0, this is" in refusal(small_model)


def test_failed_save_leaves_the_previous_model_intact(small_model, monkeypatch):
    before = small_model.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(artifact.os, "replace", broken_replace)
    with pytest.raises(OSError, match="^disk full$"):
        save_model(PIPE, {"note": "new"}, small_model)
    monkeypatch.undo()
    assert small_model.read_bytes() == before
    assert sorted(p.name for p in small_model.parent.iterdir()) == ["model.card.json", "model.joblib"]
    assert load_model(small_model).card["note"] == "small"


@pytest.mark.parametrize("crash_at", [1, 2])
def test_a_crash_at_any_point_of_a_save_leaves_a_loadable_pair(small_model, monkeypatch, crash_at):
    """Model and card are one file: its rename is the switch; the copy beside it follows."""
    old = load_model(small_model)
    new_card = {"note": "the new model"}
    calls, real = [], artifact.atomic_write

    def crashing(path, blob):
        calls.append(path)
        if len(calls) == crash_at:
            raise KeyboardInterrupt("killed")
        real(path, blob)

    monkeypatch.setattr(artifact, "atomic_write", crashing)
    with pytest.raises(KeyboardInterrupt):
        save_model(PIPE, new_card, small_model)
    monkeypatch.undo()
    assert calls[0] == small_model, "the model file is switched first"
    now = load_model(small_model, sha256_file(small_model))
    if crash_at == 1:  # before the switch: the old pair, whole
        assert now.card == old.card
    else:  # after it: the new pair, whatever the stale copy beside it says
        stale_copy = json.loads(card_path_for(small_model).read_text())
        assert now.card["note"] == "the new model" and stale_copy["note"] == "small"


def test_saved_files_are_readable_by_others(small_model):
    assert small_model.stat().st_mode & 0o044 == 0o044
    assert card_path_for(small_model).stat().st_mode & 0o044 == 0o044


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


def test_the_card_copy_is_named_after_the_model_beside_it():
    assert card_path_for("models/model.joblib") == Path("models/model.card.json")
    assert card_path_for(Path("/srv/m.v2.joblib")) == Path("/srv/m.v2.card.json")


@pytest.mark.parametrize(
    "written",
    [HEX, HEX.upper(), f"  {HEX}\n", f"{HEX}  model.joblib\n", f"sha256:{HEX}", f"SHA256:{HEX.upper()}\n"],
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
        f"model.joblib  {HEX}",  # the file name first
        f"{HEX}:sha256",  # the prefix, but at the end
        f"md5:{HEX}",
    ],
)
def test_a_malformed_pin_is_refused_quoting_what_was_given(written):
    with pytest.raises(ModelError) as e:
        artifact.parse_sha256(written, "MODEL_SHA256")
    # the message quotes the text stripped of surrounding whitespace (repr, as Python prints it)
    assert str(e.value) == (
        f"MODEL_SHA256 must be a sha256 (64 hex digits, as `sha256sum model.joblib` prints), got {written.strip()!r}"
    )


def test_a_long_malformed_pin_is_quoted_up_to_80_characters():
    with pytest.raises(ModelError) as e:
        artifact.parse_sha256("\t" + "z" * 100 + " \n", "the pin file /run/pin")
    assert str(e.value).startswith("the pin file /run/pin must be a sha256 ")
    assert str(e.value).endswith(" got '" + "z" * 80 + "'")


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

    monkeypatch.setattr(artifact.os, "replace", watching_replace)
    artifact.atomic_write(dest_dir / "model.joblib", b"new bytes")
    [(parent, name, blob, dst)] = staged
    assert parent == dest_dir and dst == dest_dir / "model.joblib"
    assert name.startswith(".model.joblib.") and name.endswith(".tmp"), name  # hidden, named after the target
    assert blob == b"new bytes", "the temporary file is complete before the rename"
    assert (dest_dir / "model.joblib").read_bytes() == b"new bytes"
    assert [p.name for p in dest_dir.iterdir()] == ["model.joblib"], "no temporary file left"
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_write_gives_the_file_the_permissions_of_an_ordinary_file(tmp_path, umask, mode):
    """0o666 less the umask, as open() would give (mkstemp alone gives 0o600); the umask is left as it was."""
    old = os.umask(umask)
    try:
        artifact.atomic_write(tmp_path / "f.bin", b"x")
        after = os.umask(umask)
    finally:
        os.umask(old)
    assert after == umask
    assert stat.S_IMODE((tmp_path / "f.bin").stat().st_mode) == mode


@pytest.mark.parametrize("fail_in", ["fsync", "replace"])
@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt("disk full")])
def test_a_failed_atomic_write_leaves_the_old_file_and_no_temporary_one(tmp_path, monkeypatch, fail_in, error):
    target = tmp_path / "model.joblib"
    target.write_bytes(b"the old model")
    tried = []

    def failing(*args):
        tried.append(args)
        raise error

    monkeypatch.setattr(artifact.os, fail_in, failing)
    with pytest.raises(type(error), match="^disk full$"):  # the original error, not one from the cleanup
        artifact.atomic_write(target, b"the new model")
    assert tried, f"os.{fail_in} was reached"
    assert target.read_bytes() == b"the old model"
    assert [p.name for p in tmp_path.iterdir()] == ["model.joblib"]


def test_a_save_is_one_file_whose_trailer_covers_all_the_rest(small_model):
    blob = small_model.read_bytes()
    payload, sep, digest = blob.rpartition(MAGIC)
    assert sep == MAGIC and digest == hashlib.sha256(payload).hexdigest().encode() + b"\n"
    saved = joblib.load(io.BytesIO(payload))
    assert sorted(saved) == ["card", "format", "pipeline"] and saved["format"] == "heart-model/2"
    assert saved["pipeline"] == PIPE
    card = json.loads(saved["card"])
    assert card["note"] == "small" and card["artifact"]["format"] == "heart-model/2"


def test_model_version_comes_from_the_pipeline_bytes_alone(tmp_path):
    a = save_model(PIPE, {"created": "monday"}, tmp_path / "a" / "model.joblib")
    b = save_model(PIPE, {"created": "tuesday"}, tmp_path / "b" / "model.joblib")
    other = SimpleNamespace(feature_names_in_=list(FEATURE_NAMES), extra=1)
    c = save_model(other, {"created": "monday"}, tmp_path / "c" / "model.joblib")
    pipeline_sha = hashlib.sha256(dump(PIPE)).hexdigest()  # the Pipeline's own joblib bytes
    assert a["artifact"]["pipeline_sha256"] == b["artifact"]["pipeline_sha256"] == pipeline_sha
    assert a["model_version"] == b["model_version"] == f"{heart.__version__}-{pipeline_sha[:12]}"
    assert c["model_version"] == f"{heart.__version__}-{hashlib.sha256(dump(other)).hexdigest()[:12]}"
    assert c["model_version"] != a["model_version"]


def test_save_returns_the_card_as_served_and_writes_the_same_card_beside_the_model(tmp_path):
    path = tmp_path / "new" / "dir" / "m.joblib"  # missing directories are created
    card = save_model(PIPE, {"note": "x", "model_version": "ignored"}, path)
    assert card["artifact"] == {
        "format": "heart-model/2",
        "pipeline_sha256": hashlib.sha256(dump(PIPE)).hexdigest(),
        "file": "m.joblib",
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
    }
    assert card["model_version"] != "ignored"
    loaded = load_model(path, sha256_file(path))
    assert loaded.card == card and loaded.version == card["model_version"] and loaded.sha256 == sha256_file(path)
    assert loaded.path == path and loaded.pinned is True and loaded.pipeline == PIPE
    copy = card_path_for(path).read_text()
    assert json.loads(copy) == card
    assert copy.endswith("}\n") and copy.splitlines()[1].startswith('  "') and not copy.splitlines()[1][2].isspace()
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.card.json", "m.joblib"]


def test_saving_over_a_model_replaces_the_pair(small_model):
    card = save_model(PIPE, {"note": "second"}, small_model)
    assert load_model(small_model).card == card == json.loads(card_path_for(small_model).read_text())
    assert card["note"] == "second"


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_card_that_is_not_strict_json_is_refused_before_anything_is_written(small_model, bad):
    before = small_model.read_bytes(), card_path_for(small_model).read_text()
    with pytest.raises(ValueError, match="JSON compliant"):
        save_model(PIPE, {"auc": bad}, small_model)
    assert (small_model.read_bytes(), card_path_for(small_model).read_text()) == before
    fresh = small_model.with_name("fresh.joblib")
    with pytest.raises(ValueError):
        save_model(PIPE, {"auc": bad}, fresh)
    assert not fresh.exists() and not card_path_for(fresh).exists()


def test_a_missing_model_says_how_to_create_it(tmp_path):
    for path in (tmp_path / "model.joblib", tmp_path):  # absent, or a directory
        assert refusal(path) == f"{path}: model file not found (run `python train.py` to create it)"


@pytest.mark.parametrize(
    "error, reason",
    [(PermissionError(13, "Permission denied"), "Permission denied"), (OSError("odd device"), "odd device")],
)
def test_an_unreadable_model_says_why(small_model, monkeypatch, error, reason):
    def unreadable(self):
        raise error

    monkeypatch.setattr(Path, "read_bytes", unreadable)
    assert refusal(small_model) == f"{small_model}: cannot be read ({reason})"


def test_the_right_pin_loads_and_says_it_was_pinned(small_model):
    digest = hashlib.sha256(small_model.read_bytes()).hexdigest()  # the whole file, trailer included
    assert load_model(small_model, digest).pinned is True
    assert load_model(small_model).pinned is False


def test_a_pin_is_the_exact_digest_of_the_whole_file(small_model, no_unpickling):
    blob = small_model.read_bytes()
    digest = hashlib.sha256(blob).hexdigest()
    last = "0" if digest[-1] != "0" else "1"
    wrong = {
        "last character differs": digest[:-1] + last,
        "first character differs": ("0" if digest[0] != "0" else "1") + digest[1:],
        "one digit short": digest[:-1],
        "one digit long": digest + "0",
        "upper-case": digest.upper(),  # load_model takes canonical pins; parse_sha256 makes them
        "trailing newline": digest + "\n",
        "empty": "",
        "of the payload without its trailer": hashlib.sha256(blob[: -len(MAGIC) - 65]).hexdigest(),
        "of the card copy": sha256_file(card_path_for(small_model)),
    }
    for why, pin in wrong.items():
        assert refusal(small_model, pin) == (
            f"{small_model}: sha256 {digest} does not match the pinned {pin}: refusing to load it (a joblib "
            "file is a pickle, and unpickling a tampered one runs its code); if this is the model you mean to "
            "serve, pin its sha256 (MODEL_SHA256)"
        ), why
    assert no_unpickling == []


CUT_MESSAGE = (
    "{}: the file does not match the checksum written at its end (it was changed or cut after it was "
    "written, or predates this format: retrain with `python train.py`); refusing to load it"
)


@pytest.mark.parametrize(
    "cut",
    [
        lambda b: b"",
        lambda b: b[:10],
        lambda b: b[: len(b) // 2],
        lambda b: b[:-1],  # the final newline lost
        lambda b: b[: -len(MAGIC) - 65],  # the whole trailer lost
        lambda b: b[-len(MAGIC) - 65 :],  # the trailer alone
        lambda b: b[-len(MAGIC) - 64 :],  # the trailer alone, less its first byte
        lambda b: b + b"\n",  # something appended
        lambda b: b[:-1] + b" ",  # the newline replaced
        lambda b: b.replace(MAGIC, b"\n#heart-model sha257="),  # another magic, a correct digest
        lambda b: b.replace(MAGIC, MAGIC + b" "),  # whitespace before the digest
    ],
    ids=[
        "empty",
        "10-bytes",
        "half",
        "no-final-newline",
        "no-trailer",
        "trailer-only",
        "trailer-less-first-byte",
        "appended",
        "newline-replaced",
        "other-magic",
        "space-before-digest",
    ],
)
def test_a_cut_or_reshaped_trailer_is_refused_before_unpickling(small_model, no_unpickling, cut):
    small_model.write_bytes(cut(small_model.read_bytes()))
    message = refusal(small_model)
    assert message in (CUT_MESSAGE.format(small_model), _mismatch(small_model)), message
    assert no_unpickling == []


def _mismatch(path) -> str:
    """The message for a well-formed trailer whose digest is not that of the payload."""
    blob = path.read_bytes()
    payload, written = blob[: -len(MAGIC) - 65], blob[-65:-1].decode("ascii", "replace")
    return (
        f"{path}: sha256 {hashlib.sha256(payload).hexdigest()[:16]}... does not match {written[:16]}... "
        "written at its end: the file changed after training; refusing to load it"
    )


def test_a_trailer_without_magic_or_final_newline_gets_the_format_message(small_model):
    """Not the mismatch message: the digest in these files is right, only the frame is wrong."""
    blob = small_model.read_bytes()
    for shaped in (blob[:-1] + b" ", blob.replace(MAGIC, b"\n#heart-model sha257="), b""):
        small_model.write_bytes(shaped)
        assert refusal(small_model) == CUT_MESSAGE.format(small_model)


@pytest.mark.parametrize(
    "digest",
    [
        lambda p: hashlib.sha256(p).hexdigest().upper().encode(),  # right digest, wrong case
        lambda p: hashlib.sha256(p[:-1]).hexdigest().encode(),  # the digest of a cut payload
        lambda p: hashlib.sha256(p).hexdigest()[:-1].encode() + b" ",  # 63 digits and a space
        lambda p: hashlib.sha256(p).hexdigest()[:-1].encode() + b"\n",  # 63 digits and a newline
        lambda p: b"\xff" * 64,  # not even ASCII
        lambda p: b"0" * 64,
    ],
    ids=["upper-case", "other-payload", "63-and-space", "63-and-newline", "non-ascii", "zeros"],
)
def test_a_trailer_digest_must_be_the_lower_case_sha256_of_the_payload(tmp_path, no_unpickling, digest):
    path = tmp_path / "model.joblib"
    payload = dump(content())
    path.write_bytes(payload + MAGIC + digest(payload) + b"\n")
    written = digest(payload).decode("ascii", "replace")  # U+FFFD for each non-ASCII byte
    assert refusal(path) == (
        f"{path}: sha256 {hashlib.sha256(payload).hexdigest()[:16]}... does not match {written[:16]}... "
        "written at its end: the file changed after training; refusing to load it"
    )
    assert no_unpickling == []


def test_a_hand_made_file_with_a_correct_trailer_loads(tmp_path):
    """The format as documented is all a loader needs; a card with no artifact block is fine."""
    path = tmp_path / "model.joblib"
    blob = trailed(dump(content()))
    path.write_bytes(blob)
    model = load_model(path)
    assert model.card == {
        "model_version": "1.0.0-abc",
        "artifact": {"file": "model.joblib", "sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)},
    }
    assert model.version == "1.0.0-abc" and model.pipeline == PIPE


@pytest.mark.parametrize("payload", [b"", b"this is not a pickle at all"], ids=["nothing", "text"])
def test_a_checked_payload_that_is_no_pickle_is_called_damaged(tmp_path, payload):
    """A correct trailer over bytes joblib cannot load: the message names joblib's own error."""
    with pytest.raises(Exception) as joblib_error:  # what joblib itself raises for these bytes
        joblib.load(io.BytesIO(payload))
    error = f"{type(joblib_error.value).__name__}: {joblib_error.value}"  # EOFError / IndexError here
    path = tmp_path / "model.joblib"
    path.write_bytes(trailed(payload))
    for copy in (None, "{not json", "[1]", '{"libraries": []}', '{"libraries": {}}'):
        if copy is not None:  # no copy, or one that says nothing about the library versions
            card_path_for(path).write_text(copy)
        assert refusal(path) == (
            f"{path}: checksum verified but could not be loaded ({error}); the file is damaged or was "
            "not written by train.py: retrain with `python train.py`"
        ), copy


def test_an_unloadable_file_names_the_library_versions_when_the_copy_says_they_differ(tmp_path):
    import sklearn

    path = tmp_path / "model.joblib"
    path.write_bytes(trailed(b"not a pickle"))
    card_path_for(path).write_text(json.dumps({"libraries": {"scikit-learn": "0.1.0"}}))
    assert refusal(path).endswith(
        f"; it was saved with scikit-learn 0.1.0, this is {sklearn.__version__}: retrain, or install 0.1.0"
    )


@pytest.mark.parametrize(
    "stored",
    [
        [PIPE],  # not a dict
        "heart-model/2",
        content(format="heart-model/1"),  # a correct checksum, another format version
        content(format="heart-model/3"),
        content(format=None),  # no format at all
        content(format="HEART-MODEL/2"),
        {"format": "heart-model/2 "},
    ],
    ids=["list", "str", "v1", "v3", "no-format", "upper-case", "trailing-space"],
)
def test_a_file_of_another_format_is_refused_even_with_a_matching_hash(tmp_path, stored):
    path = tmp_path / "model.joblib"
    path.write_bytes(trailed(dump(stored)))
    pin = sha256_file(path)
    assert refusal(path, pin) == f"{path}: not a heart-model/2 artifact (retrain with `python train.py`)"


@pytest.mark.parametrize(
    "card, reason",
    [
        (None, "'card'"),  # KeyError: no card at all
        ({"model_version": "1"}, "the JSON object must be str, bytes or bytearray, not dict"),
        ("{not json", "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
        ("", "Expecting value: line 1 column 1 (char 0)"),
    ],
    ids=["missing", "not-a-string", "garbled", "empty"],
)
def test_an_embedded_card_that_is_not_json_is_refused(tmp_path, card, reason):
    path = tmp_path / "model.joblib"
    stored = content(card=card) if card is not None else {k: v for k, v in content().items() if k != "card"}
    path.write_bytes(trailed(dump(stored)))
    assert refusal(path) == f"{path}: the model card inside it is not valid JSON ({reason})"


@pytest.mark.parametrize(
    "card",
    ["[]", '["model_version"]', "{}", '{"model_version": 5}', '{"model_version": ""}', '{"model_version": null}'],
)
def test_an_embedded_card_needs_a_non_empty_string_model_version(tmp_path, card):
    path = tmp_path / "model.joblib"
    path.write_bytes(trailed(dump(content(card=card))))
    assert refusal(path) == (f"{path}: the model card inside it has no model_version (retrain with `python train.py`)")


@pytest.mark.parametrize(
    "pipeline, columns",
    [
        (None, []),  # no pipeline at all
        (SimpleNamespace(), []),  # an object without feature names
        (SimpleNamespace(feature_names_in_=list(FEATURE_NAMES)[::-1]), list(FEATURE_NAMES)[::-1]),
        (SimpleNamespace(feature_names_in_=list(FEATURE_NAMES)[:-1]), list(FEATURE_NAMES)[:-1]),
    ],
    ids=["missing", "unnamed", "reordered", "one-short"],
)
def test_a_pipeline_for_other_columns_is_refused_naming_both(tmp_path, pipeline, columns):
    path = tmp_path / "model.joblib"
    stored = content(pipeline=pipeline) if pipeline is not None else content(pipeline=None)
    path.write_bytes(trailed(dump(stored)))
    assert refusal(path) == (f"{path}: the model expects columns {columns}, not this schema's {list(FEATURE_NAMES)}")


def _stale_warnings(caplog):
    return [r for r in caplog.records if r.name == "heart.artifact" and r.getMessage() == "model_card_copy_stale"]


def test_a_card_copy_describing_another_file_is_warned_about(small_model, caplog):
    caplog.set_level(logging.WARNING, logger="heart.artifact")
    load_model(small_model)
    assert _stale_warnings(caplog) == [], "the copy written with the model describes it"
    copy = json.loads(card_path_for(small_model).read_text())
    copy["artifact"]["sha256"] = "0" * 64
    card_path_for(small_model).write_text(json.dumps(copy))
    load_model(small_model)
    [record] = _stale_warnings(caplog)
    assert record.levelno == logging.WARNING
    assert (record.model_path, record.card, record.card_sha256, record.file_sha256) == (
        str(small_model),
        str(card_path_for(small_model)),
        "0" * 64,
        sha256_file(small_model),
    )


@pytest.mark.parametrize(
    "copy",
    [None, "{not json", "[1]", "{}", '{"artifact": {}}', '{"artifact": {"sha256": ""}}', '{"artifact": []}'],
)
def test_a_card_copy_that_names_no_sha256_is_not_called_stale(small_model, caplog, copy):
    caplog.set_level(logging.WARNING, logger="heart.artifact")
    if copy is None:
        card_path_for(small_model).unlink()
    else:
        card_path_for(small_model).write_text(copy)
    assert load_model(small_model).card["note"] == "small"
    assert _stale_warnings(caplog) == []


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
