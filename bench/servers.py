"""The two comparison servers of the benchmark (bench/bench.py starts them with uvicorn --factory).

bare_app: FastAPI with the API's own request model and a constant answer, nothing else: the
ceiling for a Python endpoint that validates the same input. original_app: the course
project's style: a pandas DataFrame per request and sklearn's predict, called on the event
loop (blocking it). Neither is meant to serve anything but the benchmark.
"""

import os

from fastapi import FastAPI


def bare_app() -> FastAPI:
    from heart.serving.contract import Patient

    app = FastAPI()

    @app.post("/predict")
    async def predict(patient: Patient):  # type: ignore[valid-type]
        return {"predicted_class": 0, "label": "no heart disease", "probability": 0.5}

    @app.get("/ready_check")
    async def ready():
        return {"status": "ready"}

    return app


def original_app() -> FastAPI:
    import pandas as pd
    from pydantic import BaseModel

    from heart.artifact import load_model

    pipeline = load_model(os.environ.get("MODEL_PATH", "model.zip")).pipeline

    class Heart(BaseModel):  # the original: every feature a plain number, gender as text
        age: float
        gender: str
        cp: float
        trestbps: float
        chol: float
        fbs: float
        restecg: float
        thalach: float
        exang: float
        oldpeak: float
        slope: float
        ca: float
        thal: float

    app = FastAPI()

    @app.post("/predict/")
    async def predict(data: Heart):
        row = data.model_dump()
        row["gender"] = 1 if row["gender"].lower() == "male" else 0
        df = pd.DataFrame([row])
        prediction = pipeline.predict(df)
        return {"predicted_class": int(prediction[0])}

    @app.get("/ready_check")
    async def ready():
        return {"status": "ready"}

    return app


class Collector:
    """A stand-in OTLP/HTTP collector on 127.0.0.1 (a thread of the caller's process): answers every
    export 200 and counts the spans it received, so the traced servers pay the real export. With
    keep=True it also keeps each export, (path, ExportTraceServiceRequest), for a test to read."""

    def __init__(self, keep: bool = False):
        import http.server
        import threading

        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        collector = self
        self.spans = self.exports = 0
        self.kept: list = []
        self.lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                request = ExportTraceServiceRequest.FromString(body)
                spans = sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
                with collector.lock:  # one handler thread per export
                    collector.exports += 1
                    collector.spans += spans
                    if keep:
                        collector.kept.append((self.path, request))
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "Collector":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
