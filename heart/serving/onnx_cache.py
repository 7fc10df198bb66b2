"""The model's ONNX graph, converted once when the image is built instead of at every start.

Converting the Pipeline with skl2onnx costs about as much as the rest of the server's start
(importing skl2onnx and onnx, then the conversion itself). The image's build runs
`python -m heart.serving.onnx_cache /app/model.joblib`, which writes model.onnx beside the model and
model.onnx.json, naming the sha256 of the model it came from and of the graph. At start-up
the server uses the graph only if both hashes match the verified model and the file; anything
else (no cache, another model mounted, a changed file) converts as before. Either way the
graph serves only after the usual parity check against the Pipeline, so a cache can make the
start faster, never the answers different.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from ..artifact import atomic_write, sha256_bytes

log = logging.getLogger(__name__)


def cache_paths(model_path: str | Path) -> tuple[Path, Path]:
    """(graph, record) beside the model: model.joblib -> model.onnx, model.onnx.json."""
    graph = Path(model_path).with_suffix(".onnx")
    return graph, graph.with_name(graph.name + ".json")


def write_cache(model_path: str | Path) -> Path:
    """Verify and load the model, convert it, write the graph and its record (build time)."""
    from ..artifact import load_model
    from ..fast import to_onnx

    model = load_model(model_path)
    blob = to_onnx(model.pipeline)
    graph, record = cache_paths(model_path)
    atomic_write(graph, blob)
    atomic_write(
        record,
        (
            json.dumps(
                {
                    "model_sha256": model.card["artifact"]["sha256"],
                    "onnx_sha256": sha256_bytes(blob),
                    "bytes": len(blob),
                },
                indent=2,
            )
            + "\n"
        ).encode(),
    )
    return graph


def read_cache(model_path: str | Path, model_sha256: str) -> bytes | None:
    """The cached graph of exactly this model, or None (then the caller converts)."""
    graph, record = cache_paths(model_path)
    if not (graph.is_file() and record.is_file()):
        return None
    try:
        meta = json.loads(record.read_text())
        blob = graph.read_bytes()
        if meta["model_sha256"] != model_sha256:
            reason = "it was made from another model"
        elif meta["onnx_sha256"] != sha256_bytes(blob):
            reason = "the graph does not match its recorded sha256"
        else:
            return blob
    except (OSError, ValueError, KeyError, TypeError) as e:
        reason = f"unreadable ({type(e).__name__}: {e})"
    log.warning("onnx_cache_ignored", extra={"path": str(graph), "reason": reason})
    return None


if __name__ == "__main__":
    for path in sys.argv[1:] or ["model.joblib"]:
        print(f"wrote {write_cache(path)}")
