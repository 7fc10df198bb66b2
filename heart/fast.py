"""Serving predictions: the model's ONNX graph, trusted only once it reproduces the Pipeline's own answers.

sklearn's forest costs milliseconds per single-row call (Python overhead per tree and per
pandas column); the same Pipeline run by ONNX Runtime costs microseconds. The graph is made from
the Pipeline at training (heart.export) and stored in the artifact with reference rows and the
probabilities the Pipeline gave for them. At every start the graph runs on those rows and serves
only if it gives the same class and the same probabilities within PARITY_TOLERANCE; otherwise the
model is refused with the reason. This needs ONNX Runtime and NumPy alone: the Pipeline (a pickle,
and scikit-learn, SciPy and pandas with it) is loaded only for INFERENCE_ENGINE=sklearn.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from .artifact import ModelArtifact, ModelError
from .decision import DEFAULT_THRESHOLD, decide, threshold_of
from .schema import FEATURE_NAMES

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

# ONNX Runtime sums the forest in float32 (~3e-7 error); the calibration's sigmoid multiplies
# that by its slope (|a|/4, about 2.8 for the shipped model): 1e-6 measured, 1e-5 allowed.
PARITY_TOLERANCE = 1e-5
ENGINES = ("onnx", "sklearn")
log = logging.getLogger(__name__)


class OnnxPredictor:
    """The whole Pipeline (imputers, one-hot, forest) as one ONNX graph over one (n, 13) float input."""

    engine = "onnxruntime"
    inline = True  # tens of microseconds: cheaper to run on the event loop than to hop threads

    def __init__(self, onnx_bytes: bytes, positive: int = 1, threshold: float = DEFAULT_THRESHOLD):
        """positive: the column of P(heart disease) in the graph's probabilities (the index of class 1)."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        # One thread: a request is one row; intra-op threads only add hand-off latency and
        # fight uvicorn workers for the cores.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        self.session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or inputs[0].name != "X" or inputs[0].shape[-1] != len(FEATURE_NAMES):
            found = [(i.name, i.shape) for i in inputs]
            raise ValueError(f"the graph must take one input X of (n, {len(FEATURE_NAMES)}) floats, it takes {found}")
        outputs = [o.name for o in self.session.get_outputs()]
        self.outputs = ["probabilities" if "probabilities" in outputs else outputs[-1]]
        self.positive = positive
        self.threshold = threshold
        self.onnx_bytes = len(onnx_bytes)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        proba = self.session.run(self.outputs, {"X": np.asarray(X, dtype=np.float32)})[0]
        return proba[:, self.positive].astype(float)

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(predicted classes by heart.decision.decide, P(heart disease)): not the graph's argmax."""
        proba = self.predict_proba(X)
        return decide(proba, self.threshold), proba


class SklearnPredictor:
    """The Pipeline itself (INFERENCE_ENGINE=sklearn, the analyses): imports pandas on first use."""

    engine = "sklearn"
    inline = False  # milliseconds per call: run it in a worker thread, not on the event loop

    def __init__(self, pipeline: Pipeline, threshold: float = DEFAULT_THRESHOLD):
        self.pipeline = pipeline
        self.positive = list(pipeline.classes_).index(1)
        self.threshold = threshold

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(n, 13) floats, NaN = missing -> P(heart disease)."""
        import pandas as pd

        frame = pd.DataFrame(np.asarray(X, dtype=float), columns=list(FEATURE_NAMES))
        return self.pipeline.predict_proba(frame)[:, self.positive].astype(float)

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(predicted classes by heart.decision.decide, P(heart disease))."""
        proba = self.predict_proba(X)
        return decide(proba, self.threshold), proba


@dataclass
class Parity:
    """How a predictor compared with the Pipeline's stored probabilities on `rows` rows."""

    engine: str
    rows: int
    class_mismatches: int
    max_abs_diff: float
    tolerance: float = PARITY_TOLERANCE
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.class_mismatches == 0 and self.max_abs_diff <= self.tolerance

    def as_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}

    def failure(self) -> str:
        return (
            f"{self.engine} does not reproduce the reference probabilities stored with the model: "
            f"{self.class_mismatches} class mismatches, max |dp| {self.max_abs_diff:.2e} on {self.rows} rows "
            f"(tolerance {self.tolerance:.0e})"
        )


def check_parity(candidate, X: np.ndarray, expected: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> Parity:
    """Predict X with `candidate`; count class mismatches with `expected` (P(disease), decided at
    `threshold`) and the largest probability difference."""
    t0 = time.perf_counter()
    got_class, got_p = candidate.predict(X)
    diff = np.abs(np.asarray(expected, dtype=float) - got_p)
    return Parity(
        engine=candidate.engine,
        rows=len(X),
        class_mismatches=int((decide(expected, threshold) != got_class).sum()) if len(X) else 0,
        max_abs_diff=float(diff.max()) if len(diff) else 0.0,
        seconds=round(time.perf_counter() - t0, 4),
    )


def build_predictor(model: ModelArtifact, engine: str = "onnx", pipeline: Callable[[], Pipeline] | None = None):
    """(predictor, parity): the engine asked for, once it reproduces the model's reference probabilities.

    engine="onnx" runs the artifact's graph; engine="sklearn" the Pipeline that `pipeline()`
    unpickles (the documented fallback). Both decide the class at the card's threshold. A
    predictor that does not reproduce the reference is a ModelError: nothing is served.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown inference engine {engine!r}: choose onnx or sklearn")
    threshold = threshold_of(model.card)
    ref = model.reference
    if engine == "sklearn":
        if pipeline is None:
            raise ValueError("INFERENCE_ENGINE=sklearn needs the Pipeline")
        predictor = SklearnPredictor(pipeline(), threshold)
    else:
        try:
            predictor = OnnxPredictor(model.onnx, ref.positive, threshold)
        except Exception as e:  # noqa: BLE001 - ONNX Runtime refuses the graph: say why, serve nothing
            raise ModelError(
                f"{model.path}: model.onnx cannot be loaded by ONNX Runtime ({type(e).__name__}: {e})"
            ) from None
    parity = check_parity(predictor, ref.X, ref.proba, threshold)
    if not parity.ok:
        raise ModelError(f"{model.path}: {parity.failure()}; refusing to serve it")
    log.info(
        "predictor_ready",
        extra={
            "engine": predictor.engine,
            "parity_rows": parity.rows,
            "max_abs_diff": parity.max_abs_diff,
            "seconds": parity.seconds,
        },
    )
    return predictor, parity
