"""The inference table (heart/inference_table.py), each test once on SQLite and once on a real
PostgreSQL server the suite starts (tests/postgres.py): migrations under their lock, rows as the
server writes them, labels (accepted, duplicate, conflict, unknown; never overwritten, also when
two writers race), retention by age and by count, and the URLs it accepts."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from heart import inference_table as table
from heart.predlog import PredictionRecords, new_prediction_ids
from heart.schema import FEATURE_NAMES

CODED = dict(zip(FEATURE_NAMES, [63, 1, 3, 145.0, 233.0, 1, 0, 150.0, 0, 2.3, 0, 0, 1]))


def records(n: int, version: str = "v1", ids=None, inputs=True, when="2026-05-01T10:00:00.123+00:00"):
    ids = ids or new_prediction_ids(n)
    return PredictionRecords(
        timestamp=when,
        trace_id="a" * 32,
        span_id="b" * 16,
        model_version=version,
        latency_ms=0.1,
        inputs=[{**CODED, "chol": None} for _ in ids] if inputs else None,
        imputed=[["chol"] for _ in ids],
        predicted_class=[i % 2 for i in range(len(ids))],
        probability=[round(0.1 + 0.8 * i / max(1, len(ids) - 1), 6) for i in range(len(ids))],
        prediction_id=ids,
    )


def id_at(when: datetime) -> str:
    """A prediction id of another time: the clock part replaced (retention works on the key)."""
    return f"{int(when.timestamp() * 1000):012x}" + new_prediction_ids(1)[0][12:]


@pytest.fixture
def engine(database_url):
    engine = table.engine_for(database_url)
    table.migrate(engine)
    yield engine
    engine.dispose()


def write(engine, batch) -> None:
    with engine.begin() as conn:
        table.insert(conn, table.rows_of(batch))


def test_migrations_run_once_when_many_start_together(database_url):
    """Eight workers starting at once: every one ends at the newest revision, the table made once."""
    results, errors = [], []

    def start():
        engine = table.engine_for(database_url)
        try:
            results.append(table.migrate(engine))
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and results == ["0001"] * 8
    engine = table.engine_for(database_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
    assert table.count_rows(engine) == 0
    engine.dispose()


def test_head_revision_is_the_newest_migration_and_a_migrated_database_skips_alembic(engine):
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(table.MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == table.HEAD_REVISION
    assert table.current_revision(engine) == table.HEAD_REVISION
    with engine.begin() as conn:  # a database one revision behind: migrate() applies it again
        conn.execute(sa.text("DROP TABLE predictions"))
        conn.execute(sa.text("DELETE FROM alembic_version"))
    assert table.current_revision(engine) is None
    assert table.migrate(engine) == table.HEAD_REVISION and table.count_rows(engine) == 0


def test_the_migrated_schema_is_the_table_the_code_uses(engine):
    """Alembic's own comparison: the revision's table and heart.inference_table's agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), table.metadata)
    assert diffs == []


def test_rows_read_back_as_written(engine):
    with_inputs, without = records(3), records(2, version="v2", inputs=False)
    write(engine, with_inputs)
    write(engine, without)
    rows = [row for part in table.read_predictions(engine) for row in part]
    assert [r[0] for r in rows] == sorted(with_inputs.prediction_id + without.prediction_id)
    first = next(r for r in rows if r[0] == with_inputs.prediction_id[0])
    assert first[1] == datetime(2026, 5, 1, 10, 0, 0, 123000, tzinfo=UTC)
    assert first[2:] == ("v1", 0.1, 0, None)
    with engine.connect() as conn:
        stored = dict(
            conn.execute(sa.select(*table.predictions.c).where(table.C.prediction_id == first[0])).mappings().one()
        )
        assert {n: stored[n] for n in FEATURE_NAMES} == {**CODED, "chol": None}
        assert stored["trace_id"] == "a" * 32 and stored["label"] is None
        no_inputs = conn.execute(sa.select(table.C.age).where(table.C.model_version == "v2")).scalars().all()
    assert no_inputs == [None, None]  # LOG_INPUTS=false: the table holds no health data either


def test_labels_are_accepted_once_and_never_overwritten(engine):
    batch = records(3)
    a, b, c = batch.prediction_id
    write(engine, batch)
    stranger = new_prediction_ids(1)[0]
    got = table.store_labels(engine, [(a, 1), (a, 1), (b, 0), (b, 1), (stranger, 1)])
    assert [(o.prediction_id, o.status, o.stored_label) for o in got] == [
        (a, "accepted", None),
        (a, "duplicate", 1),  # the same id twice in one request: the first counts
        (b, "accepted", None),
        (b, "conflict", 0),
        (stranger, "unknown", None),
    ]
    again = table.store_labels(engine, [(a, 1), (b, 1), (c, 1)])
    assert [o.status for o in again] == ["duplicate", "conflict", "accepted"]
    assert table.count_statuses(got + again) == {"accepted": 3, "duplicate": 2, "conflict": 2, "unknown": 1}
    with engine.connect() as conn:
        stored = dict(conn.execute(sa.select(table.C.prediction_id, table.C.label)).all())
        labelled_at = conn.execute(sa.select(table.C.labelled_at).where(table.C.prediction_id == a)).scalar_one()
    assert stored == {a: 1, b: 0, c: 1}
    assert labelled_at is not None


def test_all_or_nothing_writes_nothing_when_one_label_conflicts(engine):
    batch = records(2)
    a, b = batch.prediction_id
    write(engine, batch)
    table.store_labels(engine, [(a, 1)])
    with pytest.raises(table.LabelConflict) as e:
        table.store_labels(engine, [(b, 0), (a, 0)], all_or_nothing=True)
    assert [o.status for o in e.value.outcomes] == ["accepted", "conflict"]
    assert table.recent_labelled(engine, "v1", 10) == ([0.1], [1])  # b was not stored


def test_two_writers_racing_on_the_same_ids_never_overwrite(engine):
    """Two workers get opposite labels for the same 200 predictions at the same moment: each id
    ends with exactly one of them, accepted once; the other is a conflict, never an overwrite."""
    batch = records(200)
    write(engine, batch)
    outcomes, start = {}, threading.Barrier(2)

    def label(value):
        start.wait()
        outcomes[value] = table.store_labels(engine, [(pid, value) for pid in batch.prediction_id])

    threads = [threading.Thread(target=label, args=(v,)) for v in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    with engine.connect() as conn:
        stored = dict(conn.execute(sa.select(table.C.prediction_id, table.C.label)).all())
    for i, pid in enumerate(batch.prediction_id):
        mine = {v: outcomes[v][i].status for v in (0, 1)}
        assert sorted(mine.values()) == ["accepted", "conflict"], (pid, mine)
        winner = next(v for v, s in mine.items() if s == "accepted")
        assert stored[pid] == winner


def test_recent_labelled_is_the_newest_of_the_served_model(engine):
    now = datetime.now(UTC)
    old = records(3, ids=[id_at(now - timedelta(hours=1, seconds=3 - i)) for i in range(3)])
    new = records(3, ids=[id_at(now - timedelta(seconds=3 - i)) for i in range(3)])
    other = records(2, version="v2")
    for batch in (old, new, other):
        write(engine, batch)
    everything = old.prediction_id + new.prediction_id + other.prediction_id
    table.store_labels(engine, [(pid, 1) for pid in everything])
    probability, labels = table.recent_labelled(engine, "v1", 4)
    assert labels == [1] * 4
    assert probability == new.probability[::-1] + [old.probability[2]]  # newest first, v2 left out


def test_retention_deletes_by_age_and_keeps_the_newest_rows(engine, monkeypatch):
    now = datetime.now(UTC)
    ages = {10: 5, 100: 4, 200: 3}  # days old: how many rows
    for days, n in ages.items():
        write(engine, records(n, ids=[id_at(now - timedelta(days=days, minutes=i)) for i in range(n)]))
    recent = records(6)
    write(engine, recent)
    monkeypatch.setattr(table, "DELETE_CHUNK", 2)  # several transactions, as on a big table
    assert table.apply_retention(engine, days=90, max_rows=0, now=now) == 7
    assert table.count_rows(engine) == 11
    assert table.apply_retention(engine, days=90, max_rows=0, now=now) == 0  # nothing more to do
    assert table.apply_retention(engine, days=0, max_rows=8, now=now) == 3
    left = {row[0] for part in table.read_predictions(engine) for row in part}
    assert left == set(recent.prediction_id) | set(sorted(left)[:2]) and len(left) == 8
    assert min(left) > id_at(now - timedelta(days=11))  # the oldest left are the 10-day-old ones
    assert table.apply_retention(engine, days=0, max_rows=8, now=now) == 0


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:secret@db:5432/heart", "postgresql+psycopg://u:***@db:5432/heart"),
        ("postgres://u:secret@db/heart", "postgresql+psycopg://u:***@db/heart"),
        ("postgresql+psycopg://u@db/heart", "postgresql+psycopg://u@db/heart"),
        ("sqlite:////var/lib/heart/inference.db", "sqlite:////var/lib/heart/inference.db"),
    ],
)
def test_urls_it_takes(url, expected):
    assert table.display(table.normalised_url(url)) == expected


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("postgresql+psycopg2://u:secret@db/heart", "names the driver 'psycopg2'"),
        ("mysql://u:secret@db/heart", "is a 'mysql' URL"),
        ("sqlite://", "in-memory"),
        ("sqlite:///:memory:", "in-memory"),
        ("not a url", "is not a database URL"),
        ("postgresql://u:secret@db:notaport/heart", "is not a database URL"),
    ],
)
def test_urls_it_refuses_say_why_without_the_password(url, why):
    with pytest.raises(ValueError) as e:
        table.normalised_url(url)
    assert why in str(e.value) and "secret" not in str(e.value)


def test_a_sqlite_table_is_its_owners_only_and_a_long_read_never_blocks_the_writer(tmp_path):
    """Health data: the file is created 0600. A reader holding its snapshot (monitor_performance.py on
    a big table) does not stop the server's writes, which would otherwise wait on its lock."""
    import stat

    engine = table.engine_for(f"sqlite:///{tmp_path / 'inference.db'}")
    table.migrate(engine)
    assert stat.S_IMODE((tmp_path / "inference.db").stat().st_mode) == 0o600
    write(engine, records(3))
    with table.reading(engine) as reader:
        reader.execute(sa.select(table.C.prediction_id)).first()  # the read transaction is open
        started = time.monotonic()
        write(engine, records(2))
        assert time.monotonic() - started < 1
    assert table.count_rows(engine) == 5
    engine.dispose()
