"""Everything the server process needs, one concept per module.

run          the process: flags derived from Settings, pre-checks, workers, the supervisor's metrics
app          create_app: wires the rest (lifespan, middleware, routes, tracing)
settings     each setting declared once (environment variable, flag, rule, help), validated once
contract     request/response models, the example patient, MAX_BATCH (pydantic only, no FastAPI)
routes       the v1 routes (predictions, operations) and the OpenAPI document
v2           the Open Inference Protocol (KServe V2) routes
pages        the page at /, offline /docs and /redoc
inference    validated patients -> predictions, traced, counted and logged
state        model loading (read, never unpickled, for predictions), the parity check, readiness
live_drift   the recent inputs tested against the training data (gauges)
auth         bearer tokens
middleware   each request's span, metrics and trace id, body and header limits, request bodies parsed
errors       exception handlers: every error in one JSON shape, bounded, never a traceback
protocol     uvicorn's HTTP protocol with header limits, request deadlines and a drain at shutdown
metrics      every Prometheus metric, multiprocess mode, the metrics port
tracing      OpenTelemetry tracing from the standard OTEL_* variables, the lean server span
logs         JSON log lines on stdout

Nothing is imported here, so `heart.serving.contract` stays importable without FastAPI.
"""
