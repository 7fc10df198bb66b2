"""The trained Pipeline -> the model artifact (heart.artifact, heart-model/3): what serving reads,
written as one archive (pack, write_artifact: atomic, then the card's copy beside it).

At training time, once: the Pipeline is converted to one ONNX graph (skl2onnx), run by ONNX
Runtime on the reference rows and compared with the Pipeline's own probabilities for them; only
a graph that matches within heart.fast.PARITY_TOLERANCE is written. The reference rows are the
ones the server checked its fast path on before it stopped unpickling the Pipeline: the training
data's rows, then REFERENCE_SAMPLES seeded uniform schema samples in which each optional
feature is missing with probability MISSING_RATE, so imputation is checked too. Every start
runs the graph on them again and compares with the probabilities stored here.

This module imports scikit-learn, skl2onnx and joblib: training and the image's build stage
only, never the server (docs/deploy.md).
"""

from __future__ import annotations

import copy
import io
import json
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import __version__
from .artifact import (
    FORMAT,
    MEMBERS,
    TRAILER_LEN,
    TRAILER_MAGIC,
    ModelError,
    card_path_for,
    described,
    sha256_bytes,
)
from .decision import threshold_of
from .fast import PARITY_TOLERANCE, OnnxPredictor, SklearnPredictor, check_parity
from .files import atomic_write
from .schema import FEATURE_NAMES, FEATURES

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.pipeline import Pipeline

REFERENCE_SAMPLES = 2000
REFERENCE_SEED = 0
MISSING_RATE = 0.2


def save_model(pipeline: Pipeline, card: dict, path, data: pd.DataFrame | None = None) -> dict:
    """Write the Pipeline, its ONNX graph, the reference and the card as one archive; return the card as served.

    `data`: the training data's features, whose rows lead the reference (live drift's reference
    too). model_version comes from the Pipeline's bytes alone, so the same data and seeds give the
    same version whatever the card says (its creation time differs on every run).
    """
    pipeline_bytes = _dumps(pipeline)
    onnx = to_onnx(pipeline)
    X = parity_rows(REFERENCE_SAMPLES, seed=REFERENCE_SEED, missing_rate=MISSING_RATE, data=data)
    proba = SklearnPredictor(pipeline).predict_proba(X)
    classes = np.asarray(pipeline.classes_).astype(np.int64)
    threshold = threshold_of(card)
    parity = check_parity(OnnxPredictor(onnx, list(classes).index(1), threshold), X, proba, threshold)
    if not parity.ok:
        raise ModelError(f"the ONNX conversion of this Pipeline is not written: {parity.failure()}")
    data_rows = 0 if data is None else len(data)
    pipeline_digest = sha256_bytes(pipeline_bytes)
    card = {
        **card,
        "model_version": f"{__version__}-{pipeline_digest[:12]}",
        "artifact": {
            "format": FORMAT,
            "members": list(MEMBERS),
            "features": list(FEATURE_NAMES),
            "pipeline_sha256": pipeline_digest,
            "onnx_sha256": sha256_bytes(onnx),
            "reference": {
                "rows": len(X),
                "data_rows": data_rows,
                "samples": REFERENCE_SAMPLES,
                "seed": REFERENCE_SEED,
                "missing_rate": MISSING_RATE,
                "onnx_max_abs_diff": parity.max_abs_diff,
                "tolerance": PARITY_TOLERANCE,
            },
        },
    }
    buf = io.BytesIO()
    np.savez(buf, X=X, proba=proba, classes=classes, data_rows=np.int64(data_rows))
    members = {"model.onnx": onnx, "reference.npz": buf.getvalue(), "pipeline.joblib": pipeline_bytes}
    return write_artifact(path, card, members)


def pack(card: dict, members: dict[str, bytes]) -> bytes:
    """The archive's bytes: card.json from `card`, the other members as given, then the trailer.

    Fixed timestamps and modes, so the same members always give the same bytes (and sha256).
    """
    contents = {"card.json": json.dumps(card, indent=2, allow_nan=False).encode(), **members}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in MEMBERS:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, contents[name], compresslevel=6)
        zf.comment = b"\0" * TRAILER_LEN  # the trailer's place: its length is all that precedes it
    body = buf.getvalue()[:-TRAILER_LEN]
    return body + TRAILER_MAGIC + sha256_bytes(body).encode() + b"\n"


def write_artifact(path: str | Path, card: dict, members: dict[str, bytes]) -> dict:
    """Write the archive (atomically), then the card beside it; return the card as served."""
    path = Path(path)
    blob = pack(card, members)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, blob)  # the one switch: from here on the new archive is what loads
    card = described(card, path, blob)
    # A crash before this line leaves a stale copy for people, never a model with the wrong card.
    atomic_write(card_path_for(path), (json.dumps(card, indent=2, allow_nan=False) + "\n").encode())
    return card


def _dumps(obj) -> bytes:
    import joblib

    buf = io.BytesIO()
    joblib.dump(obj, buf)
    return buf.getvalue()


def to_onnx(pipeline: Pipeline) -> bytes:
    """The Pipeline as one serialized ONNX graph (skl2onnx: about a second, most of it imports)."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    graph = _positional(pipeline)
    forest = graph.steps[-1][1]
    onx = convert_sklearn(
        graph,
        name="heart_disease_pipeline",  # skl2onnx names it by a random uuid otherwise: the same model, other bytes
        initial_types=[("X", FloatTensorType([None, len(FEATURE_NAMES)]))],
        options={id(forest): {"zipmap": False}},
    )
    return onx.SerializeToString()


def _positional(pipeline: Pipeline) -> Pipeline:
    """A copy of the fitted Pipeline whose ColumnTransformers select columns by position, not name.

    skl2onnx then builds a graph with one (n, 13) input instead of 13 one-column inputs, which
    halves the per-call overhead of ONNX Runtime. The fitted parameters are untouched; the
    parity check compares the result with the original Pipeline anyway.
    """
    from sklearn.compose import ColumnTransformer

    graph = copy.deepcopy(pipeline)
    index = {name: i for i, name in enumerate(FEATURE_NAMES)}

    def positions(columns):
        return [index[c] for c in columns] if not isinstance(columns, str) else columns

    for _, step in graph.steps:
        if isinstance(step, ColumnTransformer):
            step.transformers = [(n, t, positions(c)) for n, t, c in step.transformers]
            step.transformers_ = [(n, t, c if n == "remainder" else positions(c)) for n, t, c in step.transformers_]
            if hasattr(step, "feature_names_in_"):
                del step.feature_names_in_
    return graph


def parity_rows(
    n_samples: int, seed: int = 0, missing_rate: float = MISSING_RATE, data: pd.DataFrame | None = None
) -> np.ndarray:
    """Rows to compare on: `data` (if given) plus n seeded uniform schema samples in which each
    optional feature is missing (NaN) with probability `missing_rate`, so imputation is checked."""
    from .samples import sample

    frame = sample(n_samples, seed=seed, mode="uniform")
    rng = np.random.default_rng(seed + 1)
    for f in FEATURES:
        if not f.required:
            frame.loc[rng.random(n_samples) < missing_rate, f.name] = np.nan
    parts = [frame[list(FEATURE_NAMES)].to_numpy(dtype=float)]
    if data is not None:
        parts.insert(0, data[list(FEATURE_NAMES)].to_numpy(dtype=float))
    return np.vstack(parts)
