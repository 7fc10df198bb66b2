"""Everything the server process needs, one concept per module.

run          the process: flags derived from Settings, start-up checks (exit 2), workers, the supervisor's metrics
supervisor   uvicorn's multi-worker supervisor, made to stop listening first at SIGTERM
app          create_app: wires the rest (lifespan, middleware, routes, tracing)
settings     each setting declared once (environment variable, flag, rule, help), validated once
contract     request/response models, the example patient, MAX_BATCH (pydantic only, no FastAPI)
routes       the v1 routes (predictions, operations) and the OpenAPI document
v2           the Open Inference Protocol (KServe V2) routes
tensors      V2 tensors checked (shape first, nesting exact, bounded) and turned into feature columns
pages        the page at /, offline /docs and /redoc
negotiation  the one parser of q-weighted headers (Accept, Accept-Encoding), RFC 9110
inference    validated patients -> predictions, traced, counted and logged
feedback     POST /feedback: labels for served predictions, joined by prediction_id in the inference table
table_writer the inference table from the server's side: rows written off the request path, labels, realized gauges
database     where the inference table is (DATABASE_URL, DATABASE_URL_FILE, INFERENCE_DB), checked at start
state        model loading (read, never unpickled, for predictions), the parity check, readiness
live_drift   the recent inputs tested against the training data (gauges)
auth         bearer tokens, deny by default: every path but the public list
middleware   each request's span, metrics and trace id, body and header limits, request bodies parsed
errors       the one error layer: each error in its family's JSON shape (V2: {"error"}), at most 16 KB, no traceback
protocol     uvicorn's HTTP protocol with header limits, request deadlines and a drain at shutdown
metrics      every Prometheus metric, multiprocess mode
metrics_server  the metrics port: a bounded server (request timeout, header limit, connection cap)
tracing      OpenTelemetry tracing from the standard OTEL_* variables, the lean server span
logs         JSON log lines on stdout

Nothing is imported here, so `heart.serving.contract` stays importable without FastAPI.
"""
