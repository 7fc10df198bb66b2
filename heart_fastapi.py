"""Serve the heart-disease model over HTTP: python heart_fastapi.py [--port 8000] [--model-path model.zip]

A shell over heart.serving.run (`--help` lists every flag; each overrides its environment
variable). `uvicorn heart_fastapi:app` serves the same app configured by the environment alone.
See docs/serving.md.
"""

from __future__ import annotations

from heart import cli
from heart.serving.run import app_from_environment as create_app
from heart.serving.run import main

__all__ = ["create_app", "main"]


def __getattr__(name: str):
    """`uvicorn heart_fastapi:app`: the app is built on first access, not at import."""
    if name == "app":
        app = globals()["app"] = create_app()
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    raise SystemExit(cli.run_main(main))
