# The prediction API's images, from one Dockerfile:
#   docker build -t heart-disease-mlops .                                  the predictor (default target)
#   docker build --target explainer -t heart-disease-mlops-explainer .     + /explain (SHAP, scikit-learn)
#   docker run -p 8000:8000 heart-disease-mlops
# The predictor serves predictions from the model's ONNX graph with ONNX Runtime and NumPy: no
# scikit-learn, SciPy, pandas or SHAP in it, so the image the autoscaler pulls stays small and starts
# fast. The explainer is the predictor plus one layer with those (docs/deploy.md, "The explainer").
# BASE_IMAGE is any Debian-like image with python3 (3.11) and its venv module; CI builds on a local
# debootstrapped base (deploy/container_check.sh) because no registry is reachable there. Few steps
# follow the big layers: on CI's vfs storage driver every step copies the whole tree.
ARG BASE_IMAGE=python:3.11-slim

# ---- serve-venv: the predictor's virtual environment (requirements-serve.txt) ------------------
FROM ${BASE_IMAGE} AS serve-venv
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /build
COPY requirements-serve.txt requirements-explain.txt requirements-build.txt ./
# `python3 -m venv` and /opt/venv/bin/python everywhere: python lives in /usr/local on the official
# image and in /usr on Debian's. The site-packages listing is what explain-extra compares against.
RUN python3 -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
 && python3 -m venv /opt/venv \
 && /opt/venv/bin/python -m pip install --no-cache-dir -r requirements-serve.txt \
 && ls /opt/venv/lib/python3.11/site-packages > /opt/serve-packages.txt

# ---- serve-lean: the same, without what the server never runs ----------------------------------
# pip, setuptools and the packages' own test suites go.
FROM serve-venv AS serve-lean
RUN /opt/venv/bin/python -m pip uninstall -y -q pip setuptools \
 && find /opt/venv/lib -depth -type d -name tests -exec rm -rf {} +

# ---- explain-venv: + requirements-explain.txt (pandas, SciPy, scikit-learn, joblib, shap) -------
FROM serve-venv AS explain-venv
RUN /opt/venv/bin/python -m pip install --no-cache-dir -r requirements-explain.txt

# ---- explain-extra: only what explain-venv added, as one directory for the explainer's layer ----
# A package of the serving set replaced by another version would be missed: the build fails instead.
FROM explain-venv AS explain-extra
RUN /opt/venv/bin/python -c 'import pathlib, shutil, sys; \
site = pathlib.Path("/opt/venv/lib/python3.11/site-packages"); \
before = set(pathlib.Path("/opt/serve-packages.txt").read_text().split()); \
now = {p.name for p in site.iterdir()}; \
gone = sorted(before - now); \
sys.exit(f"requirements-explain.txt replaced packages of the serving set: {gone}") if gone else None; \
out = pathlib.Path("/opt/explain-extra"); out.mkdir(); \
[shutil.move(str(site / name), str(out / name)) for name in sorted(now - before)]' \
 && find /opt/explain-extra -depth -type d -name tests -exec rm -rf {} +

# ---- builder: + requirements-build.txt (onnx, skl2onnx), then the model ------------------------
FROM explain-venv AS builder
RUN /opt/venv/bin/python -m pip install --no-cache-dir -r requirements-build.txt
# .dockerignore lets only the package, the server, train.py, the requirements and data/data.csv through.
COPY . .
# Fixed seeds: the same data and pins give the same model and the same model.zip on every build
# (its ONNX graph, reference probabilities and Pipeline inside, heart.export). The archive's sha256
# is baked into /app/model.sha256 (root-owned, read-only to the server; ENV cannot be set from a
# RUN, and a build ARG would have to be known before training): MODEL_SHA256_FILE points the
# server at it, and REQUIRE_MODEL_PIN refuses any model without a pin (docs/security.md). A
# mounted model (MODEL_PATH) must come with its own MODEL_SHA256, which wins over the file.
# /app is the whole application, byte-compiled here (pip compiled the venv) because the root
# filesystem is read-only in Kubernetes.
RUN /opt/venv/bin/python train.py --data data/data.csv --out /app/model.zip \
 && sha256sum /app/model.zip | cut -d' ' -f1 > /app/model.sha256 \
 && cp -r heart heart_fastapi.py /app/ \
 && /opt/venv/bin/python -m compileall -q /app \
 && chmod -R a+rX,go-w /app

# ---- runtime: the predictor's venv, the package, the server script and the model ----------------
FROM ${BASE_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8000 \
    WEB_CONCURRENCY=1 \
    LOG_LEVEL=info \
    MODEL_PATH=/app/model.zip \
    MODEL_SHA256_FILE=/app/model.sha256 \
    REQUIRE_MODEL_PIN=true \
    INFERENCE_DB=/tmp/inference.db \
    HOME=/tmp
# INFERENCE_DB: the inference table's SQLite file, where the server's user may write (/app is
# read-only to it); it goes with the container: give DATABASE_URL for a table that lasts and that
# every replica shares (docs/monitoring.md, "The inference table").
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
COPY --from=serve-lean /opt/venv /opt/venv
COPY --from=builder /app /app

# ---- explainer: the predictor plus one layer (pandas, SciPy, scikit-learn, shap, numba) --------
# Serves the same API; the autoscaled predictor routes /explain here (k8s/explainer.yaml).
FROM runtime AS explainer
ENV NUMBA_CACHE_DIR=/tmp/numba \
    MPLCONFIGDIR=/tmp/matplotlib
COPY --from=explain-extra /opt/explain-extra/ /opt/venv/lib/python3.11/site-packages/

# ---- predictor: the default target, the runtime stage as it is ----------------------------------
FROM runtime AS predictor
