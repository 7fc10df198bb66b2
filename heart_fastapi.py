"""Serve the heart-disease model over HTTP: python heart_fastapi.py [--port 8000] [--model-path model.joblib]

Starts uvicorn with the API of heart/api.py: POST /predict (and /predict/), /predict/batch,
/explain; GET /live_check, /ready_check, /model, /metrics, /docs. Every flag defaults to its
environment variable (12-factor), so `uvicorn heart_fastapi:app` and containers configure the
same server without flags. The model is sha256-verified and parity-checked after start-up;
/ready_check answers 503 with the reason until then. SIGTERM (or Ctrl-C) stops accepting
connections and lets in-flight requests finish (up to --graceful-timeout seconds).

Tracing follows the standard OpenTelemetry variables: OTEL_EXPORTER_OTLP_ENDPOINT (OTLP over
HTTP), OTEL_TRACES_EXPORTER=console, none by default. See readme.md, "Serving".
"""
from __future__ import annotations

import os

from heart import cli
from heart.api import Settings, create_app
from heart.artifact import ModelError


def parse_args(argv):
    env = os.environ
    p = cli.parser(__doc__)
    p.add_argument("--host", default=env.get("HOST", "0.0.0.0"), help="interface to bind (env HOST)")
    # string defaults go through `type` too, so a bad PORT or WEB_CONCURRENCY is a usage error
    p.add_argument("--port", type=cli.integer(1, 65535), default=env.get("PORT", "8000"), help="TCP port (env PORT)")
    p.add_argument("--model-path", "--model", default=env.get("MODEL_PATH", "model.joblib"),
                   help="model.joblib with its model.card.json beside it (env MODEL_PATH)")
    p.add_argument("--workers", type=cli.integer(1), default=env.get("WEB_CONCURRENCY", "1"),
                   help="worker processes (env WEB_CONCURRENCY); /metrics is per worker")
    p.add_argument("--log-level", default=env.get("LOG_LEVEL", "info").lower(),
                   choices=["critical", "error", "warning", "info", "debug"], help="log level (env LOG_LEVEL)")
    p.add_argument("--prediction-log", default=env.get("PREDICTION_LOG") or None,
                   help="append one JSON line per served patient to this file (env PREDICTION_LOG; unset = off)")
    p.add_argument("--log-inputs", default=env.get("LOG_INPUTS", "true").lower(), choices=["true", "false"],
                   help="include the patients' inputs in logs and the prediction log (env LOG_INPUTS); "
                        "false keeps health data out of the logs")
    p.add_argument("--engine", default=env.get("INFERENCE_ENGINE", "onnx").lower(), choices=["onnx", "sklearn"],
                   help="onnx: the parity-checked ONNX Runtime fast path (falls back to sklearn if the check "
                        "fails); sklearn: the Pipeline itself (env INFERENCE_ENGINE)")
    p.add_argument("--graceful-timeout", type=cli.number(0), default=30.0,
                   help="seconds in-flight requests get to finish after SIGTERM")
    p.add_argument("--access-log", action="store_true", help="also log every HTTP request (costs throughput)")
    args = p.parse_args(argv)
    if args.port < 0 or args.port > 65535:
        p.error(f"--port must be 0..65535, got {args.port}")
    if args.workers < 1:
        p.error(f"--workers must be >= 1, got {args.workers}")
    return args


def main(argv=None) -> int:
    import uvicorn

    from heart.telemetry import uvicorn_log_config

    args = parse_args(argv)
    if not os.path.isfile(args.model_path):
        raise ModelError(f"{args.model_path}: model file not found (run `make train` or `python train.py`)")
    # Workers are separate processes that import heart_fastapi:app: hand them the
    # configuration through the environment, the same way a container would.
    os.environ.update(MODEL_PATH=args.model_path, LOG_LEVEL=args.log_level, LOG_INPUTS=args.log_inputs,
                      INFERENCE_ENGINE=args.engine)
    if args.prediction_log:
        os.environ["PREDICTION_LOG"] = args.prediction_log
    uvicorn.run("heart_fastapi:app", host=args.host, port=args.port, workers=args.workers,
                log_level=args.log_level, log_config=uvicorn_log_config(args.log_level, args.access_log),
                access_log=args.access_log, timeout_graceful_shutdown=args.graceful_timeout,
                server_header=False)
    return 0


# `uvicorn heart_fastapi:app` (and every worker) builds the app from the environment. The
# script's own __main__ copy builds none: its flags reach the workers through os.environ.
app = create_app(settings=Settings.from_env()) if __name__ != "__main__" else None

if __name__ == "__main__":
    raise SystemExit(cli.run_main(main))
