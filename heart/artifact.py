"""The model artifact on disk: one self-contained file, hashes, atomic writes, verified load.

model.joblib holds the model card and the sklearn Pipeline together (a joblib dump of
{"format", "card", "pipeline"}) followed by a one-line checksum trailer, so model and card
are replaced as a pair by one atomic rename, and the bytes any pin covers include the card.
model.card.json beside it is a copy for people and tools (make run, the HTML report); loading
never trusts it.

Two checks happen before anything is unpickled (a joblib file is a pickle, and unpickling a
tampered one runs its code):
- the pin: the sha256 of the whole file, given by whoever deploys it (MODEL_SHA256, or the
  file the image bakes at build), never read from the artifact itself. This is the check that
  stops an attacker who can write the model; see docs/security.md.
- the trailer: the sha256 of the rest of the file, written with it. It catches a damaged,
  cut or edited file, not an attacker (who can rewrite the trailer too).
What goes into the card (training results) is heart.model.build_card's business.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .schema import FEATURE_NAMES

# heart.data and heart.analyses.report hash and write files through this module, so it imports neither
# sklearn nor joblib (0.19 s after pandas) until a model is saved or loaded.
if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

log = logging.getLogger(__name__)
FORMAT = "heart-model/2"
TRAILER_MAGIC = b"\n#heart-model sha256="
TRAILER_LEN = len(TRAILER_MAGIC) + 64 + 1
SHA256_RE = re.compile(r"[0-9a-f]{64}")


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


def parse_sha256(text: str, where: str) -> str:
    """A pin as people write it: 64 hex digits, any case, optionally `sha256sum` output ("<hex>  file")."""
    words = text.strip().split()
    digest = words[0].lower().removeprefix("sha256:") if words else ""
    if not SHA256_RE.fullmatch(digest):
        raise ModelError(
            f"{where} must be a sha256 (64 hex digits, as `sha256sum model.joblib` prints), got {text.strip()[:80]!r}"
        )
    return digest


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


def _dumps(obj) -> bytes:
    import joblib

    buf = io.BytesIO()
    joblib.dump(obj, buf)
    return buf.getvalue()


def save_model(pipeline: Pipeline, card: dict, path: str | Path) -> dict:
    """Write model + card as one file (atomically), then the card beside it; return the final card.

    model_version comes from the Pipeline's bytes alone, so the same data and seeds give the
    same version whatever the card says (its creation time differs on every run).
    """
    path = Path(path)
    pipeline_digest = sha256_bytes(_dumps(pipeline))
    card = {
        **card,
        "model_version": f"{__version__}-{pipeline_digest[:12]}",
        "artifact": {"format": FORMAT, "pipeline_sha256": pipeline_digest},
    }
    payload = _dumps({"format": FORMAT, "card": json.dumps(card, allow_nan=False), "pipeline": pipeline})
    blob = payload + TRAILER_MAGIC + sha256_bytes(payload).encode() + b"\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, blob)  # the one switch: from here on the new pair is what loads
    card = _described(card, path, blob)
    # A crash before this line leaves a stale copy for people, never a model with the wrong card.
    atomic_write(card_path_for(path), (json.dumps(card, indent=2, allow_nan=False) + "\n").encode())
    return card


def _described(card: dict, path: Path, blob: bytes) -> dict:
    """The card as served: the embedded one plus what the file itself is (its name, sha256, size)."""
    return {
        **card,
        "artifact": {**card.get("artifact", {}), "file": path.name, "sha256": sha256_bytes(blob), "bytes": len(blob)},
    }


@dataclass
class LoadedModel:
    pipeline: Pipeline
    card: dict
    path: Path
    pinned: bool = False  # True when the file's sha256 matched a pin given by the deployer

    @property
    def version(self) -> str:
        return self.card["model_version"]

    @property
    def sha256(self) -> str:
        return self.card["artifact"]["sha256"]


def load_model(path: str | Path, expected_sha256: str | None = None) -> LoadedModel:
    """Check the pin (if given) and the trailer, then unpickle; ModelError otherwise.

    Without a pin nothing stops a deliberately rewritten file: callers that serve a model
    say so (heart.serving.state); the analysis scripts load the user's own model.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found (run `python train.py` to create it)")
    try:
        blob = path.read_bytes()
    except OSError as e:
        raise ModelError(f"{path}: cannot be read ({e.strerror or e})") from None
    digest = sha256_bytes(blob)
    if expected_sha256 is not None and digest != expected_sha256:
        raise ModelError(
            f"{path}: sha256 {digest} does not match the pinned {expected_sha256}: refusing to load "
            "it (a joblib file is a pickle, and unpickling a tampered one runs its code); if this "
            "is the model you mean to serve, pin its sha256 (MODEL_SHA256)"
        )
    payload = _checked_payload(path, blob)
    pipeline, card = _unpickle(path, payload)
    _warn_if_stale_copy(path, digest)
    return LoadedModel(
        pipeline=pipeline, card=_described(card, path, blob), path=path, pinned=expected_sha256 is not None
    )


def _checked_payload(path: Path, blob: bytes) -> bytes:
    payload, trailer = blob[:-TRAILER_LEN], blob[-TRAILER_LEN:]
    if not trailer.startswith(TRAILER_MAGIC) or not trailer.endswith(b"\n"):
        raise ModelError(
            f"{path}: the file does not match the checksum written at its end (it was changed or "
            "cut after it was written, or predates this format: retrain with `python train.py`); "
            "refusing to load it"
        )
    written = trailer[len(TRAILER_MAGIC) : -1].decode("ascii", "replace")
    actual = sha256_bytes(payload)
    if actual != written:
        raise ModelError(
            f"{path}: sha256 {actual[:16]}... does not match {written[:16]}... written at its end: "
            "the file changed after training; refusing to load it"
        )
    return payload


def _unpickle(path: Path, payload: bytes):
    """The verified payload -> (Pipeline, embedded card), each checked for what serving relies on."""
    import joblib

    try:
        content = joblib.load(io.BytesIO(payload))
    except Exception as e:  # noqa: BLE001 - a checked file that still fails: libraries or damage
        raise ModelError(
            f"{path}: checksum verified but could not be loaded ({type(e).__name__}: {e}); {_version_hint(path)}"
        ) from None
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        raise ModelError(f"{path}: not a {FORMAT} artifact (retrain with `python train.py`)")
    try:
        card = json.loads(content["card"])
    except (KeyError, TypeError, ValueError) as e:
        raise ModelError(f"{path}: the model card inside it is not valid JSON ({e})") from None
    if not isinstance(card, dict) or not isinstance(card.get("model_version"), str) or not card["model_version"]:
        raise ModelError(f"{path}: the model card inside it has no model_version (retrain with `python train.py`)")
    pipeline = content.get("pipeline")
    names = list(getattr(pipeline, "feature_names_in_", []))
    if names != list(FEATURE_NAMES):
        raise ModelError(f"{path}: the model expects columns {names}, not this schema's {list(FEATURE_NAMES)}")
    return pipeline, card


def _version_hint(path: Path) -> str:
    """Blame library versions only when the card beside the file says they differ."""
    import sklearn

    try:
        saved = json.loads(card_path_for(path).read_text())["libraries"]["scikit-learn"]
    except (OSError, ValueError, KeyError, TypeError):
        saved = None
    if saved and saved != sklearn.__version__:
        return f"it was saved with scikit-learn {saved}, this is {sklearn.__version__}: retrain, or install {saved}"
    return "the file is damaged or was not written by train.py: retrain with `python train.py`"


def _warn_if_stale_copy(path: Path, digest: str) -> None:
    """The card beside the file is only a copy; say so when it describes another file."""
    try:
        copy = json.loads(card_path_for(path).read_text()).get("artifact", {}).get("sha256")
    except (OSError, ValueError, AttributeError):
        return
    if copy and copy != digest:
        log.warning(
            "model_card_copy_stale",
            extra={
                "model_path": str(path),
                "card": str(card_path_for(path)),
                "card_sha256": copy,
                "file_sha256": digest,
            },
        )
