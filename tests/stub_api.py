"""A tiny in-thread HTTP server speaking the API contract, with failures on demand.

Lets the client tests provoke what the real app must never do (500s for some rows, wrong
shapes) and count every request the client sent, so retries can be checked exactly.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LABELS = {0: "no heart disease", 1: "heart disease"}


def predict_row(patient: dict) -> dict:
    cls = int(patient.get("age", 0) >= 55)
    return {
        "prediction_id": uuid.uuid4().hex,
        "predicted_class": cls,
        "label": LABELS[cls],
        "probability": 0.75 if cls else 0.25,
        "imputed": [],
    }


class StubAPI:
    """Serve /predict, /predict/batch, /ready_check on 127.0.0.1:<free port> in a thread.

    fail(patient) -> True makes /predict answer 500 for that patient; `bad_shape` makes every
    200 answer lack its label; `delay` seconds pass before each /predict answer; with a `token`,
    a POST without `Authorization: Bearer <token>` gets a 401, as the API does with API_AUTH=tokens.
    """

    def __init__(self, fail=lambda patient: False, bad_shape: bool = False, delay: float = 0.0, token=None):
        self.fail, self.bad_shape, self.delay, self.token = fail, bad_shape, delay, token
        self.requests: list[tuple[str, object]] = []
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *a):  # keep test output clean
                pass

            def _send(self, status: int, body) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                with stub._lock:
                    stub.requests.append((self.path, None))
                if self.path == "/ready_check":
                    return self._send(200, {"status": "ready"})
                self._send(404, {"detail": "Not Found"})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"null")
                with stub._lock:
                    stub.requests.append((self.path, body))
                envelope = {"model_version": "stub-1", "trace_id": "0123456789abcdef0123456789abcdef"}
                if stub.token is not None and self.headers.get("Authorization") != f"Bearer {stub.token}":
                    return self._send(401, {"detail": "a valid bearer token is required"})
                if self.path.rstrip("/") == "/predict":
                    time.sleep(stub.delay)
                    if stub.fail(body):
                        return self._send(500, {"detail": "internal error", "trace_id": envelope["trace_id"]})
                    row = predict_row(body)
                    if stub.bad_shape:
                        del row["label"]
                    return self._send(200, {**row, **envelope})
                if self.path == "/predict/batch":
                    return self._send(200, {**envelope, "predictions": [predict_row(p) for p in body["instances"]]})
                self._send(404, {"detail": "Not Found"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StubAPI:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def posts(self, path: str) -> list:
        return [body for p, body in self.requests if p.rstrip("/") == path and body is not None]
