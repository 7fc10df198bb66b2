"""The inference table: one row per served prediction, and its label once it comes back.

Every prediction record (heart.predlog) is also a row of `predictions`, written through
SQLAlchemy 2 Core to SQLite (a file: the default) or PostgreSQL (DATABASE_URL). Labels land in
the same row, joined by prediction_id, from POST /feedback or `monitor_performance.py
--labels`; a label is set once and never overwritten. The server writes (heart.serving.
table_writer), monitor_performance.py reads (heart.analyses.outcomes.read_table).

The schema is versioned by Alembic (heart/migrations/). migrate() applies it under a lock, so
several workers or pods starting together apply it once: PostgreSQL's transaction-level
advisory lock; on SQLite the write lock that every transaction here takes (BEGIN IMMEDIATE).

Ids are time-ordered (predlog.new_prediction_ids), so the primary key is also the time order:
retention deletes a key range, and "the most recent labelled predictions" is a backward scan of
a partial index holding the labelled rows only.
"""

from __future__ import annotations

import operator
import os
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event

from .predlog import PredictionRecords, id_floor
from .schema import FEATURE_NAMES

MIGRATIONS = Path(__file__).with_name("migrations")
HEAD_REVISION = "0001"  # the newest revision in migrations/versions (a test keeps them equal)
LOCK_KEY = 0x6865617274  # "heart": the advisory lock the migrations take on PostgreSQL
BUSY_SECONDS = 5.0  # how long a SQLite statement waits for another writer's lock
CONNECT_SECONDS = 3  # how long a PostgreSQL connection attempt may take
STATEMENT_MS = 10_000  # PostgreSQL: no statement of ours runs longer (a stuck lock is an error, not a hang)
IN_CHUNK = 500  # ids per IN (...) list
DELETE_CHUNK = 10_000  # rows per retention transaction: writers are never held up long
STATUSES = ("accepted", "duplicate", "conflict", "unknown")


class PredictionId(sa.types.TypeDecorator):
    """32 hex digits in Python; PostgreSQL's native uuid (16 bytes), CHAR(32) elsewhere."""

    impl = sa.Uuid
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return None if value is None else uuid.UUID(hex=value)

    def process_result_value(self, value, dialect):
        return None if value is None else value.hex


metadata = sa.MetaData()
predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("prediction_id", PredictionId(), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("model_version", sa.String(), nullable=False),
    sa.Column("trace_id", sa.String(32)),
    sa.Column("probability", sa.Float(), nullable=False),
    sa.Column("predicted_class", sa.SmallInteger(), nullable=False),
    *(sa.Column(name, sa.Float()) for name in FEATURE_NAMES),  # schema codes; NULL = imputed (or not logged)
    sa.Column("label", sa.SmallInteger()),
    sa.Column("labelled_at", sa.DateTime(timezone=True)),
    sa.Index(
        "predictions_labelled",
        "prediction_id",
        sqlite_where=sa.text("label IS NOT NULL"),
        postgresql_where=sa.text("label IS NOT NULL"),
    ),
    sqlite_with_rowid=False,
)
C = predictions.c


# ---------------------------------------------------------------------------------- location


def sqlite_url(path: str | Path) -> str:
    return f"sqlite:///{Path(path).expanduser().resolve()}"


def normalised_url(url: str) -> sa.engine.URL:
    """A URL this table can use: postgresql:// (or postgres://) through psycopg 3, the driver
    installed, or sqlite:///path. ValueError names what is wrong, never the password."""
    try:
        parsed = sa.engine.make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        raise ValueError("is not a database URL such as postgresql://user:password@host:5432/dbname") from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend in ("postgresql", "postgres"):
        if driver and driver != "psycopg":
            raise ValueError(f"names the driver {driver!r}: use postgresql:// (psycopg 3 is the one installed)")
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise ValueError("is an in-memory SQLite database: give a file, sqlite:////path/to/inference.db")
        return parsed
    raise ValueError(f"is a {backend!r} URL: the inference table runs on PostgreSQL or SQLite")


def display(url: str | sa.engine.URL) -> str:
    """The URL with its password hidden: for logs and messages."""
    return sa.engine.make_url(url).render_as_string(hide_password=True)


# ---------------------------------------------------------------------------------- engine


def engine_for(url: str | sa.engine.URL) -> sa.engine.Engine:
    """An engine with the settings this table relies on (see the module's docstring)."""
    url = normalised_url(str(url) if isinstance(url, str) else url.render_as_string(hide_password=False))
    if url.get_backend_name() == "sqlite":
        path = Path(url.database)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():  # health data: readable by its owner only (SQLite's -wal and -shm follow)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        engine = sa.create_engine(url, connect_args={"timeout": BUSY_SECONDS, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return sa.create_engine(
        url,
        pool_pre_ping=True,  # a connection from before a database restart is replaced, not used
        pool_size=2,
        max_overflow=4,
        pool_timeout=CONNECT_SECONDS,
        connect_args={
            "connect_timeout": CONNECT_SECONDS,
            "options": f"-c statement_timeout={STATEMENT_MS} -c lock_timeout={STATEMENT_MS // 2}",
            "application_name": "heart-disease-api",
        },
    )


def _sqlite_connect(dbapi_connection, _record) -> None:
    """pysqlite's own transaction handling off (SQLAlchemy's recipe), so that BEGIN IMMEDIATE is
    ours; WAL: readers never block the writer."""
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={int(BUSY_SECONDS * 1000)}")
    cursor.close()


def current_revision(engine: sa.engine.Engine) -> str | None:
    """The revision the database is at (None: no table yet), read without Alembic."""
    with reading(engine) as conn:
        try:
            return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        except sa.exc.DBAPIError as e:
            if e.connection_invalidated or isinstance(e, sa.exc.InterfaceError):
                raise
            return None  # no alembic_version table: a new database


def _sqlite_begin(conn: sa.engine.Connection) -> None:
    """Writers take the write lock at once (no deadlock between two upgrading readers); a read
    (execution option readonly) takes a snapshot and never holds up the server's writes."""
    conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("readonly") else "BEGIN IMMEDIATE")


def reading(engine: sa.engine.Engine) -> sa.engine.Connection:
    """A connection for reads only."""
    return engine.connect().execution_options(readonly=True)


def migrate(engine: sa.engine.Engine) -> str | None:
    """Bring the table to the newest revision, under the lock; the revision it is at afterwards.
    A database already at HEAD_REVISION (every start but the first) costs one query: Alembic is
    imported only when there is something to apply."""
    if current_revision(engine) == HEAD_REVISION:
        return HEAD_REVISION
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(LOCK_KEY)))
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
        return MigrationContext.configure(conn).get_current_revision()


# ---------------------------------------------------------------------------------- writing


def rows_of(batch: PredictionRecords) -> list[dict]:
    """The table's rows for one request's prediction records."""
    when = datetime.fromisoformat(batch.timestamp)
    blank = dict.fromkeys(FEATURE_NAMES)
    inputs = batch.inputs if batch.inputs is not None else [blank] * len(batch.prediction_id)
    head = {"created_at": when, "model_version": batch.model_version, "trace_id": batch.trace_id}
    return [
        {"prediction_id": pid, **head, "probability": p, "predicted_class": cls, **coded}
        for pid, p, cls, coded in zip(batch.prediction_id, batch.probability, batch.predicted_class, inputs)
    ]


ROW_KEYS = (
    "prediction_id",
    "created_at",
    "model_version",
    "trace_id",
    "probability",
    "predicted_class",
    *FEATURE_NAMES,
)
_INSERTS: dict[str, tuple[str, tuple[str, ...] | None]] = {}  # dialect -> (SQL, the order of positional params)
SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy stores a DateTime in SQLite (and reads it back)


def insert(conn: sa.engine.Connection, rows: list[dict]) -> None:
    """Insert rows_of's rows: the table's own INSERT, compiled once per dialect by SQLAlchemy,
    executed with the values already in the driver's types. A third of the cost of
    conn.execute(insert(), rows), whose per-row type processing was most of the writer's time."""
    dialect = conn.dialect
    if dialect.name not in _INSERTS:
        compiled = predictions.insert().compile(dialect=dialect, column_keys=list(ROW_KEYS))
        _INSERTS[dialect.name] = (str(compiled), compiled.positiontup)
    sql, order = _INSERTS[dialect.name]
    if dialect.name == "sqlite":  # ids stay hex (CHAR(32)); times as SQLAlchemy's text, in UTC
        get, at = operator.itemgetter(*order), order.index("created_at")
        texts: dict[int, str] = {}
        params = []
        for values in map(get, rows):
            t = values[at]
            text = texts.get(id(t)) or texts.setdefault(id(t), t.astimezone(UTC).strftime(SQLITE_TIME))
            params.append((*values[:at], text, *values[at + 1 :]))
    else:  # PostgreSQL: uuid values, aware times
        params = [{**r, "prediction_id": uuid.UUID(hex=r["prediction_id"])} for r in rows]
        if order is not None:
            params = [tuple(p[k] for k in order) for p in params]
    conn.exec_driver_sql(sql, params)


# ---------------------------------------------------------------------------------- labels


@dataclass(frozen=True)
class LabelOutcome:
    """What one given label did: accepted (stored), duplicate (the same label was there: nothing
    changed), conflict (another label is there: kept, never overwritten), unknown (no such prediction)."""

    prediction_id: str
    label: int
    status: str
    stored_label: int | None = None  # the label the table holds, for duplicate and conflict


class LabelConflict(Exception):
    """all_or_nothing and a label contradicts a stored one: nothing was written."""

    def __init__(self, outcomes: list[LabelOutcome]):
        super().__init__(f"{sum(o.status == 'conflict' for o in outcomes)} conflicting labels")
        self.outcomes = outcomes


def store_labels(
    engine: sa.engine.Engine, items: Iterable[tuple[str, int]], *, all_or_nothing: bool = False
) -> list[LabelOutcome]:
    """Each (prediction_id, label 0/1), in order, in one transaction: the rows are locked first
    (FOR UPDATE; on SQLite the transaction's write lock), so a label arriving at the same time on
    another worker or pod is seen, never overwritten. An id given twice: the first label counts,
    the second is a duplicate or a conflict. With all_or_nothing a conflict writes nothing
    (LabelConflict), as monitor_performance.py --labels does."""
    items = list(items)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        held = _held_labels(conn, {pid for pid, _ in items})
        outcomes, updates = [], []
        for pid, label in items:
            if pid not in held:
                outcomes.append(LabelOutcome(pid, label, "unknown"))
            elif held[pid] is None:
                held[pid] = label
                outcomes.append(LabelOutcome(pid, label, "accepted"))
                updates.append({"pid": pid, "new_label": label, "at": now})
            else:
                status = "duplicate" if held[pid] == label else "conflict"
                outcomes.append(LabelOutcome(pid, label, status, held[pid]))
        if all_or_nothing and any(o.status == "conflict" for o in outcomes):
            raise LabelConflict(outcomes)
        if updates:
            conn.execute(
                sa.update(predictions)
                .where(C.prediction_id == sa.bindparam("pid"), C.label.is_(None))
                .values(label=sa.bindparam("new_label"), labelled_at=sa.bindparam("at")),
                updates,
            )
    return outcomes


def _held_labels(conn: sa.engine.Connection, ids: set[str]) -> dict[str, int | None]:
    """prediction_id -> its label (None: none yet) for the ids the table holds, rows locked."""
    held: dict[str, int | None] = {}
    ordered = sorted(ids)  # one lock order for everyone: no deadlock between two batches
    for first in range(0, len(ordered), IN_CHUNK):
        query = sa.select(C.prediction_id, C.label).where(C.prediction_id.in_(ordered[first : first + IN_CHUNK]))
        if conn.dialect.name == "postgresql":
            query = query.order_by(C.prediction_id).with_for_update()
        held.update((pid, None if label is None else int(label)) for pid, label in conn.execute(query))
    return held


def count_statuses(outcomes: Iterable[LabelOutcome]) -> dict[str, int]:
    counts = dict.fromkeys(STATUSES, 0)
    for o in outcomes:
        counts[o.status] += 1
    return counts


# ---------------------------------------------------------------------------------- reading


def recent_labelled(engine: sa.engine.Engine, model_version: str, limit: int) -> tuple[list[float], list[int]]:
    """(probabilities, labels) of the `limit` most recent labelled predictions of one model."""
    query = (
        sa.select(C.probability, C.label)
        .where(C.label.is_not(None), C.model_version == model_version)
        .order_by(C.prediction_id.desc())
        .limit(limit)
    )
    with reading(engine) as conn:
        rows = conn.execute(query).all()
    return [float(p) for p, _ in rows], [int(y) for _, y in rows]


def read_predictions(engine: sa.engine.Engine, chunk: int = 50_000) -> Iterator[list[tuple]]:
    """Every row as (prediction_id, created_at UTC, model_version, probability, predicted_class,
    label or None), oldest first, in chunks: what the performance analysis reads."""
    columns = (C.prediction_id, C.created_at, C.model_version, C.probability, C.predicted_class, C.label)
    with reading(engine) as conn:
        result = conn.execution_options(yield_per=chunk).execute(sa.select(*columns).order_by(C.prediction_id))
        for part in result.partitions():
            yield [(pid, _utc(at), v, float(p), int(c), None if y is None else int(y)) for pid, at, v, p, c, y in part]


def _utc(when: datetime) -> datetime:
    """SQLite gives the stored UTC time back naive; PostgreSQL aware."""
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def count_rows(engine: sa.engine.Engine) -> int:
    with reading(engine) as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(predictions)).scalar_one())


# ---------------------------------------------------------------------------------- retention


def apply_retention(engine: sa.engine.Engine, days: float, max_rows: int, now: datetime | None = None) -> int:
    """Delete the rows older than `days` (0: no age limit) and all but the newest `max_rows` (0: no
    count limit), oldest first, DELETE_CHUNK rows per transaction; the number deleted."""
    deleted = 0
    if days:
        now = now or datetime.now(UTC)
        cutoff = id_floor(int((now - timedelta(days=days)).timestamp() * 1000))
        deleted += _delete_below(engine, cutoff, inclusive=False)
    if max_rows:
        with reading(engine) as conn:
            query = sa.select(C.prediction_id).order_by(C.prediction_id.desc()).offset(max_rows).limit(1)
            newest_excess = conn.execute(query).scalar()
        if newest_excess is not None:
            deleted += _delete_below(engine, newest_excess, inclusive=True)
    return deleted


def _delete_below(engine: sa.engine.Engine, bound: str, inclusive: bool) -> int:
    below = C.prediction_id <= bound if inclusive else C.prediction_id < bound
    doomed = sa.select(C.prediction_id).where(below).order_by(C.prediction_id).limit(DELETE_CHUNK)
    deleted = 0
    while True:
        with engine.begin() as conn:
            n = conn.execute(sa.delete(predictions).where(C.prediction_id.in_(doomed.scalar_subquery()))).rowcount
        deleted += n
        if n < DELETE_CHUNK:
            return deleted
