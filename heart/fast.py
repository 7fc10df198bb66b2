"""The serving fast path: the fitted Pipeline converted to ONNX, trusted only after a parity check.

sklearn's forest costs milliseconds per single-row call (Python overhead per tree and per
pandas column); the same Pipeline run by ONNX Runtime costs microseconds. The sklearn
Pipeline stays the source of truth (SHAP and every analysis use it): the ONNX graph is
derived from it with skl2onnx at load time, and it serves only if it gives the same
predicted class and probabilities within PARITY_TOLERANCE on the data rows and on seeded
schema samples (with missing values). Otherwise serving falls back to sklearn and says why.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from .decision import DEFAULT_THRESHOLD, decide
from .samples import sample
from .schema import FEATURE_NAMES, FEATURES

# ONNX Runtime sums the forest in float32 (~3e-7 error); the calibration's sigmoid multiplies
# that by its slope (|a|/4, about 2.8 for the shipped model): 1e-6 measured, 1e-5 allowed.
PARITY_TOLERANCE = 1e-5
log = logging.getLogger(__name__)


class SklearnPredictor:
    """The reference path: the Pipeline itself (needs a DataFrame with the schema's columns)."""

    engine = "sklearn"
    inline = False  # milliseconds per call: run it in a worker thread, not on the event loop

    def __init__(self, pipeline: Pipeline, threshold: float = DEFAULT_THRESHOLD):
        self.pipeline = pipeline
        self.positive = list(pipeline.classes_).index(1)
        self.threshold = threshold

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(n, 13) floats, NaN = missing -> P(heart disease)."""
        frame = pd.DataFrame(np.asarray(X, dtype=float), columns=list(FEATURE_NAMES))
        return self.pipeline.predict_proba(frame)[:, self.positive].astype(float)

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(predicted classes by heart.decision.decide, P(heart disease))."""
        proba = self.predict_proba(X)
        return decide(proba, self.threshold), proba


class OnnxPredictor:
    """The whole Pipeline (imputers, one-hot, forest) as one ONNX graph over one (n, 13) float input."""

    engine = "onnxruntime"
    inline = True  # tens of microseconds: cheaper to run on the event loop than to hop threads

    def __init__(self, pipeline: Pipeline, threshold: float = DEFAULT_THRESHOLD, onnx_bytes: bytes | None = None):
        """onnx_bytes: the graph to_onnx(pipeline) gave earlier (heart.serving.onnx_cache), else converted now."""
        import onnxruntime as ort

        onnx_bytes = to_onnx(pipeline) if onnx_bytes is None else onnx_bytes
        options = ort.SessionOptions()
        # One thread: a request is one row; intra-op threads only add hand-off latency and
        # fight uvicorn workers for the cores.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        self.session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
        outputs = [o.name for o in self.session.get_outputs()]
        self.outputs = ["probabilities" if "probabilities" in outputs else outputs[-1]]
        self.positive = list(pipeline.classes_).index(1)
        self.threshold = threshold
        self.onnx_bytes = len(onnx_bytes)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        proba = self.session.run(self.outputs, {"X": np.asarray(X, dtype=np.float32)})[0]
        return proba[:, self.positive].astype(float)

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(predicted classes by heart.decision.decide, P(heart disease)): not the graph's argmax."""
        proba = self.predict_proba(X)
        return decide(proba, self.threshold), proba


def to_onnx(pipeline: Pipeline) -> bytes:
    """The Pipeline as one serialized ONNX graph (skl2onnx: about a second, most of it imports)."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    graph = _positional(pipeline)
    forest = graph.steps[-1][1]
    onx = convert_sklearn(
        graph,
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


@dataclass
class Parity:
    """How the fast path compared with the Pipeline on `rows` rows."""

    engine: str
    rows: int
    class_mismatches: int
    max_abs_diff: float
    tolerance: float = PARITY_TOLERANCE
    seconds: float = 0.0
    reason: str = ""
    fallback: bool = False

    @property
    def ok(self) -> bool:
        return self.class_mismatches == 0 and self.max_abs_diff <= self.tolerance and not self.reason

    def as_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def parity_rows(
    n_samples: int, seed: int = 0, missing_rate: float = 0.2, data: pd.DataFrame | None = None
) -> np.ndarray:
    """Rows to compare on: `data` (if given) plus n seeded uniform schema samples in which each
    optional feature is missing (NaN) with probability `missing_rate`, so imputation is checked."""
    frame = sample(n_samples, seed=seed, mode="uniform")
    rng = np.random.default_rng(seed + 1)
    for f in FEATURES:
        if not f.required:
            frame.loc[rng.random(n_samples) < missing_rate, f.name] = np.nan
    parts = [frame[list(FEATURE_NAMES)].to_numpy(dtype=float)]
    if data is not None:
        parts.insert(0, data[list(FEATURE_NAMES)].to_numpy(dtype=float))
    return np.vstack(parts)


def check_parity(reference: SklearnPredictor, candidate, X: np.ndarray) -> Parity:
    """Predict X both ways; count class mismatches and the largest probability difference."""
    t0 = time.perf_counter()
    ref_class, ref_p = reference.predict(X)
    got_class, got_p = candidate.predict(X)
    diff = np.abs(ref_p - got_p)
    return Parity(
        engine=candidate.engine,
        rows=len(X),
        class_mismatches=int((ref_class != got_class).sum()),
        max_abs_diff=float(diff.max()) if len(diff) else 0.0,
        seconds=round(time.perf_counter() - t0, 4),
    )


def build_predictor(
    pipeline: Pipeline,
    check_rows: np.ndarray,
    engine: str = "onnx",
    threshold: float = DEFAULT_THRESHOLD,
    onnx_bytes: bytes | None = None,
):
    """The fastest predictor that matches the Pipeline on check_rows, and the parity evidence.

    engine="sklearn" skips the conversion. A conversion error or a parity failure is logged
    and falls back to the Pipeline itself, which is always correct, only slower. Both decide
    the class with heart.decision.decide at `threshold` (the model card's).
    """
    reference = SklearnPredictor(pipeline, threshold)
    if engine == "sklearn":
        return reference, Parity("sklearn", 0, 0, 0.0, reason="fast path disabled by configuration", fallback=True)
    if engine != "onnx":
        raise ValueError(f"unknown inference engine {engine!r}: choose onnx or sklearn")
    try:
        candidate = OnnxPredictor(pipeline, threshold, onnx_bytes)
        parity = check_parity(reference, candidate, check_rows)
    except Exception as e:  # an unsupported Pipeline step, an ONNX Runtime error: serve sklearn
        parity = Parity(
            "onnxruntime", 0, 0, float("nan"), reason=f"conversion failed: {type(e).__name__}: {e}", fallback=True
        )
        log.warning("fast_path_fallback", extra={"reason": parity.reason, "engine": "sklearn"})
        return reference, parity
    if not parity.ok:
        parity.fallback = True
        parity.reason = (
            f"parity check failed on {parity.rows} rows: {parity.class_mismatches} class mismatches, "
            f"max |dp| {parity.max_abs_diff:.2e} (tolerance {PARITY_TOLERANCE:.0e})"
        )
        log.warning("fast_path_fallback", extra={"reason": parity.reason, "engine": "sklearn"})
        return reference, parity
    log.info(
        "fast_path_ready",
        extra={
            "engine": candidate.engine,
            "parity_rows": parity.rows,
            "max_abs_diff": parity.max_abs_diff,
            "seconds": parity.seconds,
        },
    )
    return candidate, parity
