"""Where the inference table is: DATABASE_URL, else DATABASE_URL_FILE's URL, else the SQLite file.

Checked before any worker starts (exit 2 with one line, never the password): a URL that cannot
be a PostgreSQL or SQLite database, an empty URL file, a SQLite file that cannot be written. A
PostgreSQL server that does not answer is not checked here: the server starts and serves
without it (heart.serving.table_writer counts the delayed rows), as when it goes down later.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from .settings import Settings, SettingsError, read_secret_file


def sqlite_path(settings: Settings) -> Path:
    """INFERENCE_DB, or inference.db beside the model."""
    return (settings.inference_db or settings.model_path.parent / "inference.db").expanduser()


def table_url(settings: Settings) -> str:
    """The database URL (SQLAlchemy's form: postgresql+psycopg:// or sqlite:///). SQLAlchemy is
    imported only to check a URL that was given, not for the default SQLite file."""
    url, source = settings.database_url, "DATABASE_URL"
    path = settings.database_url_file
    if url is None and path is not None and path.exists():
        source = f"DATABASE_URL_FILE {path}"
        url = read_secret_file(path, "DATABASE_URL_FILE").strip()
        if not url:
            raise SettingsError(f"{source} is empty: give a postgresql:// URL, or remove the file")
    if url is None:
        return f"sqlite:///{sqlite_path(settings).resolve()}"
    from ..inference_table import normalised_url

    try:
        return normalised_url(url).render_as_string(hide_password=False)
    except ValueError as e:
        raise SettingsError(f"{source} {e}") from None


def check_sqlite_file(url: str) -> str | None:
    """Why a sqlite:/// URL's file cannot hold the table (None if it can): the file opened and the
    write lock taken and given back, as the writer will. A missing directory (never made: a
    mistyped path is said, not created), not a database file, a directory, a read-only place:
    each said here, at start, not as lost rows later."""
    if not url.startswith("sqlite:///"):
        return None
    path = Path(url.removeprefix("sqlite:///"))
    try:
        if not path.exists():  # health data: its owner's only, as heart.inference_table creates it
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        with sqlite3.connect(path, timeout=5) as conn:
            conn.isolation_level = None
            conn.execute("PRAGMA schema_version")  # reads the header: "file is not a database"
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
        conn.close()
    except (sqlite3.Error, OSError) as e:
        why = (
            "a parent is not a directory"
            if isinstance(e, (FileExistsError, NotADirectoryError))
            else f"its directory {path.parent} does not exist"
            if isinstance(e, FileNotFoundError)
            else str(e)
        )
        return f"{path}: cannot be written ({why})"
    return None
