"""The callers' summary, computed from their records only, so a report can be checked against its rows."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict

import numpy as np

from ..schema import TARGET
from .client import Record


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default); NaN for no values."""
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else math.nan


def summarize_records(records: Sequence[Record], wall_s: float) -> dict:
    """Counts, throughput and latency figures; latency is over successful requests only."""
    ok = [r for r in records if r.ok]
    lat = [r.latency_ms for r in ok]
    return {
        "requests": len(records),
        "successes": len(ok),
        "failures": len(records) - len(ok),
        "timeouts": sum(r.kind == "timeout" for r in records),
        "connection_errors": sum(r.kind == "connection" for r in records),
        "http_errors": sum(r.kind == "http" for r in records),
        "bad_responses": sum(r.kind == "bad_response" for r in records),
        "retried": sum(r.attempts > 1 for r in records),
        "wall_s": wall_s,
        "throughput_per_s": len(ok) / wall_s if wall_s > 0 else math.nan,
        "latency_ms": {
            "min": min(lat) if lat else math.nan,
            "p50": percentile(lat, 50),
            "p95": percentile(lat, 95),
            "p99": percentile(lat, 99),
            "max": max(lat) if lat else math.nan,
        },
        "predicted_class": {str(k): sum(r.predicted_class == k for r in ok) for k in sorted(TARGET.labels)},
        "failure_reasons": failure_reasons(records),
    }


def failure_reasons(records: Iterable[Record]) -> dict[str, int]:
    """Failed records grouped by error text, most frequent first."""
    return dict(Counter(r.error for r in records if not r.ok).most_common())


def summary_rows(summary: dict) -> list[list]:
    """The summary as (figure, value) rows for heart.analyses.report.format_table."""
    lat = summary["latency_ms"]
    return [
        ["requests", summary["requests"]],
        ["successes", summary["successes"]],
        ["failures", summary["failures"]],
        ["timeouts", summary["timeouts"]],
        ["retried (connection errors)", summary["retried"]],
        ["wall time (s)", float(summary["wall_s"])],
        ["throughput (successful/s)", float(summary["throughput_per_s"])],
        *[[f"latency {k} (ms)", float(lat[k])] for k in ("min", "p50", "p95", "p99", "max")],
    ]


def records_json(records: Sequence[Record]) -> list[dict]:
    return [asdict(r) for r in records]
