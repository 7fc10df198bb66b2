#!/usr/bin/env bash
# Build, run and check the service's two images on a machine without a container registry.
#
# Usage: deploy/container_check.sh [--base-only] [--rebuild-base] [--print-image]
#   --base-only     stop after step 3 (make or check the local base image)
#   --rebuild-base  make the local base image again even if it exists and works
#   --print-image   print the predictor's image tag (IMAGE, below) and exit
#
# 1. installs docker.io (and debootstrap, when the base must be made) with apt if missing;
# 2. starts dockerd (vfs storage, no iptables, no bridge) if no daemon answers, and stops it
#    at the end only if it started it;
# 3. makes the local base image (a debootstrapped Debian bookworm with python3, imported with
#    `docker import`) unless it already exists: no registry is needed for FROM;
# 4. builds the explainer (--target explainer) and the predictor (the default target) from the
#    repo's Dockerfile with --build-arg BASE_IMAGE=<local base>;
# 5. runs the predictor like Kubernetes would (read-only root filesystem, a tmpfs on /tmp, host
#    network on a free port), waits for /ready_check, POSTs a good and a bad /predict, checks the
#    process is PID 1 and not root, and that Docker's HEALTHCHECK turns healthy; then sends 1,000
#    /predict and reads the server's RSS; /explain must answer 503 naming the explainer;
# 6. sends SIGTERM (docker stop) and checks the server exits 0, logging its shutdown, within the
#    grace period; then runs the explainer the same way: ready, the first /explain (it loads the
#    Pipeline and SHAP) adds up, and its RSS;
# 7. unless OVERLAY2=0 (or the daemon already uses overlay2): starts a second dockerd with the
#    overlay2 storage driver (own data root and socket), `docker save | docker load`s the predictor
#    into it and times `docker run` to ready 3 times, each beside a bare FastAPI + uvicorn app run
#    from the same image (time to its first 200): the baseline the ready target may be relative to.
# Figures, with the targets of issue 22 (image <= 400 MB; ready <= 1.0 s on overlay2, or <= 1.5x the
# bare app's time in the same run; RSS <= 150 MiB after 1,000 /predict), are printed and written to
# METRICS_OUT by deploy/container_figures.py; a missed target is reported there, not a failure.
# Any failure prints "container-check: FAIL: ..." and exits non-zero. Safe to run again: the
# base and the images are reused from Docker's cache.
#
# Environment (defaults in brackets):
#   IMAGE [heart-disease-mlops:<__version__ of heart/__init__.py>]  tag for the predictor's image:
#                                     the tag k8s/deployment.yaml runs (--print-image prints it)
#   EXPLAINER_IMAGE [heart-disease-mlops-explainer:<__version__>]   the explainer's (k8s/explainer.yaml)
#   LOCAL_BASE [heart-base:bookworm]  tag of the local base image
#   DEBIAN_MIRROR [http://deb.debian.org/debian]
#   GRACE [20]                        seconds between SIGTERM and SIGKILL (docker stop -t)
#   READY_TIMEOUT [180]               seconds to wait for /ready_check
#   METRICS_OUT [reports/container_check.json]  measured figures (image sizes, time to ready, RSS)
#   STORAGE_DRIVER [vfs]              storage driver of the dockerd this script starts
#   OVERLAY2 [1]                      0: skip step 7 (the overlay2 start-up timing)
#   OVERLAY2_ROOT [/var/lib/heart-docker-overlay2]  data root of step 7's daemon (kept, as a cache)
set -euo pipefail

cd "$(dirname "$0")/.."
VERSION=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' heart/__init__.py)
IMAGE=${IMAGE:-heart-disease-mlops:${VERSION:?no __version__ in heart/__init__.py}}
EXPLAINER_IMAGE=${EXPLAINER_IMAGE:-heart-disease-mlops-explainer:${VERSION}}
LOCAL_BASE=${LOCAL_BASE:-heart-base:bookworm}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
GRACE=${GRACE:-20}
READY_TIMEOUT=${READY_TIMEOUT:-180}
METRICS_OUT=${METRICS_OUT:-reports/container_check.json}
STORAGE_DRIVER=${STORAGE_DRIVER:-vfs}
OVERLAY2=${OVERLAY2:-1}
OVERLAY2_ROOT=${OVERLAY2_ROOT:-/var/lib/heart-docker-overlay2}
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
OVERLAY_DOCKERD_PID=""
OVERLAY_SOCK=/run/heart-overlay2-$$.sock
ROOTFS=""
T0=$SECONDS

log()  { printf 'container-check: [%4ds] %s\n' "$((SECONDS - T0))" "$*"; }
fail() { printf 'container-check: FAIL: %s\n' "$*" >&2; exit 1; }

cleanup() {
    local rc=$?
    set +e
    docker rm -f "$NAME" >/dev/null 2>&1
    [ -n "$ROOTFS" ] && rm -rf "$ROOTFS"
    if [ -n "$OVERLAY_DOCKERD_PID" ]; then
        DOCKER_HOST="unix://$OVERLAY_SOCK" docker rm -f "$NAME" >/dev/null 2>&1
        stop_dockerd "$OVERLAY_DOCKERD_PID" overlay2
    fi
    [ -n "$STARTED_DOCKERD_PID" ] && stop_dockerd "$STARTED_DOCKERD_PID" "$STORAGE_DRIVER"
    if [ "$rc" -eq 0 ]; then log "PASS"; else log "failed (exit $rc); dockerd log: $DOCKERD_LOG"; fi
    exit "$rc"
}
stop_dockerd() {  # stop_dockerd PID DRIVER: a dockerd this script started
    log "stopping the $2 dockerd this script started (pid $1)"
    kill -TERM "$1" 2>/dev/null
    for _ in $(seq 60); do kill -0 "$1" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$1" 2>/dev/null; then
        log "dockerd did not stop in 30 s: killing it"
        kill -KILL "$1" 2>/dev/null
    fi
    wait "$1" 2>/dev/null
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
    log "starting dockerd ($STORAGE_DRIVER storage, no iptables, no bridge); log: $DOCKERD_LOG"
    dockerd --storage-driver "$STORAGE_DRIVER" --iptables=false --bridge=none >"$DOCKERD_LOG" 2>&1 &
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
# build TAG [TARGET]: the full log goes to a file; its "Step" lines are echoed with the time, to
# show progress. The image the build replaced would linger untagged (a full copy per layer on
# vfs): it is dropped.
build() {
    local tag=$1 target=${2:-} log old new rc
    log=${TMPDIR:-/tmp}/heart-build-$$.log
    log "building $tag from ./Dockerfile${target:+ (target $target)} on $LOCAL_BASE"
    old=$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)
    set +e
    docker build --network host --build-arg BASE_IMAGE="$LOCAL_BASE" ${target:+--target "$target"} -t "$tag" . 2>&1 \
        | tee "$log" | while IFS= read -r line; do case $line in Step*) log "  ${line:0:100}" ;; esac; done
    rc=${PIPESTATUS[0]}
    set -e
    [ "$rc" -eq 0 ] || { tail -40 "$log" >&2; fail "docker build $tag failed (full log: $log)"; }
    rm -f "$log"
    new=$(docker image inspect -f '{{.Id}}' "$tag")
    if [ -n "$old" ] && [ "$old" != "$new" ]; then docker rmi "$old" >/dev/null 2>&1 || true; fi
}
build "$EXPLAINER_IMAGE" explainer   # every stage up to the explainer, the predictor's included
build "$IMAGE"                       # the default target: cached by now
SIZE_BYTES=$(docker image inspect -f '{{.Size}}' "$IMAGE")
EXPLAINER_BYTES=$(docker image inspect -f '{{.Size}}' "$EXPLAINER_IMAGE")
log "built $IMAGE: $(( SIZE_BYTES / 1000000 )) MB; $EXPLAINER_IMAGE: $(( EXPLAINER_BYTES / 1000000 )) MB"

# --- 5. run, ready, predict, user -------------------------------------------------------------
# run_until_ready [IMAGE [COMMAND...]]: start $NAME from IMAGE (default $IMAGE) on the daemon
# DOCKER_HOST names (default: the main one) and wait for /ready_check; sets BASE_URL, READY_MS,
# CREATE_MS (docker creating and starting the container: on vfs that copies the whole image),
# SERVER_MS (the server's own start) and SERVER_CPU_MS.
run_until_ready() {
    local image=${1:-$IMAGE} port start_ns ready_ns started_ns ready=""
    shift || true
    port=$(free_port)
    BASE_URL="http://127.0.0.1:$port"
    start_ns=$(date +%s%N)
    docker run -d --name "$NAME" --network host --read-only --tmpfs /tmp -e PORT="$port" \
        "$image" "$@" >/dev/null || fail "docker run failed"
    while [ $(( ($(date +%s%N) - start_ns) / 1000000000 )) -lt "$READY_TIMEOUT" ]; do
        if [ "$(docker inspect -f '{{.State.Running}}' "$NAME" 2>/dev/null)" != "true" ]; then
            docker logs "$NAME" 2>&1 | tail -30 >&2
            fail "the container exited before becoming ready"
        fi
        if [ "$(http GET "$BASE_URL/ready_check" | cut -d' ' -f1)" = "200" ]; then ready=1; break; fi
        sleep 0.02
    done
    [ -n "$ready" ] || { docker logs "$NAME" 2>&1 | tail -30 >&2; fail "/ready_check not 200 within ${READY_TIMEOUT}s"; }
    ready_ns=$(date +%s%N)
    started_ns=$(python3 -c 'import sys, datetime as d
t = sys.argv[1].rstrip("Z"); whole, _, frac = t.partition(".")
s = d.datetime.fromisoformat(whole).replace(tzinfo=d.timezone.utc).timestamp()
print(int(s) * 10**9 + int((frac + "000000000")[:9]))' "$(docker inspect -f '{{.State.StartedAt}}' "$NAME")")
    READY_MS=$(( (ready_ns - start_ns) / 1000000 ))
    CREATE_MS=$(( (started_ns - start_ns) / 1000000 ))
    SERVER_MS=$(( (ready_ns - started_ns) / 1000000 ))
    # CPU the server used to get ready (user + system, ms): unlike the wall times, barely moved
    # by other work on a shared machine; on an idle one, the server's start takes about this long.
    SERVER_CPU_MS=$(docker exec "$NAME" sh -c 'cat /proc/1/stat' | awk -v hz="$(getconf CLK_TCK)" '{print int(($14 + $15) * 1000 / hz)}')
}
# The baseline of the ready target: FastAPI + uvicorn, one route, from the predictor's own image
# (same layers, same container start), timed to its first 200 like the server.
BARE_APP=(/opt/venv/bin/python -c 'import os, uvicorn; from fastapi import FastAPI
app = FastAPI()
app.get("/ready_check")(lambda: {"status": "ready"})
uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning")')
rss_mib() {  # the server's (PID 1's) resident set, MiB
    docker exec "$NAME" sh -c 'grep VmRSS /proc/1/status' | awk '{printf "%.1f", $2 / 1024}'
}

log "running $NAME (read-only root filesystem, tmpfs /tmp)"
run_until_ready
log "ready ${READY_MS} ms after docker run (container created and started in ${CREATE_MS} ms, server ready ${SERVER_MS} ms after its start, using ${SERVER_CPU_MS} ms of CPU)"
READY_MS_MAIN=$READY_MS CREATE_MS_MAIN=$CREATE_MS SERVER_MS_MAIN=$SERVER_MS SERVER_CPU_MS_MAIN=$SERVER_CPU_MS
# The server's own account of its start (model_loaded: seconds per step) and its process age.
SERVER_TIMINGS=$(docker logs "$NAME" 2>&1 | python3 -c '
import json, sys
for line in sys.stdin:
    if line.startswith("{") and json.loads(line).get("event") == "model_loaded":
        r = json.loads(line)
        print(json.dumps({"load_seconds": r.get("seconds"), **r.get("timings", {})})); break
else:
    print("{}")')
log "server start-up steps: $SERVER_TIMINGS"

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

RSS_READY=$(rss_mib) || fail "reading PID 1's VmRSS"
PORT_OF_URL=${BASE_URL##*:}
# 1,000 /predict on one keep-alive connection, patients varied over the schema's ranges.
LOAD=$(python3 - "$PORT_OF_URL" "$GOOD" <<'PY'
import http.client, json, sys, time
port, good = int(sys.argv[1]), json.loads(sys.argv[2])
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
t0, bad = time.perf_counter(), 0
for i in range(1000):
    body = {**good, "age": 29 + i % 48, "chol": 150 + (i * 7) % 250, "thalach": 90 + (i * 13) % 110,
            "oldpeak": round((i % 40) / 10, 1), "cp": i % 4, "ca": i % 4}
    if i % 10 == 0:
        body.pop("chol")  # some imputed fields too
    conn.request("POST", "/predict", json.dumps(body), {"Content-Type": "application/json"})
    r = conn.getresponse()
    r.read()
    bad += r.status != 200
print(json.dumps({"requests": 1000, "non_200": bad, "seconds": round(time.perf_counter() - t0, 3)}))
PY
) || fail "1,000 /predict"
python3 -c 'import json, sys; r = json.loads(sys.argv[1]); assert r["non_200"] == 0, r' "$LOAD" \
    || fail "1,000 /predict: some answered non-200: $LOAD"
RSS_1000=$(rss_mib)
# The same, split: anonymous memory (the process's own) and file pages (shared libraries' code,
# shared with every other process of the image on the node).
RSS_SPLIT=$(docker exec "$NAME" sh -c 'grep -E "^Rss(Anon|File)" /proc/1/status' \
    | awk '{printf "%s\"%s\": %.1f", (NR > 1 ? ", " : "{"), ($1 == "RssAnon:" ? "anon" : "file"), $2 / 1024} END {print "}"}')
log "RSS ${RSS_READY} MiB when ready, ${RSS_1000} MiB after 1,000 /predict (MiB: $RSS_SPLIT; $LOAD)"
http POST "$BASE_URL/explain" "$GOOD" | python3 -c '
import json, sys
status, _, body = sys.stdin.read().partition(" ")
assert status == "503" and "explainer" in json.loads(body)["detail"], f"/explain on the predictor: {status} {body[:300]}"
' || fail "/explain on the predictor must answer 503 naming the explainer (no SHAP in this image)"
log "/explain on the predictor: 503, pointing at the explainer"

# --- 6. graceful shutdown, then the explainer ---------------------------------------------------
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

log "running the explainer $EXPLAINER_IMAGE"
run_until_ready "$EXPLAINER_IMAGE"
EXPLAINER_READY_MS=$READY_MS
EXPLAIN_NS=$(date +%s%N)
http POST "$BASE_URL/explain" "$GOOD" | python3 -c '
import json, sys
status, _, body = sys.stdin.read().partition(" ")
assert status == "200", f"/explain answered {status}: {body[:300]}"
r = json.loads(body)
total = r["base_value"] + sum(c["contribution"] for c in r["contributions"])
assert abs(total - r["probability"]) < 1e-6 and len(r["contributions"]) == 13, r
' || fail "/explain check on the explainer (the first one loads the Pipeline and SHAP)"
FIRST_EXPLAIN_MS=$(( ($(date +%s%N) - EXPLAIN_NS) / 1000000 ))
RSS_EXPLAIN=$(rss_mib)
log "explainer: ready in ${EXPLAINER_READY_MS} ms, first /explain 200 in ${FIRST_EXPLAIN_MS} ms; RSS then ${RSS_EXPLAIN} MiB"
docker rm -f "$NAME" >/dev/null

# --- 7. time to ready on overlay2, beside the bare app ----------------------------------------
OVERLAY_JSON='{"skipped": "OVERLAY2=0"}'
CURRENT_DRIVER=$(docker info -f '{{.Driver}}')
# ready_runs NAME: 3 runs of the predictor, each followed by one of the bare app, on the current
# daemon; logs each on stderr and prints the figures (JSON) on stdout.
ready_runs() {
    local i runs=()
    for i in 1 2 3; do
        run_until_ready
        docker rm -f "$NAME" >/dev/null
        local server="$READY_MS:$CREATE_MS:$SERVER_MS:$SERVER_CPU_MS"
        run_until_ready "$IMAGE" "${BARE_APP[@]}"
        docker rm -f "$NAME" >/dev/null
        log "$1 run $i: ready ${server%%:*} ms after docker run; the bare app ${READY_MS} ms" >&2
        runs+=("$server:$READY_MS")
    done
    python3 -c '
import json, statistics, sys
keys = ("time_to_ready_ms", "container_start_ms", "server_start_to_ready_ms", "server_cpu_ms_to_ready", "bare_app_ready_ms")
runs = [dict(zip(keys, map(int, r.split(":")))) for r in sys.argv[1:]]
print(json.dumps({"runs": runs, **{f"median_{k}": statistics.median(r[k] for r in runs) for k in keys}}))
' "${runs[@]}"
}
if [ "$CURRENT_DRIVER" = "overlay2" ]; then
    OVERLAY_JSON=$(ready_runs overlay2 | tail -1)
elif [ "$OVERLAY2" != "0" ]; then
    OVERLAY_LOG=${TMPDIR:-/tmp}/heart-dockerd-overlay2-$$.log
    log "starting a second dockerd with overlay2 storage (data root $OVERLAY2_ROOT); log: $OVERLAY_LOG"
    mkdir -p "$OVERLAY2_ROOT"
    dockerd --storage-driver overlay2 --data-root "$OVERLAY2_ROOT" --exec-root "/run/heart-overlay2-$$" \
        --pidfile "/run/heart-overlay2-$$.pid" -H "unix://$OVERLAY_SOCK" --iptables=false --bridge=none \
        >"$OVERLAY_LOG" 2>&1 &
    OVERLAY_DOCKERD_PID=$!
    for _ in $(seq 120); do
        DOCKER_HOST="unix://$OVERLAY_SOCK" docker info >/dev/null 2>&1 && break
        kill -0 "$OVERLAY_DOCKERD_PID" 2>/dev/null || break
        sleep 0.5
    done
    if DOCKER_HOST="unix://$OVERLAY_SOCK" docker info >/dev/null 2>&1; then
        log "copying $IMAGE into it (docker save | docker load)"
        docker save "$IMAGE" | DOCKER_HOST="unix://$OVERLAY_SOCK" docker load >/dev/null \
            || fail "docker load into the overlay2 daemon"
        export DOCKER_HOST="unix://$OVERLAY_SOCK"
        OVERLAY_JSON=$(ready_runs overlay2 | tail -1)
        unset DOCKER_HOST
    else
        OVERLAY_JSON=$(python3 -c 'import json, sys; print(json.dumps({"error": sys.argv[1]}))' \
            "dockerd --storage-driver overlay2 did not start: $(tail -3 "$OVERLAY_LOG" | tr '\n' ' ')")
        log "overlay2 unavailable here: see $OVERLAY_LOG"
    fi
    stop_dockerd "$OVERLAY_DOCKERD_PID" overlay2
    OVERLAY_DOCKERD_PID=""
    # dockerd can leave its network namespace mounted under its exec root: unmount, then remove.
    mount | awk -v root="/run/heart-overlay2-$$/" 'index($3, root) == 1 {print $3}' | xargs -r umount 2>/dev/null || true
    rm -rf "/run/heart-overlay2-$$" "$OVERLAY_LOG" 2>/dev/null || true
fi

mkdir -p "$(dirname "$METRICS_OUT")"
CC_OUT=$METRICS_OUT CC_IMAGE=$IMAGE CC_EXPLAINER=$EXPLAINER_IMAGE CC_BASE=$LOCAL_BASE CC_DRIVER=$CURRENT_DRIVER \
CC_SIZE=$SIZE_BYTES CC_EXPLAINER_SIZE=$EXPLAINER_BYTES CC_READY=$READY_MS_MAIN CC_CREATE=$CREATE_MS_MAIN \
CC_SERVER=$SERVER_MS_MAIN CC_TIMINGS=$SERVER_TIMINGS CC_CPU=$SERVER_CPU_MS_MAIN CC_RSS_SPLIT=$RSS_SPLIT \
CC_RSS_READY=$RSS_READY CC_RSS_1000=$RSS_1000 CC_LOAD=$LOAD CC_EXPLAIN_MS=$FIRST_EXPLAIN_MS \
CC_EXPLAINER_READY=$EXPLAINER_READY_MS CC_RSS_EXPLAIN=$RSS_EXPLAIN CC_STOP=$STOP_MS CC_OVERLAY2=$OVERLAY_JSON \
    python3 deploy/container_figures.py
