"""The model artifact on disk: one zip archive whose every byte a pin covers, read rather than executed.

model.zip (format heart-model/3) holds four members, in this order:
  card.json        the model card (UTF-8 JSON): what /model, /ready_check and every answer report
  model.onnx       the whole Pipeline as one ONNX graph: what serves predictions
  reference.npz    the reference rows (X, NaN = missing), the probabilities the Pipeline gave for
                   them at training (proba) and its classes: every start checks the graph against them
  pipeline.joblib  the fitted scikit-learn Pipeline, a pickle: unpickled only by load_pipeline
                   (/explain, INFERENCE_ENGINE=sklearn, the analyses), never to serve /predict
and ends with the archive's comment, the trailer "heart-model/3 sha256=<hex>\\n", the sha256 of
every byte before it (heart.export writes it, atomically). A pin covers all of it; model.card.json
beside it is a copy for people and tools.

Checks, before any member is used:
- the pin: the sha256 of the whole file, given by whoever deploys it (MODEL_SHA256, or the file
  the image bakes at build), never read from the artifact itself. It stops an attacker who can
  write the model; see docs/security.md.
- the trailer: catches a damaged, cut or edited file, not an attacker (who can rewrite it too).
Then the members are parsed as data: JSON, and NumPy arrays with allow_pickle=False. The
Pipeline's pickle is read only by load_pipeline, which reads the file again and refuses it unless
its sha256 is still the one verified at load. This module imports NumPy alone: serving a
prediction never imports scikit-learn, pandas or joblib.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .schema import FEATURE_NAMES

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

log = logging.getLogger(__name__)
FORMAT = "heart-model/3"
DEFAULT_MODEL = "model.zip"
MEMBERS = ("card.json", "model.onnx", "reference.npz", "pipeline.joblib")
TRAILER_MAGIC = FORMAT.encode() + b" sha256="
TRAILER_LEN = len(TRAILER_MAGIC) + 64 + 1
OLD_TRAILER_MAGIC = b"\n#heart-model sha256="  # heart-model/2: model.joblib, a pickle with a trailer line
REFERENCE_ARRAYS = ("X", "proba", "classes", "data_rows")
MAX_MEMBER_BYTES = 256 * 2**20  # a member inflating past this is refused before it is read (zip bombs)
SHA256_RE = re.compile(r"[0-9a-f]{64}")
RETRAIN = "retrain with `python train.py`"


class ModelError(RuntimeError):
    """A model artifact that cannot be used; str() is the user-facing message."""


def card_path_for(model_path: str | Path) -> Path:
    """model.zip -> model.card.json, beside it."""
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
            f"{where} must be a sha256 (64 hex digits, as `sha256sum {DEFAULT_MODEL}` prints), got {text.strip()[:80]!r}"
        )
    return digest


def described(card: dict, path: Path, blob: bytes) -> dict:
    """The card as served: the embedded one plus what the file itself is (its name, sha256, size)."""
    return {
        **card,
        "artifact": {**card.get("artifact", {}), "file": path.name, "sha256": sha256_bytes(blob), "bytes": len(blob)},
    }


# ------------------------------------------------------------------------------------ reading


@dataclass(frozen=True)
class Reference:
    """Rows and the Pipeline's P(disease) for them at training; the first data_rows are its training data."""

    X: np.ndarray  # (n, 13) floats, NaN = missing
    proba: np.ndarray  # (n,)
    classes: tuple[int, ...]  # the Pipeline's classes_, the order of the graph's probability columns
    data_rows: int

    @property
    def positive(self) -> int:
        """The column of P(heart disease) in the graph's output."""
        return self.classes.index(1)

    @property
    def data(self) -> np.ndarray:
        """The training data's rows (live drift's reference)."""
        return self.X[: self.data_rows]


@dataclass
class ModelArtifact:
    """What serving needs, read and checked, nothing unpickled."""

    path: Path
    card: dict  # as served: the embedded card plus the file's name, sha256 and size
    onnx: bytes
    reference: Reference
    pinned: bool = False  # True when the file's sha256 matched a pin given by the deployer

    @property
    def version(self) -> str:
        return self.card["model_version"]

    @property
    def sha256(self) -> str:
        return self.card["artifact"]["sha256"]


@dataclass
class LoadedModel:
    """An artifact with its Pipeline unpickled: what the analyses work on."""

    pipeline: Pipeline
    card: dict
    path: Path
    pinned: bool = False

    @property
    def version(self) -> str:
        return self.card["model_version"]

    @property
    def sha256(self) -> str:
        return self.card["artifact"]["sha256"]


def read_artifact(path: str | Path, expected_sha256: str | None = None) -> ModelArtifact:
    """Check the pin (if given) and the trailer, then read the card, the graph and the reference; ModelError otherwise.

    Without a pin nothing stops a deliberately rewritten file: callers that serve a model say so
    (heart.serving.state). Nothing here runs code from the file: the graph is only handed over.
    """
    path = Path(path)
    blob = _verified_blob(path, expected_sha256)
    with _archive(path, blob) as zf:
        card = _card(path, zf)
        reference = _reference(path, zf)
        onnx = _member(path, zf, "model.onnx")
    _warn_if_stale_copy(path, sha256_bytes(blob))
    return ModelArtifact(
        path=path,
        card=described(card, path, blob),
        onnx=onnx,
        reference=reference,
        pinned=expected_sha256 is not None,
    )


def load_pipeline(model: ModelArtifact) -> Pipeline:
    """The artifact's Pipeline, unpickled only if the file is still the one `model` verified.

    The file is read again: one replaced since (another model mounted, a tampered member) is
    refused before its pickle is touched, pinned or not.
    """
    blob = _read(model.path)
    digest = sha256_bytes(blob)
    if digest != model.sha256:
        raise ModelError(
            f"{model.path}: sha256 {digest} is no longer the {model.sha256} verified when the model was "
            "loaded (the file was replaced since): refusing to unpickle its Pipeline; restart to load the new file"
        )
    with _archive(model.path, blob) as zf:
        raw = _member(model.path, zf, "pipeline.joblib")
    expected = model.card["artifact"].get("pipeline_sha256")
    if expected and sha256_bytes(raw) != expected:
        raise ModelError(f"{model.path}: pipeline.joblib does not match the pipeline_sha256 in its card; {RETRAIN}")
    return _unpickle(model.path, raw)


def load_model(path: str | Path, expected_sha256: str | None = None) -> LoadedModel:
    """read_artifact, then the Pipeline: for the analyses, which run as you, on your own files."""
    model = read_artifact(path, expected_sha256)
    return LoadedModel(pipeline=load_pipeline(model), card=model.card, path=model.path, pinned=model.pinned)


def check_model_file(path: Path) -> None:
    """A ModelError saying why `path` cannot be a model file: missing, a directory, or not a
    regular file (a device such as /dev/zero would be read forever)."""
    if path.is_file():
        return
    if path.is_dir():
        raise ModelError(f"{path}: a directory, not a model file: give the path of the model.zip train.py writes")
    if path.exists():
        raise ModelError(f"{path}: not a regular file (a device, a FIFO or a socket): give a model.zip")
    old, hint = path.with_name("model.joblib"), ""
    if path.name == DEFAULT_MODEL and old.is_file():
        hint = f"; {old} beside it is the old format (heart-model/2), which this version no longer serves"
    raise ModelError(f"{path}: model file not found (run `python train.py` to create it){hint}")


def _read(path: Path) -> bytes:
    check_model_file(path)
    try:
        return path.read_bytes()
    except OSError as e:
        raise ModelError(f"{path}: cannot be read ({e.strerror or e})") from None


def _verified_blob(path: Path, expected_sha256: str | None) -> bytes:
    """The file's bytes, once they match the pin (if any) and their own trailer."""
    blob = _read(path)
    digest = sha256_bytes(blob)
    if expected_sha256 is not None and digest != expected_sha256:
        raise ModelError(
            f"{path}: sha256 {digest} does not match the pinned {expected_sha256}: refusing to load it "
            "(its Pipeline is a pickle, and unpickling a tampered one runs its code); if this is the model you "
            "mean to serve, pin its sha256 (MODEL_SHA256)"
        )
    body, trailer = blob[:-TRAILER_LEN], blob[-TRAILER_LEN:]
    if trailer.startswith(OLD_TRAILER_MAGIC):
        raise ModelError(
            f"{path}: a heart-model/2 file (model.joblib, a pickle), which this version no longer serves: "
            f"{RETRAIN}, which writes {FORMAT} ({DEFAULT_MODEL})"
        )
    if not trailer.startswith(TRAILER_MAGIC) or not trailer.endswith(b"\n"):
        raise ModelError(
            f"{path}: the file does not match the {FORMAT} checksum written at its end (it was cut or changed "
            f"after it was written, or is not a model archive: {RETRAIN}); refusing to load it"
        )
    written = trailer[len(TRAILER_MAGIC) : -1].decode("ascii", "replace")
    actual = sha256_bytes(body)
    if actual != written:
        raise ModelError(
            f"{path}: sha256 {actual[:16]}... does not match {written[:16]}... written at its end: "
            "the file changed after training; refusing to load it"
        )
    return blob


def _archive(path: Path, blob: bytes) -> zipfile.ZipFile:
    """The verified bytes as a zip holding exactly MEMBERS, none too large to inflate."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(blob))
    except zipfile.BadZipFile as e:
        raise ModelError(f"{path}: not a readable zip archive ({e}); {RETRAIN}") from None
    names = zf.namelist()
    missing = [m for m in MEMBERS if m not in names]
    unexpected = sorted({n for n in names if n not in MEMBERS or names.count(n) > 1})
    if missing or unexpected:
        zf.close()
        what = "; ".join(
            ([f"missing member {', '.join(missing)}"] if missing else [])
            + ([f"unexpected member {', '.join(unexpected)}"] if unexpected else [])
        )
        raise ModelError(f"{path}: {what} ({FORMAT} holds exactly {', '.join(MEMBERS)}); refusing to load it")
    for info in zf.infolist():
        if info.file_size > MAX_MEMBER_BYTES:
            zf.close()
            raise ModelError(f"{path}: {info.filename} inflates to {info.file_size:,} bytes, over the limit")
    return zf


def _member(path: Path, zf: zipfile.ZipFile, name: str) -> bytes:
    try:
        return zf.read(name)  # checks the member's CRC-32
    except Exception as e:  # noqa: BLE001 - BadZipFile, zlib.error, EOFError: the member is damaged
        raise ModelError(
            f"{path}: {name} cannot be read from the archive ({type(e).__name__}: {e}); {RETRAIN}"
        ) from None


def _card(path: Path, zf: zipfile.ZipFile) -> dict:
    try:
        card = json.loads(_member(path, zf, "card.json"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelError(f"{path}: the model card inside it is not valid JSON ({e})") from None
    if not isinstance(card, dict) or not isinstance(card.get("model_version"), str) or not card["model_version"]:
        raise ModelError(f"{path}: the model card inside it has no model_version ({RETRAIN})")
    artifact = card.get("artifact")
    if not isinstance(artifact, dict) or artifact.get("format") != FORMAT:
        raise ModelError(f"{path}: the model card inside it does not say {FORMAT} ({RETRAIN})")
    features = artifact.get("features")
    if features != list(FEATURE_NAMES):
        raise ModelError(f"{path}: the model expects columns {features}, not this schema's {list(FEATURE_NAMES)}")
    return card


def _reference(path: Path, zf: zipfile.ZipFile) -> Reference:
    """reference.npz as plain arrays (allow_pickle=False), checked for shape and range."""
    where = f"{path}: reference.npz"
    try:
        with np.load(io.BytesIO(_member(path, zf, "reference.npz")), allow_pickle=False) as npz:
            missing = [k for k in REFERENCE_ARRAYS if k not in npz.files]
            if missing:
                raise ModelError(
                    f"{where} lacks {', '.join(missing)} (it holds {', '.join(REFERENCE_ARRAYS)}); {RETRAIN}"
                )
            X, proba, classes, data_rows = (np.asarray(npz[k]) for k in REFERENCE_ARRAYS)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise ModelError(f"{where} cannot be read as NumPy arrays without pickle ({e}); {RETRAIN}") from None
    n = len(X) if X.ndim == 2 else -1
    if X.dtype.kind != "f" or n < 1 or X.shape[1] != len(FEATURE_NAMES):
        raise ModelError(f"{where}: X must be a float array of (rows, {len(FEATURE_NAMES)}), got {X.dtype} {X.shape}")
    if proba.dtype.kind != "f" or proba.shape != (n,) or not (np.isfinite(proba).all() and (proba >= 0).all()):
        raise ModelError(f"{where}: proba must be {n} probabilities, got {proba.dtype} {proba.shape}")
    if proba.max() > 1 or classes.dtype.kind not in "iu" or classes.ndim != 1 or 1 not in classes.tolist():
        raise ModelError(f"{where}: probabilities over 1, or classes {classes.tolist()} without class 1")
    if data_rows.dtype.kind not in "iu" or data_rows.shape != () or not 0 <= int(data_rows) <= n:
        raise ModelError(f"{where}: data_rows must be a whole number from 0 to {n}, got {data_rows.tolist()}")
    return Reference(
        X=X.astype(float), proba=proba.astype(float), classes=tuple(classes.tolist()), data_rows=int(data_rows)
    )


def _unpickle(path: Path, raw: bytes) -> Pipeline:
    """pipeline.joblib -> the Pipeline, checked for the columns serving relies on."""
    import joblib

    try:
        pipeline = joblib.load(io.BytesIO(raw))
    except Exception as e:  # noqa: BLE001 - a checked file that still fails: libraries or damage
        raise ModelError(
            f"{path}: checksum verified but its Pipeline could not be loaded ({type(e).__name__}: {e}); "
            f"{_version_hint(path)}"
        ) from None
    names = list(getattr(pipeline, "feature_names_in_", []))
    if names != list(FEATURE_NAMES):
        raise ModelError(f"{path}: the Pipeline expects columns {names}, not this schema's {list(FEATURE_NAMES)}")
    return pipeline


def _version_hint(path: Path) -> str:
    """Blame library versions only when the card beside the file says they differ."""
    import sklearn

    try:
        saved = json.loads(card_path_for(path).read_text())["libraries"]["scikit-learn"]
    except (OSError, ValueError, KeyError, TypeError):
        saved = None
    if saved and saved != sklearn.__version__:
        return f"it was saved with scikit-learn {saved}, this is {sklearn.__version__}: retrain, or install {saved}"
    return f"the file is damaged or was not written by train.py: {RETRAIN}"


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
