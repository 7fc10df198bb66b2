#!/usr/bin/env bash
# Build, run and check the service's container on a machine without a container registry.
#
# Usage: deploy/container_check.sh [--base-only] [--rebuild-base] [--print-image]
#   --base-only     stop after step 3 (make or check the local base image)
#   --rebuild-base  make the local base image again even if it exists and works
#   --print-image   print the image tag it builds (IMAGE, below) and exit
#
# 1. installs docker.io (and debootstrap, when the base must be made) with apt if missing;
# 2. starts dockerd (vfs storage, no iptables, no bridge) if no daemon answers, and stops it
#    at the end only if it started it;
# 3. makes the local base image (a debootstrapped Debian bookworm with python3, imported with
#    `docker import`) unless it already exists: no registry is needed for FROM;
# 4. builds the project's image from the repo's Dockerfile with --build-arg BASE_IMAGE=<local base>;
# 5. runs it like Kubernetes would (read-only root filesystem, a tmpfs on /tmp, host network on a
#    free port), waits for /ready_check, POSTs a good and a bad /predict, checks the process is
#    PID 1 and not root, and that Docker's HEALTHCHECK turns healthy;
# 6. sends SIGTERM (docker stop) and checks the server exits 0, logging its shutdown, within the
#    grace period; then removes the container.
# Any failure prints "container-check: FAIL: ..." and exits non-zero. Safe to run again: the
# base and the image are reused from Docker's cache.
#
# Environment (defaults in brackets):
#   IMAGE [heart-disease-mlops:<__version__ of heart/__init__.py>]  tag for the project's image:
#                                     the tag k8s/deployment.yaml runs (--print-image prints it)
#   LOCAL_BASE [heart-base:bookworm]  tag of the local base image
#   DEBIAN_MIRROR [http://deb.debian.org/debian]
#   GRACE [20]                        seconds between SIGTERM and SIGKILL (docker stop -t)
#   READY_TIMEOUT [180]               seconds to wait for /ready_check
#   METRICS_OUT [reports/container_check.json]  measured figures (image size, time to ready)
set -euo pipefail

cd "$(dirname "$0")/.."
VERSION=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' heart/__init__.py)
IMAGE=${IMAGE:-heart-disease-mlops:${VERSION:?no __version__ in heart/__init__.py}}
LOCAL_BASE=${LOCAL_BASE:-heart-base:bookworm}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
GRACE=${GRACE:-20}
READY_TIMEOUT=${READY_TIMEOUT:-180}
METRICS_OUT=${METRICS_OUT:-reports/container_check.json}
NAME=heart-check-$$
DOCKERD_LOG=${TMPDIR:-/tmp}/heart-dockerd-$$.log
export DOCKER_BUILDKIT=0   # the classic builder: no buildx plugin needed, works with any client

BASE_ONLY=0
REBUILD_BASE=0
for arg in "$@"; do
    case $arg in
        --base-only) BASE_ONLY=1 ;;
        --rebuild-base) REBUILD_BASE=1 ;;
        --print-image) echo "$IMAGE"; exit 0 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "container-check: unknown argument: $arg (see --help)" >&2; exit 2 ;;
    esac
done

STARTED_DOCKERD_PID=""
ROOTFS=""
T0=$SECONDS

log()  { printf 'container-check: [%4ds] %s\n' "$((SECONDS - T0))" "$*"; }
fail() { printf 'container-check: FAIL: %s\n' "$*" >&2; exit 1; }

cleanup() {
    local rc=$?
    set +e
    docker rm -f "$NAME" >/dev/null 2>&1
    [ -n "$ROOTFS" ] && rm -rf "$ROOTFS"
    if [ -n "$STARTED_DOCKERD_PID" ]; then
        log "stopping the dockerd this script started (pid $STARTED_DOCKERD_PID)"
        kill -TERM "$STARTED_DOCKERD_PID" 2>/dev/null
        for _ in $(seq 60); do kill -0 "$STARTED_DOCKERD_PID" 2>/dev/null || break; sleep 0.5; done
        if kill -0 "$STARTED_DOCKERD_PID" 2>/dev/null; then
            log "dockerd did not stop in 30 s: killing it"
            kill -KILL "$STARTED_DOCKERD_PID" 2>/dev/null
        fi
        wait "$STARTED_DOCKERD_PID" 2>/dev/null
    fi
    if [ "$rc" -eq 0 ]; then log "PASS"; else log "failed (exit $rc); dockerd log: $DOCKERD_LOG"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

apt_install() {
    [ "$(id -u)" -eq 0 ] || fail "$* missing and not root: install it (apt-get install $*)"
    log "installing $* with apt"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1; then
        apt-get update -qq >/dev/null 2>&1 || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null || fail "apt-get install $* failed"
    fi
}

# HTTP from the host with Python's standard library (no curl needed).
http() {  # http METHOD URL [JSON_BODY] -> prints "STATUS BODY"
    python3 - "$@" <<'PY'
import sys, urllib.request, urllib.error
method, url = sys.argv[1], sys.argv[2]
data = sys.argv[3].encode() if len(sys.argv) > 3 else None
req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
try:
    with urllib.request.urlopen(req, timeout=5) as r:
        print(r.status, r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode())
except OSError as e:
    print(0, e)
PY
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# --- 1. tools ---------------------------------------------------------------------------------
command -v python3 >/dev/null || apt_install python3
command -v dockerd >/dev/null || apt_install docker.io
command -v docker >/dev/null || apt_install docker.io

# --- 2. daemon --------------------------------------------------------------------------------
if docker info >/dev/null 2>&1; then
    log "using the running Docker daemon"
else
    log "starting dockerd (vfs storage, no iptables, no bridge); log: $DOCKERD_LOG"
    dockerd --storage-driver vfs --iptables=false --bridge=none >"$DOCKERD_LOG" 2>&1 &
    STARTED_DOCKERD_PID=$!
    for _ in $(seq 120); do
        docker info >/dev/null 2>&1 && break
        kill -0 "$STARTED_DOCKERD_PID" 2>/dev/null || { tail -20 "$DOCKERD_LOG" >&2; fail "dockerd exited at start"; }
        sleep 0.5
    done
    docker info >/dev/null 2>&1 || { tail -20 "$DOCKERD_LOG" >&2; fail "dockerd did not answer within 60 s"; }
    log "dockerd is up"
fi

# --- 3. local base image ----------------------------------------------------------------------
base_works() {  # python3 with venv, usable by a non-root user (as the image's server runs)
    docker run --rm --network host --user 10001:10001 "$LOCAL_BASE" \
        python3 -c 'import venv, ensurepip, ssl' >/dev/null 2>&1
}
if [ "$REBUILD_BASE" -eq 0 ] && docker image inspect "$LOCAL_BASE" >/dev/null 2>&1 && base_works; then
    log "reusing the local base image $LOCAL_BASE"
else
    OLD_BASE_ID=$(docker image inspect -f '{{.Id}}' "$LOCAL_BASE" 2>/dev/null || true)
    if [ -n "$OLD_BASE_ID" ]; then
        log "replacing the local base image $LOCAL_BASE (--rebuild-base, or it failed its check)"
    fi
    command -v debootstrap >/dev/null || apt_install debootstrap
    ROOTFS=$(mktemp -d "${TMPDIR:-/var/tmp}/heart-rootfs.XXXXXX")
    log "debootstrapping Debian bookworm into $ROOTFS (a few minutes)"
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
        bookworm "$ROOTFS" "$DEBIAN_MIRROR" >"$ROOTFS.log" 2>&1 \
        || { tail -20 "$ROOTFS.log" >&2; fail "debootstrap failed (log: $ROOTFS.log)"; }
    rm -f "$ROOTFS.log"
    # The build's pip reaches the index only if it trusts this machine's certificate bundle.
    cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
    if [ -f /etc/pip.conf ] && ! grep -q 'file://\|/opt/' /etc/pip.conf; then
        cp /etc/pip.conf "$ROOTFS/etc/pip.conf"   # e.g. `cert = ...`; local paths would not exist inside
    else
        printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$ROOTFS/etc/pip.conf"
    fi
    chmod 755 "$ROOTFS"   # mktemp made it 0700: as the image's /, no other user could enter it
    rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* \
           "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/locale/*
    log "importing the root filesystem as $LOCAL_BASE"
    tar -C "$ROOTFS" -c . | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["/bin/bash"]' - "$LOCAL_BASE" >/dev/null || fail "docker import failed"
    rm -rf "$ROOTFS"; ROOTFS=""
    base_works || fail "the local base image has no python3 with venv usable by a non-root user"
    if [ -n "$OLD_BASE_ID" ]; then docker rmi "$OLD_BASE_ID" >/dev/null 2>&1 || true; fi
    log "local base image $LOCAL_BASE ready"
fi
[ "$BASE_ONLY" -eq 1 ] && exit 0

# --- 4. build ---------------------------------------------------------------------------------
log "building $IMAGE from ./Dockerfile on $LOCAL_BASE"
BUILD_LOG=${TMPDIR:-/tmp}/heart-build-$$.log
# The full log goes to a file; its "Step" lines are echoed with the time, to show progress.
OLD_IMAGE_ID=$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)
set +e
docker build --network host --build-arg BASE_IMAGE="$LOCAL_BASE" -t "$IMAGE" . 2>&1 | tee "$BUILD_LOG" \
    | while IFS= read -r line; do case $line in Step*) log "  ${line:0:100}" ;; esac; done
BUILD_RC=${PIPESTATUS[0]}
set -e
if [ "$BUILD_RC" -ne 0 ]; then
    tail -40 "$BUILD_LOG" >&2
    fail "docker build failed (full log: $BUILD_LOG)"
fi
rm -f "$BUILD_LOG"
# The image this build replaced would linger untagged (a full copy per layer on vfs): drop it.
NEW_IMAGE_ID=$(docker image inspect -f '{{.Id}}' "$IMAGE")
if [ -n "$OLD_IMAGE_ID" ] && [ "$OLD_IMAGE_ID" != "$NEW_IMAGE_ID" ]; then
    docker rmi "$OLD_IMAGE_ID" >/dev/null 2>&1 || true
fi
SIZE_BYTES=$(docker image inspect -f '{{.Size}}' "$IMAGE")
SIZE_MB=$(( SIZE_BYTES / 1000000 ))
log "built $IMAGE: ${SIZE_MB} MB"

# --- 5. run, ready, predict, user -------------------------------------------------------------
PORT=$(free_port)
BASE_URL="http://127.0.0.1:$PORT"
log "running $NAME on port $PORT (read-only root filesystem, tmpfs /tmp)"
START_NS=$(date +%s%N)
docker run -d --name "$NAME" --network host --read-only --tmpfs /tmp -e PORT="$PORT" \
    "$IMAGE" >/dev/null || fail "docker run failed"
READY=""
while [ $(( ($(date +%s%N) - START_NS) / 1000000000 )) -lt "$READY_TIMEOUT" ]; do
    if [ "$(docker inspect -f '{{.State.Running}}' "$NAME" 2>/dev/null)" != "true" ]; then
        docker logs "$NAME" 2>&1 | tail -30 >&2
        fail "the container exited before becoming ready"
    fi
    if [ "$(http GET "$BASE_URL/ready_check" | cut -d' ' -f1)" = "200" ]; then READY=1; break; fi
    sleep 0.2
done
[ -n "$READY" ] || { docker logs "$NAME" 2>&1 | tail -30 >&2; fail "/ready_check not 200 within ${READY_TIMEOUT}s"; }
READY_NS=$(date +%s%N)
READY_MS=$(( (READY_NS - START_NS) / 1000000 ))
# Split: until the container's process started (Docker creating the container: with the vfs
# storage driver that copies the whole image), then the server's own start (imports, model load).
STARTED_NS=$(python3 -c 'import sys, datetime as d
t = sys.argv[1].rstrip("Z"); whole, _, frac = t.partition(".")
s = d.datetime.fromisoformat(whole).replace(tzinfo=d.timezone.utc).timestamp()
print(int(s) * 10**9 + int((frac + "000000000")[:9]))' "$(docker inspect -f '{{.State.StartedAt}}' "$NAME")")
CREATE_MS=$(( (STARTED_NS - START_NS) / 1000000 ))
SERVER_MS=$(( (READY_NS - STARTED_NS) / 1000000 ))
log "ready ${READY_MS} ms after docker run (container created and started in ${CREATE_MS} ms, server ready ${SERVER_MS} ms after its start)"

GOOD='{"age": 63, "gender": "male", "cp": 3, "trestbps": 145, "chol": 233, "fbs": 1, "restecg": 0, "thalach": 150, "exang": 0, "oldpeak": 2.3, "slope": 0, "ca": 0, "thal": 1}'
http POST "$BASE_URL/predict" "$GOOD" | python3 -c '
import json, re, sys
status, _, body = sys.stdin.read().partition(" ")
assert status == "200", f"good /predict answered {status}: {body[:300]}"
r = json.loads(body)
assert r["predicted_class"] in (0, 1), r
assert r["label"] in ("heart disease", "no heart disease"), r
assert 0.0 <= r["probability"] <= 1.0, r
assert re.fullmatch(r"[0-9a-f]{32}", r["trace_id"]), r
assert isinstance(r["model_version"], str) and r["model_version"], r
assert isinstance(r["imputed"], list), r
print("container-check: good /predict: 200", json.dumps({k: r[k] for k in ("predicted_class", "probability", "model_version")}))
' || fail "good /predict check"

BAD='{"age": "old", "gender": "robot"}'
http POST "$BASE_URL/predict" "$BAD" | python3 -c '
import json, sys
status, _, body = sys.stdin.read().partition(" ")
assert status == "422", f"bad /predict answered {status}, expected 422: {body[:300]}"
assert json.loads(body)["detail"], body
print("container-check: bad /predict: 422")
' || fail "bad /predict check"

USER_ID=$(docker exec "$NAME" id -u) || fail "docker exec id -u"
[ "$USER_ID" != "0" ] || fail "the server runs as root"
PID1=$(docker exec "$NAME" sh -c 'tr "\0" " " </proc/1/cmdline') || fail "reading /proc/1/cmdline"
case "$PID1" in *python*) ;; *) fail "PID 1 is not the server: $PID1" ;; esac
log "runs as uid $USER_ID; PID 1 is: $PID1"
# k8s/deployment.yaml's preStop hook runs `sleep` inside the container.
docker exec "$NAME" sleep 0 || fail "the image has no sleep command (k8s preStop needs it)"

HEALTH=""
for _ in $(seq 60); do
    HEALTH=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$NAME")
    [ "$HEALTH" = "healthy" ] && break
    [ -n "$HEALTH" ] || fail "the image has no HEALTHCHECK"
    [ "$HEALTH" = "unhealthy" ] && fail "Docker's HEALTHCHECK says unhealthy"
    sleep 1
done
[ "$HEALTH" = "healthy" ] || fail "HEALTHCHECK not healthy within 60 s (status: $HEALTH)"
log "Docker HEALTHCHECK: healthy"

MEM=$(docker stats --no-stream --format '{{.MemUsage}}' "$NAME" 2>/dev/null | cut -d/ -f1 | tr -d ' ') || MEM=""
log "memory in use: ${MEM:-unknown}"

# --- 6. graceful shutdown ---------------------------------------------------------------------
STOP_NS=$(date +%s%N)
docker stop -t "$GRACE" "$NAME" >/dev/null || fail "docker stop"
STOP_MS=$(( ($(date +%s%N) - STOP_NS) / 1000000 ))
EXIT_CODE=$(docker inspect -f '{{.State.ExitCode}}' "$NAME")
[ "$EXIT_CODE" = "0" ] || { docker logs "$NAME" 2>&1 | tail -20 >&2; fail "exit code $EXIT_CODE after SIGTERM (137 = killed after the ${GRACE}s grace period)"; }
# Read the log whole first: `grep -q` in a pipe would close it early, and pipefail would count
# docker's SIGPIPE as a failure.
SERVER_LOG=$(docker logs "$NAME" 2>&1)
grep -qiE 'shutdown|shutting down' <<<"$SERVER_LOG" \
    || { tail -20 <<<"$SERVER_LOG" >&2; fail "no shutdown line in the server's log"; }
log "SIGTERM: clean exit 0 in ${STOP_MS} ms (grace ${GRACE}s), shutdown logged"
docker rm "$NAME" >/dev/null

mkdir -p "$(dirname "$METRICS_OUT")"
python3 - "$METRICS_OUT" "$IMAGE" "$SIZE_BYTES" "$READY_MS" "$STOP_MS" "$LOCAL_BASE" "$CREATE_MS" "$SERVER_MS" \
    "$MEM" <<'PY'
import json, os, platform, sys, time
out, image, size, ready, stop, base, create, server, mem = sys.argv[1:]
figures = {"image": image, "base_image": base, "image_size_bytes": int(size),
           "time_to_ready_ms": int(ready), "container_start_ms": int(create),
           "server_start_to_ready_ms": int(server), "memory_after_requests": mem,
           "sigterm_to_exit_ms": int(stop),
           "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "machine": f"{os.cpu_count()} cores, {platform.machine()}, docker vfs storage"}
tmp = out + ".tmp"
with open(tmp, "w") as f:
    json.dump(figures, f, indent=2)
    f.write("\n")
os.replace(tmp, out)
PY
log "figures written to $METRICS_OUT: image ${SIZE_MB} MB, ready in ${READY_MS} ms"
