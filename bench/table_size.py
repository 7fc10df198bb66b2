"""The inference table's cost, measured: python -m bench.table_size [--rows 20000] [--postgres]

Writes `--rows` predictions as the server writes them (training-like patients with their inputs,
requests of 1 and of 100 patients), then labels every other one, and prints the bytes on disk per
1,000 predictions (SQLite: the file after a checkpoint; PostgreSQL: pg_total_relation_size, table
and indexes) and the writer's cost per row (rows_of + one INSERT transaction per 1,000 rows, the
batching heart.serving.table_writer does). --postgres starts a throwaway server (tests/postgres.py).
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

from heart import inference_table as table
from heart.data import load_dataset
from heart.predlog import PredictionRecords, new_prediction_ids, now_iso
from heart.samples import sample
from heart.schema import FEATURE_NAMES

ROOT = Path(__file__).resolve().parent.parent


def batches(n: int, per_request: int) -> list[PredictionRecords]:
    X = sample(n, seed=0, mode="marginal", reference=load_dataset(ROOT / "data" / "data.csv").X)
    rows = [{k: (None if v != v else v) for k, v in r.items()} for r in X[list(FEATURE_NAMES)].to_dict("records")]
    out = []
    for first in range(0, n, per_request):
        part = rows[first : first + per_request]
        out.append(
            PredictionRecords(
                timestamp=now_iso(),
                trace_id="0123456789abcdef" * 2,
                span_id="0123456789abcdef",
                model_version="1.0.0-ebe3fa8023a2",
                latency_ms=0.1,
                inputs=part,
                imputed=[[k for k, v in r.items() if v is None] for r in part],
                predicted_class=[i % 2 for i in range(len(part))],
                probability=[0.123456789 + i / 10**6 for i in range(len(part))],
                prediction_id=new_prediction_ids(len(part)),
            )
        )
    return out


def measure(url: str, n: int, per_request: int) -> dict:
    engine = table.engine_for(url)
    table.migrate(engine)
    work = batches(n, per_request)
    t0 = time.perf_counter()
    pending: list[dict] = []
    for batch in work:
        pending += table.rows_of(batch)
        if len(pending) >= 1000:
            with engine.begin() as conn:
                table.insert(conn, pending)
            pending = []
    if pending:
        with engine.begin() as conn:
            table.insert(conn, pending)
    write_us = (time.perf_counter() - t0) / n * 1e6
    ids = [pid for b in work for pid in b.prediction_id][::2]
    t0 = time.perf_counter()
    for first in range(0, len(ids), 1000):
        table.store_labels(engine, [(pid, 1) for pid in ids[first : first + 1000]])
    label_us = (time.perf_counter() - t0) / len(ids) * 1e6
    if url.startswith("sqlite"):
        engine.dispose()
        path = url.removeprefix("sqlite:///")
        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = Path(path).stat().st_size
    else:
        with engine.connect() as conn:
            size = conn.exec_driver_sql("SELECT pg_total_relation_size('predictions')").scalar_one()
        engine.dispose()
    return {
        "rows": n,
        "per_request": per_request,
        "write_us_per_row": write_us,
        "label_us": label_us,
        "kib_per_1000": size / n,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=20_000)
    p.add_argument("--postgres", action="store_true")
    args = p.parse_args()
    for per_request in (1, 100):
        with tempfile.TemporaryDirectory() as tmp:
            if args.postgres:
                from tests import postgres

                server = postgres.start()
                try:
                    with postgres.database(server) as url:
                        got = measure(url, args.rows, per_request)
                finally:
                    postgres.stop(server)
                kind = "postgresql"
            else:
                got = measure(f"sqlite:///{tmp}/inference.db", args.rows, per_request)
                kind = "sqlite"
        print(
            f"{kind}: {got['rows']:,} predictions in requests of {per_request}: write {got['write_us_per_row']:.1f} µs "
            f"a row (rows_of + INSERT, 1,000 rows a transaction), label {got['label_us']:.1f} µs a row, "
            f"{got['kib_per_1000'] / 1024 * 1000:.0f} KiB per 1,000 predictions (every other labelled)"
        )


if __name__ == "__main__":
    main()
