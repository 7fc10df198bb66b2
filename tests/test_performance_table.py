"""monitor_performance.py against the inference table, on SQLite and on a real PostgreSQL: it reads
the table by default, stores a labels file into it as POST /feedback would (idempotent; a
conflicting label stops it with nothing stored), and prints realized and estimated performance."""

from __future__ import annotations

import contextlib
import io
import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

import monitor_performance
from heart import inference_table
from heart.artifact import card_path_for
from heart.predlog import PredictionRecords

N = 300  # predictions a day, two days


def run_script(*argv, env=None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = monitor_performance.cli.run_main(monitor_performance.main, list(argv))
        except SystemExit as e:
            code = e.code
    return code, out.getvalue(), err.getvalue()


def id_at(when: datetime, i: int) -> str:
    return f"{int(when.timestamp() * 1000):012x}7{i:019x}"


@pytest.fixture
def served(database_url, model_path, tmp_path, monkeypatch):
    """Two days of predictions in the table, as the server writes them; labels (Bernoulli of the
    served probability) in a CSV for the first day; the session model's card."""
    for name in ("DATABASE_URL", "DATABASE_URL_FILE", "INFERENCE_DB"):
        monkeypatch.delenv(name, raising=False)
    card = tmp_path / "model.card.json"
    card.write_text(card_path_for(model_path).read_text())
    version = json.loads(card.read_text())["model_version"]
    rng = np.random.default_rng(0)
    proba = rng.beta(2, 2, 2 * N)
    labels = (rng.random(2 * N) < proba).astype(int)
    start = datetime(2026, 5, 1, tzinfo=UTC)
    ids = [id_at(start + timedelta(minutes=i * 4), i) for i in range(2 * N)]
    engine = inference_table.engine_for(database_url)
    inference_table.migrate(engine)
    with engine.begin() as conn:
        for day in range(2):
            part = slice(day * N, (day + 1) * N)
            batch = PredictionRecords(
                timestamp=(start + timedelta(days=day, hours=12)).isoformat(timespec="milliseconds"),
                trace_id="a" * 32,
                span_id="b" * 16,
                model_version=version,
                latency_ms=0.1,
                inputs=None,
                imputed=[[]] * N,
                predicted_class=(proba[part] >= 0.5).astype(int).tolist(),
                probability=proba[part].tolist(),
                prediction_id=ids[part],
            )
            inference_table.insert(conn, inference_table.rows_of(batch))
    csv = tmp_path / "labels.csv"
    csv.write_text("prediction_id,label\n" + "".join(f"{i},{'yes' if y else 'no'}\n" for i, y in zip(ids[:N], labels)))
    yield {
        "url": database_url,
        "card": card,
        "csv": csv,
        "ids": ids,
        "labels": labels,
        "out": tmp_path / "reports",
        "engine": engine,
    }
    engine.dispose()


def test_labels_go_into_the_table_and_both_views_are_printed(served):
    s = served
    argv = ["--table", s["url"], "--card", str(s["card"]), "--bootstrap", "100", "--out-dir", str(s["out"])]
    code, out, err = run_script(*argv, "--labels", str(s["csv"]))
    assert code == 0, err
    assert (
        f"labels: {s['csv']}: {N} rows, {N} stored, 0 already stored, 0 for predictions not in the inference table"
        in out
    )
    assert "Estimated without labels (CBPE)" in out and "Realized over the labelled predictions" in out
    assert inference_table.recent_labelled(s["engine"], json.loads(s["card"].read_text())["model_version"], 10**6)[1]
    report = json.loads((s["out"] / "performance.json").read_text())
    day1, day2 = report["windows"]
    assert (day1["n"], day1["n_labelled"], day2["n_labelled"]) == (N, N, 0)
    assert report["source"]["label_counts"] == {"accepted": N, "duplicate": 0, "conflict": 0, "unknown": 0}
    again = run_script(*argv, "--labels", str(s["csv"]))
    assert again[0] == 0 and f"{N} rows, 0 stored, {N} already stored" in again[1]  # idempotent


def test_a_conflicting_label_stops_with_nothing_stored(served, tmp_path):
    s = served
    run_script(
        "--table",
        s["url"],
        "--card",
        str(s["card"]),
        "--bootstrap",
        "100",
        "--out-dir",
        str(s["out"]),
        "--labels",
        str(s["csv"]),
    )
    flipped = tmp_path / "flipped.csv"
    first, fresh = s["ids"][0], s["ids"][N]
    flipped.write_text(f"prediction_id,label\n{fresh},yes\n{first},{'no' if s['labels'][0] else 'yes'}\n")
    code, _, err = run_script("--table", s["url"], "--card", str(s["card"]), "--labels", str(flipped))
    assert code == 2 and f"{flipped}: line 3, column 'label': {first} is labelled" in err and "never overwritten" in err
    assert "nothing was stored" in err
    with s["engine"].connect() as conn:
        label = conn.execute(
            inference_table.sa.select(inference_table.C.label).where(inference_table.C.prediction_id == fresh)
        ).scalar_one()
    assert label is None


def test_no_arguments_read_the_table_beside_the_card_or_database_url(served, monkeypatch, tmp_path):
    s = served
    if s["url"].startswith("sqlite:///"):
        (tmp_path / "inference.db").exists() or pytest.fail("the SQLite fixture is inference.db beside the card")
    else:
        monkeypatch.setenv("DATABASE_URL", s["url"])
    monkeypatch.chdir(tmp_path)
    code, out, err = run_script("--bootstrap", "100", "--card", str(s["card"]))
    assert code == 0, err
    assert f"{2 * N} records of model" in out and "Estimated without labels (CBPE)" in out


def test_an_unreadable_table_is_one_line(tmp_path, served):
    s = served
    cases = [
        (["--table", str(tmp_path / "none.db")], f"error: {tmp_path / 'none.db'}: file not found"),
        (["--table", "mysql://u:secret@db/x"], "error: --table: the database URL is a 'mysql' URL"),
        (
            ["--table", "postgresql://u:secret@127.0.0.1:1/x"],
            "error: postgresql+psycopg://u:***@127.0.0.1:1/x: cannot be read",
        ),
        (["--table", s["url"], "--log", "x.jsonl"], "--table and --log are two sources"),
    ]
    for argv, message in cases:
        code, _, err = run_script(*argv, "--card", str(s["card"]))
        assert code == 2 and message in err and "secret" not in err and "Traceback" not in err, err
    empty = tmp_path / "empty.db"
    inference_table.migrate(inference_table.engine_for(f"sqlite:///{empty}"))
    code, _, err = run_script("--table", str(empty), "--card", str(s["card"]))
    assert code == 2 and "no predictions in the inference table yet" in err
