"""A real PostgreSQL server for the inference table's tests, started by the suite itself.

pytest-postgresql's executor drives Debian's binaries (`make install-tools` installs the
`postgresql` package): initdb, then pg_ctl start on a free port with its socket and data in a
temporary directory. PostgreSQL refuses to run as root, so when the suite runs as root the
executor is given a two-line pg_ctl that drops to an unprivileged user (setpriv) and the
directory is that user's. Each test gets a database of its own (DatabaseJanitor), dropped after.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import tempfile
import uuid
from pathlib import Path

import port_for
import pytest
from pytest_postgresql.executors import PostgreSQLExecutor
from pytest_postgresql.janitor import DatabaseJanitor

UNPRIVILEGED = "nobody"  # who runs the server when the suite runs as root
USER = "postgres"


def pg_ctl() -> str:
    """Debian's pg_ctl (not on PATH there: /usr/lib/postgresql/<version>/bin), or the one on PATH."""
    found = shutil.which("pg_ctl") or next(
        iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)), None
    )
    if found is None:
        pytest.fail("PostgreSQL's pg_ctl not found: run `make install-tools` (it installs Debian's postgresql)")
    return found


def start() -> PostgreSQLExecutor:
    """A started server on 127.0.0.1 (trust authentication: it listens on loopback only)."""
    base = Path(tempfile.mkdtemp(prefix="heart-pg-"))
    executable = pg_ctl()
    if os.geteuid() == 0:
        user = pwd.getpwnam(UNPRIVILEGED)
        os.chown(base, user.pw_uid, user.pw_gid)
        wrapper = base / "pg_ctl"
        wrapper.write_text(
            f'#!/bin/sh\nexec setpriv --reuid={user.pw_uid} --regid={user.pw_gid} --clear-groups {executable} "$@"\n'
        )
        wrapper.chmod(0o755)
        executable = str(wrapper)
    executor = PostgreSQLExecutor(
        executable=executable,
        host="127.0.0.1",
        port=port_for.select_random(),
        datadir=str(base / "data"),
        unixsocketdir=str(base),
        logfile=str(base / "postgresql.log"),
        startparams="-w",
        dbname="heart",
        user=USER,
        postgres_options="-c fsync=off -c max_connections=200",
    )
    executor.base = base
    executor.start()
    return executor


def stop(executor: PostgreSQLExecutor) -> None:
    with contextlib.suppress(Exception):
        executor.stop()
    shutil.rmtree(executor.base, ignore_errors=True)


def url_of(executor: PostgreSQLExecutor, dbname: str) -> str:
    return f"postgresql://{USER}@{executor.host}:{executor.port}/{dbname}"


@contextlib.contextmanager
def database(executor: PostgreSQLExecutor):
    """A fresh, empty database on the server for one test: its URL."""
    name = "t_" + uuid.uuid4().hex[:12]
    with DatabaseJanitor(user=USER, host=executor.host, port=executor.port, dbname=name, password=None):
        yield url_of(executor, name)
