# The prediction API's image:
#   docker build -t heart-disease-mlops .
#   docker run -p 8000:8000 heart-disease-mlops
# BASE_IMAGE is any Debian-like image with python3 (3.11) and its venv module; CI builds on a
# local debootstrapped base (deploy/container_check.sh) because no registry is reachable there.
# Few steps follow the big layers: on CI's vfs storage driver every step copies the whole tree.
ARG BASE_IMAGE=python:3.11-slim

# ---- builder: the virtual environment (the server's requirements only) and the trained model ----
FROM ${BASE_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NUMBA_CACHE_DIR=/tmp/numba
WORKDIR /build
COPY requirements-serve.txt ./
# `python3 -m venv` and /opt/venv/bin/python everywhere: python lives in /usr/local on the
# official image and in /usr on Debian's. requirements-serve.txt is what the server imports
# (requirements.txt adds the analyses' fairlearn and matplotlib: not shipped). Then what the
# server never runs goes: pip, setuptools and the packages' test suites (~155 MB).
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/python -m pip install --no-cache-dir -r requirements-serve.txt \
 && /opt/venv/bin/python -m pip uninstall -y -q pip setuptools \
 && find /opt/venv/lib -depth -type d -name tests -exec rm -rf {} + \
 && rm -rf /opt/venv/lib/python3*/site-packages/onnx/backend/test/data
# .dockerignore lets only the package, the server, train.py and data/data.csv through.
COPY . .
# Fixed seeds: the same data and pins give the same model_version on every build. The model's
# sha256 is baked into /app/model.sha256 (root-owned, read-only to the server; ENV cannot be set
# from a RUN, and a build ARG would have to be known before training): MODEL_SHA256_FILE points
# the server at it, and REQUIRE_MODEL_PIN refuses any model without a pin (docs/security.md). A
# mounted model (MODEL_PATH) must come with its own MODEL_SHA256, which wins over the file.
# heart.serving.onnx_cache converts the model to ONNX here, once (model.onnx + its sha256 record), so
# the server skips skl2onnx at start; it still checks parity before serving it.
# /app is the whole application, byte-compiled here (pip compiled the venv) because the root
# filesystem is read-only in Kubernetes; data/data.csv stays because the server checks its fast
# path on those rows.
RUN /opt/venv/bin/python train.py --data data/data.csv --out /app/model.joblib \
 && sha256sum /app/model.joblib | cut -d' ' -f1 > /app/model.sha256 \
 && /opt/venv/bin/python -m heart.serving.onnx_cache /app/model.joblib \
 && mkdir -p /app/data \
 && cp -r heart heart_fastapi.py /app/ \
 && cp data/data.csv /app/data/ \
 && /opt/venv/bin/python -m compileall -q /app \
 && chmod -R a+rX,go-w /app

# ---- runtime: the venv, the package, the server script and the model; no build tools -------
FROM ${BASE_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8000 \
    WEB_CONCURRENCY=1 \
    LOG_LEVEL=info \
    MODEL_PATH=/app/model.joblib \
    MODEL_SHA256_FILE=/app/model.sha256 \
    REQUIRE_MODEL_PIN=true \
    HOME=/tmp \
    NUMBA_CACHE_DIR=/tmp/numba
# A fixed numeric uid, so Kubernetes' runAsNonRoot can verify it without a passwd lookup.
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin app
WORKDIR /app
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["/opt/venv/bin/python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/ready_check' % os.environ.get('PORT', '8000'), timeout=2)"]
USER 10001:10001
# Exec form: python is PID 1 and receives SIGTERM itself, so uvicorn drains and exits cleanly.
# HOST, PORT, WEB_CONCURRENCY, LOG_LEVEL and MODEL_PATH come from the environment above.
CMD ["/opt/venv/bin/python", "heart_fastapi.py"]
# Last, the big layers. Code and model are owned by root: read-only to the server's user.
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /app
