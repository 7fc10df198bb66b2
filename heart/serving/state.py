"""What the app serves, and whether it may: the verified model, its fast path, readiness.

The model is loaded in the background at start-up: sha256-verified by heart.model.load_model,
converted to the ONNX fast path (heart.fast) and parity-checked against the sklearn
Pipeline. /ready_check answers 503 with the reason until all of that has passed, and the
prediction routes refuse to serve until then.
"""
from __future__ import annotations

import gc
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..decision import threshold_of
from ..fast import Parity, build_predictor, parity_rows
from ..artifact import LoadedModel, ModelError, load_model
from ..telemetry import Metrics
from .settings import Settings

log = logging.getLogger("heart.api")


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
    model: LoadedModel | None = None
    predictor: Any = None
    parity: Parity | None = None
    explainer: Any = None
    loaded: threading.Event = field(default_factory=threading.Event)

    @property
    def ready(self) -> bool:
        return self.status == "ready"

    def require_ready(self) -> None:
        if self.status != "ready":
            raise NotReady()

    def load(self) -> None:
        """Verify and load the model, build the fast path and the explainer; ready only if all pass."""
        path = self.settings.model_path
        t0 = time.perf_counter()
        try:
            log.info("model_loading", extra={"model_path": str(path), "engine": self.settings.engine})
            model, predictor, parity, explainer = self._build()
        except ModelError as e:
            self._fail(f"model refused: {e}")
            return
        except Exception as e:  # noqa: BLE001 - readiness must say why, whatever it was
            self._fail(f"model could not be loaded: {type(e).__name__}: {e}")
            return
        finally:
            self.loaded.set()
        self.model, self.predictor, self.parity, self.explainer = model, predictor, parity, explainer
        self.metrics.model_info.labels(model_version=model.version, engine=predictor.engine).set(1)
        self.metrics.ready.set(1)
        self.status, self.reason = "ready", ""
        # Everything loaded so far (libraries, the forest, SHAP) lives as long as the process:
        # move it out of the collector's view, so full collections stay short (p99 latency).
        gc.collect()
        gc.freeze()
        log.info("model_loaded", extra={"model_version": model.version, "model_path": str(path),
                                        "sha256": model.card["artifact"]["sha256"], "engine": predictor.engine,
                                        "parity": parity.as_dict(), "seconds": round(time.perf_counter() - t0, 3)})

    def _build(self):
        from ..attribution import PipelineExplainer  # shap is slow to import: only when a model loads

        model = load_model(self.settings.model_path)
        data = None
        if self.settings.parity_data is not None and Path(self.settings.parity_data).is_file():
            from ..data import load_dataset
            data = load_dataset(self.settings.parity_data).X
        rows = parity_rows(self.settings.parity_samples, seed=0, data=data)
        predictor, parity = build_predictor(model.pipeline, rows, self.settings.engine, threshold_of(model.card))
        return model, predictor, parity, PipelineExplainer(model.pipeline)

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
        return 200, {"status": "ready", "model_version": self.model.version, "engine": self.predictor.engine,
                     "parity": self.parity.as_dict()}
