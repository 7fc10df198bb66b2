"""The benchmarks' blocks in docs/performance.md: written between their markers, the prose around kept."""

from __future__ import annotations

import json

import pytest

from bench.breakdown import table
from bench.docs import bench_table, replace_block


def test_a_block_is_replaced_between_its_markers_and_nothing_else(tmp_path):
    doc = tmp_path / "p.md"
    doc.write_text("intro\n<!-- t:begin -->\nold\n<!-- t:end -->\nafter\n<!-- u:begin -->\nkept\n<!-- u:end -->\n")
    replace_block(doc, "t", "  new table\n\n")
    assert doc.read_text() == (
        "intro\n<!-- t:begin -->\nnew table\n<!-- t:end -->\nafter\n<!-- u:begin -->\nkept\n<!-- u:end -->\n"
    )


@pytest.mark.parametrize(
    "text",
    [
        "no markers",
        "<!-- t:begin -->",
        "<!-- t:end --> <!-- t:begin -->",
        "<!-- t:begin --><!-- t:begin --><!-- t:end -->",
    ],
)
def test_a_file_without_one_well_formed_block_is_an_error(tmp_path, text):
    doc = tmp_path / "p.md"
    doc.write_text(text)
    with pytest.raises(ValueError, match="expected one <!-- t:begin --> ... <!-- t:end --> block"):
        replace_block(doc, "t", "x")
    assert doc.read_text() == text


def run(rps: float, path: str = "/predict", rows: int = 1) -> dict:
    return {"path": path, "rps": rps, "rows_per_s": rps * rows, "p50": 1.0, "p99": 2.5}


REPORT = {
    "results": {
        "predict": run(4000),
        "predict_traced": run(3200),
        "bare": run(8000),
        "predict_batch": run(50, "/predict/batch", 1000),
    },
    "goals": {
        "predict_vs_bare": 0.5,
        "predict_traced_vs_bare": 0.4,
        "predict_vs_original_x": 60.4,
        "predict_vs_baseline": 1.8,
        "v2_infer_vs_baseline": 0.9,
    },
    "ready_seconds": [0.6, 0.5, 0.7],
    "rss_mib_after_rounds": {"full": 250.4},
    "machine": {
        "cpus": 2,
        "cpu": "X",
        "python": "3.11.7",
        "load_average_at_start": [1.0, 2.0, 3.0],
        "load_average_at_end": [2.0, 2.0, 2.0],
    },
    "started": "2026-12-05T00:00:00Z",
    "command": "python -m bench.bench",
    "wrk": {"connections": 16, "rounds": 3, "duration_s": 5},
}


def test_the_bench_table_has_each_target_the_ratio_the_server_and_the_machine(tmp_path):
    text = bench_table(REPORT, tmp_path / "none.json")
    assert "| this API, defaults (no collector: trace ids, no span recorded) | `/predict` | 4,000 |" in text
    assert "| this API, every request traced and exported to a collector | `/predict` | 3,200 |" in text
    assert "Traced, `/predict` against the bare endpoint: 0.40x with every request traced and exported." in text
    assert "Against the baseline in the same rounds: `/predict` 1.80x, V2 infer 0.90x." in text
    assert "| this API, 1,000 patients per request | `/predict/batch` | 50 | 50,000 | 1.0 | 2.5 |" in text
    assert (
        "**0.50x** the bare endpoint (goal ≥ 0.5x: met; 0.6x not reached, 0.7x not reached), 60x the original" in text
    )
    assert "ready 0.60 s after it is spawned (median of 3), RSS 250 MiB after the rounds" in text
    assert "run `make container-check`" in text and "load average 1.0, 2.0, 3.0 at the start" in text
    figures = {
        "measured_at": "2026-12-05T01:00:00Z",
        "load_average_at_end": [3.0, 2.0, 1.0],
        "image_size_bytes": 331_000_000,
        "overlay2": {"median_time_to_ready_ms": 784, "median_bare_app_ready_ms": 390},
        "rss_mib_after_1000_predict": 104.3,
        "explainer_image_size_bytes": 730_000_000,
        "explainer_first_explain_ms": 910,
        "explainer_rss_mib_after_first_explain": 296.4,
    }
    (tmp_path / "cc.json").write_text(json.dumps(figures))
    text = bench_table(REPORT, tmp_path / "cc.json")
    assert "predictor image **331 MB** (goal ≤ 400), ready **784 ms**" in text and "RSS **104 MiB**" in text


def test_the_breakdown_table_adds_each_part_to_the_one_before():
    best = {"bare": 10.0, "validation": 25.0, "bare_fastapi": 70.0, "tracing": 100.0}
    lines = table(best, markdown=True).splitlines()
    assert lines[2:] == [
        "| bare | 10.0 |  |",
        "| validation | 25.0 | +15.0 |",
        "| `make bench`'s bare endpoint (FastAPI, the same request model, a constant answer) | 70.0 |  |",
        "| tracing | 100.0 | +75.0 |",
    ]
