"""The model artifact on disk: model.joblib, its card beside it, hashes, atomic writes, verified load.

The artifact is the whole sklearn Pipeline as a joblib file. Beside it lies a JSON model card
carrying the artifact's sha256; loading checks that hash *before* unpickling, because a joblib
file is a pickle and loading a tampered one runs its code. What goes into the card (training
results) is heart.model.build_card's business; this module only adds the hash and writes.

The two files are each replaced atomically, model first, then card. A reader that loads in
between sees the new model with the old card's hash and is refused (ModelError), never served
a model under the wrong card; making the pair one switch is left to a later issue.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .schema import FEATURE_NAMES

# heart.data and heart.report hash and write files through this module, so it imports neither
# sklearn nor joblib (0.19 s after pandas) until a model is saved or loaded.
if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

    from .data import Dataset


class ModelError(RuntimeError):
    """A model artifact that cannot be used; str() is the user-facing message."""


def card_path_for(model_path: str | Path) -> Path:
    """model.joblib -> model.card.json, beside it."""
    p = Path(model_path)
    return p.with_name(p.stem + ".card.json")


def sha256_bytes(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def sha256_file(path: str | Path) -> str:
    """Streamed, so a large data file is never held in memory whole."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def atomic_write(path: str | Path, blob: bytes) -> None:
    """Readers see the old file or the new one, never half of one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file ordinary permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_model(pipeline: Pipeline, card: dict, path: str | Path) -> dict:
    """Write model + card, each atomically (temp file, fsync, rename); return the final card."""
    import joblib

    path = Path(path)
    buf = io.BytesIO()
    joblib.dump(pipeline, buf)
    blob = buf.getvalue()
    digest = sha256_bytes(blob)
    card = {**card, "model_version": f"{__version__}-{digest[:12]}",
            "artifact": {"file": path.name, "sha256": digest, "bytes": len(blob)}}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, blob)
    atomic_write(card_path_for(path), (json.dumps(card, indent=2, allow_nan=False) + "\n").encode())
    return card


@dataclass
class LoadedModel:
    pipeline: Pipeline
    card: dict
    path: Path

    @property
    def version(self) -> str:
        return self.card["model_version"]


def load_model(path: str | Path) -> LoadedModel:
    """Verify the artifact's sha256 against its card, then unpickle; ModelError otherwise."""
    path = Path(path)
    card_path = card_path_for(path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found (run `python train.py` to create it)")
    if not card_path.is_file():
        raise ModelError(f"{path}: no model card at {card_path}, so the artifact cannot be verified; "
                         "refusing to load it (retrain with `python train.py`)")
    try:
        card = json.loads(card_path.read_text())
        expected = card["artifact"]["sha256"]
    except (ValueError, KeyError, TypeError) as e:
        raise ModelError(f"{card_path}: not a valid model card ({type(e).__name__}: {e})") from None
    blob = path.read_bytes()
    actual = sha256_bytes(blob)
    if actual != expected:
        raise ModelError(f"{path}: sha256 {actual[:16]}... does not match {expected[:16]}... in "
                         f"{card_path.name}: the file changed after training; refusing to load it "
                         "(a joblib file is a pickle, and unpickling a tampered one runs its code)")
    import joblib

    try:
        pipeline = joblib.load(io.BytesIO(blob))
    except Exception as e:  # a verified file that still fails: incompatible library versions
        import sklearn
        raise ModelError(f"{path}: verified but could not be loaded ({type(e).__name__}: {e}); "
                         f"it was saved with scikit-learn {card.get('libraries', {}).get('scikit-learn')}, "
                         f"this is {sklearn.__version__}") from None
    names = list(getattr(pipeline, "feature_names_in_", []))
    if names != list(FEATURE_NAMES):
        raise ModelError(f"{path}: the model expects columns {names}, not this schema's {list(FEATURE_NAMES)}")
    return LoadedModel(pipeline=pipeline, card=card, path=path)


def check_training_data(card: dict, data: Dataset) -> None:
    """The held-out split is only held out for the file the model was trained on."""
    expected = card.get("data", {}).get("sha256")
    if expected and expected != data.sha256:
        raise ModelError(f"{data.source} is not the file this model was trained on (sha256 "
                         f"{data.sha256[:12]}... vs {expected[:12]}... in the model card): its "
                         "'held-out' rows would include training rows; pass the training data "
                         "with --data, or retrain on this file")
