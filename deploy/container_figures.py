"""The container check's figures (deploy/container_check.sh passes them in CC_* variables): written to
CC_OUT as JSON and printed with issue 22's targets, each met or missed with the measured figure.

Targets: the predictor image <= 400 MB; ready <= 1.0 s after `docker run` on overlay2 (median of 3),
or, on a slow machine, <= 1.5x the time a bare FastAPI + uvicorn app from the same image takes to
its first 200 in the same run; RSS <= 150 MiB after 1,000 /predict. A miss is reported, not a failure.
"""

from __future__ import annotations

import json
import os
import platform
import time

IMAGE_MB, READY_MS, READY_X_BARE, RSS_MIB = 400, 1000, 1.5, 150


def figures(e) -> dict:
    driver = e["CC_DRIVER"]
    return {
        "image": e["CC_IMAGE"],
        "explainer_image": e["CC_EXPLAINER"],
        "base_image": e["CC_BASE"],
        "storage_driver": driver,
        "image_size_bytes": int(e["CC_SIZE"]),
        "explainer_image_size_bytes": int(e["CC_EXPLAINER_SIZE"]),
        "time_to_ready_ms": int(e["CC_READY"]),
        "container_start_ms": int(e["CC_CREATE"]),
        "server_start_to_ready_ms": int(e["CC_SERVER"]),
        "server_cpu_ms_to_ready": int(e["CC_CPU"]),
        "server_timings_seconds": json.loads(e["CC_TIMINGS"]),
        "rss_mib_when_ready": float(e["CC_RSS_READY"]),
        "rss_mib_after_1000_predict": float(e["CC_RSS_1000"]),
        "rss_mib_after_1000_predict_split": json.loads(e["CC_RSS_SPLIT"]),
        "predict_1000": json.loads(e["CC_LOAD"]),
        "explainer_time_to_ready_ms": int(e["CC_EXPLAINER_READY"]),
        "explainer_first_explain_ms": int(e["CC_EXPLAIN_MS"]),
        "explainer_rss_mib_after_first_explain": float(e["CC_RSS_EXPLAIN"]),
        "sigterm_to_exit_ms": int(e["CC_STOP"]),
        "overlay2": json.loads(e["CC_OVERLAY2"]),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, docker {driver} storage",
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }


def targets(f: dict) -> dict:
    """Each target: the measured figure, the limit and whether it is met (None: not measured)."""
    overlay2 = f["overlay2"]
    ready = overlay2.get("median_time_to_ready_ms")
    bare = overlay2.get("median_bare_app_ready_ms")
    out = {
        "image_mb": {"measured": round(f["image_size_bytes"] / 1e6), "limit": IMAGE_MB},
        "rss_mib_after_1000_predict": {"measured": f["rss_mib_after_1000_predict"], "limit": RSS_MIB},
        "ready_ms_overlay2_median_of_3": {"measured": ready, "limit": READY_MS},
        "ready_vs_bare_app_overlay2": {
            "measured": round(ready / bare, 2) if ready and bare else None,
            "limit": READY_X_BARE,
            "bare_app_ready_ms": bare,
        },
    }
    for t in out.values():
        t["met"] = None if t["measured"] is None else t["measured"] <= t["limit"]
    ready_met = [out[k]["met"] for k in ("ready_ms_overlay2_median_of_3", "ready_vs_bare_app_overlay2")]
    out["ready"] = {"met": None if ready_met == [None, None] else any(ready_met)}
    return out


def main() -> None:
    e = os.environ
    f = figures(e)
    f["targets"] = targets(f)
    tmp = e["CC_OUT"] + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(f, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, e["CC_OUT"])
    for name, t in f["targets"].items():
        if name == "ready":
            continue
        verdict = {True: "met", False: "MISSED", None: "not measured"}[t["met"]]
        print(f"container-check: target {name}: {t['measured']} (limit {t['limit']}): {verdict}")
    print(f"container-check: ready target (either form): {'met' if f['targets']['ready']['met'] else 'MISSED'}")
    print(
        f"container-check: explainer image {f['explainer_image_size_bytes'] / 1e6:.0f} MB, first /explain "
        f"{f['explainer_first_explain_ms']} ms, RSS {f['explainer_rss_mib_after_first_explain']} MiB; "
        f"load average at the end {f['load_average_at_end']}; figures in {e['CC_OUT']}"
    )


if __name__ == "__main__":
    main()
