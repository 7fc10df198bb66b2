"""What the app serves, and whether it may: the verified model, its predictor, readiness.

The model is loaded in the background at start-up by heart.artifact.read_artifact: checked
against the deployer's pin (MODEL_SHA256, else MODEL_SHA256_FILE) and its own checksum, then its
card, ONNX graph and reference probabilities are read; nothing is unpickled. Without a pin it is
refused when REQUIRE_MODEL_PIN is true, and otherwise served with a warning, heart_model_pinned 0
and "pinned": false in readiness (docs/security.md). The graph then serves only once it
reproduces the reference probabilities stored with it (heart.fast). /ready_check answers 503 with
the reason until all of that has passed (status "failed" when the model was refused), and the
prediction routes refuse to serve until then. The scikit-learn Pipeline is unpickled only for
/explain and for INFERENCE_ENGINE=sklearn, after the file is checked again (load_pipeline).
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Gauge
from starlette.exceptions import HTTPException

from ..artifact import ModelArtifact, ModelError, load_pipeline, read_artifact
from ..fast import Parity, build_predictor
from .metrics import Metrics
from .settings import Settings

log = logging.getLogger(__name__)
PIPELINE_MISSING = (
    "the Pipeline cannot be unpickled here: scikit-learn and joblib are not installed (requirements-explain.txt); "
    "INFERENCE_ENGINE=sklearn and /explain need them: the predictor image leaves them out, the explainer image has them"
)
EXPLAINER_MISSING = (
    "explanations need scikit-learn and SHAP, which this image leaves out to stay small: /explain is "
    'served by the explainer image (docs/deploy.md, "The explainer")'
)


class NotReady(Exception):
    """A route needs the model, and it is not (yet) loaded: a 503 with the reason."""


@dataclass
class ServingState:
    """load() fills every field before status turns "ready", and requests check status
    first, so none ever sees half a model."""

    settings: Settings
    metrics: Metrics
    status: str = "loading"
    reason: str = "the model is loading"
    model: ModelArtifact | None = None
    pipeline: Any = None  # unpickled on first need: see get_pipeline
    predictor: Any = None
    parity: Parity | None = None
    explainer: Any = None  # built on the first /explain: see get_explainer
    loaded: threading.Event = field(default_factory=threading.Event)
    timings: dict = field(default_factory=dict)  # seconds per start-up step, logged with model_loaded
    _explainer_lock: threading.Lock = field(default_factory=threading.RLock, repr=False)
    pin_source: str = "none"  # which setting pinned the model: MODEL_SHA256, MODEL_SHA256_FILE or none

    def __post_init__(self) -> None:
        self.pinned_gauge = Gauge(
            "heart_model_pinned",
            "1 when the served model matched a deployer's sha256 pin, "
            "0 when it is served unpinned (with several workers: all of them)",
            registry=self.metrics.registry,
            multiprocess_mode="livemin",
        )

    @property
    def ready(self) -> bool:
        return self.status == "ready"

    def require_ready(self) -> None:
        if self.status != "ready":
            raise NotReady()

    def load(self) -> None:
        """Verify and read the model, build its predictor; ready only if both pass (SHAP waits for /explain)."""
        path = self.settings.model_path
        t0 = time.perf_counter()
        try:
            log.info("model_loading", extra={"model_path": str(path), "engine": self.settings.engine})
            model, predictor, parity = self._build()
            self._publish(model, predictor, parity)
        except ModelError as e:
            self._fail(f"model refused: {e}")
            return
        except Exception as e:  # noqa: BLE001 - readiness must say why, whatever it was
            self._fail(f"model could not be loaded: {type(e).__name__}: {e}")
            return
        finally:
            self.loaded.set()
        # Everything loaded so far (libraries, the forest, the ONNX session) lives as long as the process:
        # move it out of the collector's view, so full collections stay short (p99 latency).
        gc.collect()
        gc.freeze()
        log.info(
            "model_loaded",
            extra={
                "model_version": model.version,
                "model_path": str(path),
                "sha256": model.sha256,
                "pinned_by": self.pin_source,
                "engine": predictor.engine,
                "parity": parity.as_dict(),
                "seconds": round(time.perf_counter() - t0, 3),
                "timings": self.timings,
            },
        )

    def _publish(self, model, predictor, parity) -> None:
        """Labels first (they read the card), status last: a request sees all of it or none."""
        self.metrics.model_info.labels(model_version=model.version, engine=predictor.engine).set(1)
        self.pinned_gauge.set(1 if model.pinned else 0)
        self.model, self.predictor, self.parity = model, predictor, parity
        self.metrics.ready.set(1)
        self.status, self.reason = "ready", ""

    def pin(self) -> str | None:
        """The deployer's sha256 (Settings.pin), noting which setting gave it; a warning when there is none."""
        pin = self.settings.pin()
        self.pin_source = pin.source
        if pin.sha256 is None:
            log.warning(
                "model_unpinned",
                extra={
                    "model_path": str(self.settings.model_path),
                    "reason": "no MODEL_SHA256 or MODEL_SHA256_FILE: nothing outside the file vouches for it, and "
                    "a replaced file could carry another model (docs/security.md)",
                },
            )
        return pin.sha256

    def _build(self):
        lap = _Laps(self.timings)
        model = read_artifact(self.settings.model_path, self.pin())
        lap("verify_and_read")
        predictor, parity = build_predictor(model, self.settings.engine, lambda: self.get_pipeline(model))
        lap("predictor")  # the ONNX Runtime session (or the Pipeline) and the parity check
        self.timings["parity"] = parity.seconds
        return model, predictor, parity

    def get_pipeline(self, model: ModelArtifact | None = None):
        """The scikit-learn Pipeline, unpickled on first need after heart.artifact.load_pipeline has
        checked the file again: /explain and INFERENCE_ENGINE=sklearn, never /predict."""
        if self.pipeline is None:
            with self._explainer_lock:
                if self.pipeline is None:
                    t0 = time.perf_counter()
                    try:
                        self.pipeline = load_pipeline(model or self.model)
                    except ImportError as e:  # the predictor image: no joblib, no scikit-learn
                        raise ModelError(f"{PIPELINE_MISSING} ({e})") from None
                    log.info("pipeline_loaded", extra={"seconds": round(time.perf_counter() - t0, 3)})
        return self.pipeline

    def get_explainer(self):
        """The SHAP explainer, built on first use: importing shap (numba, llvmlite) costs more than the
        rest of the start, and predictions never need it. A 503 where shap is not installed."""
        if self.explainer is None:
            self.require_ready()
            with self._explainer_lock:
                if self.explainer is None:
                    try:
                        from ..attribution import PipelineExplainer
                    except ImportError as e:
                        raise HTTPException(503, f"{EXPLAINER_MISSING} ({e})") from None
                    t0 = time.perf_counter()
                    self.explainer = PipelineExplainer(self.get_pipeline())
                    log.info("explainer_loaded", extra={"seconds": round(time.perf_counter() - t0, 3)})
        return self.explainer

    def _fail(self, reason: str) -> None:
        self.status, self.reason = "failed", reason
        self.metrics.ready.set(0)
        log.error("model_load_failed", extra={"reason": reason, "model_path": str(self.settings.model_path)})

    def wait(self, timeout: float = 60) -> bool:
        """Block until the load attempt has finished (tests, scripts); True if ready."""
        self.loaded.wait(timeout)
        return self.ready

    def readiness(self) -> tuple[int, dict]:
        """(HTTP status, body) of /ready_check."""
        if not self.ready:
            return 503, {"status": self.status, "reason": self.reason}
        return 200, {
            "status": "ready",
            "model_version": self.model.version,
            "engine": self.predictor.engine,
            "parity": self.parity.as_dict(),
            "pinned": self.model.pinned,
            "pinned_by": self.pin_source,
        }


class _Laps:
    """timings[name] = seconds since the previous lap (or creation)."""

    def __init__(self, timings: dict):
        self.timings, self.t = timings, time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name], self.t = round(now - self.t, 3), now
