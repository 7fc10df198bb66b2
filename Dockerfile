# The prediction API's image:
#   docker build -t heart-disease-mlops .
#   docker run -p 8000:8000 heart-disease-mlops
# BASE_IMAGE is any Debian-like image with python3 (3.11) and its venv module; CI builds on a
# local debootstrapped base (deploy/container_check.sh) because no registry is reachable there.
ARG BASE_IMAGE=python:3.11-slim

# ---- builder: the virtual environment (runtime requirements only) and the trained model ----
FROM ${BASE_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    NUMBA_CACHE_DIR=/tmp/numba
# `python3 -m venv` and /opt/venv/bin/python everywhere: python lives in /usr/local on the
# official image and in /usr on Debian's.
RUN python3 -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
RUN /opt/venv/bin/python -m pip install --no-cache-dir -r /tmp/requirements.txt
WORKDIR /build
COPY heart/ heart/
COPY train.py ./
COPY data/data.csv data/data.csv
# Fixed seeds: the same data and pins give a byte-identical model.joblib on every build. At run
# time MODEL_PATH may name another (mounted) model instead; it is verified against its card.
RUN /opt/venv/bin/python train.py --data data/data.csv --out /build/model.joblib

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
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    NUMBA_CACHE_DIR=/tmp/numba
# A fixed numeric uid, so Kubernetes' runAsNonRoot can verify it without a passwd lookup.
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin app
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY heart/ heart/
COPY heart_fastapi.py ./
COPY --from=builder /build/model.joblib /build/model.card.json ./
# Compiled once here: the root filesystem is read-only in Kubernetes. Code and model stay
# owned by root and read-only to the server's user.
RUN /opt/venv/bin/python -m compileall -q /app/heart /app/heart_fastapi.py \
 && chmod -R a+rX /app
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["/opt/venv/bin/python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/ready_check' % os.environ.get('PORT', '8000'), timeout=2)"]
# Exec form: python is PID 1 and receives SIGTERM itself, so uvicorn drains and exits cleanly.
# HOST, PORT, WEB_CONCURRENCY, LOG_LEVEL and MODEL_PATH come from the environment above.
CMD ["/opt/venv/bin/python", "heart_fastapi.py"]
