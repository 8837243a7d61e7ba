"""Helpers for tests that run `manage.py` commands (runchecks and others) as real processes (not a test module)."""

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from django.db import connection as pulse_db
from psycopg import sql

from pulse_project.pgcluster import PG_BIN

ROOT = Path(__file__).resolve().parents[2]


def pulse_test_database_url() -> str:
    db = pulse_db.settings_dict
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def manage(*args, **env) -> subprocess.CompletedProcess:
    """`manage.py <args>` in a fresh process with only the PULSE_ variables given (none of the test run's)."""
    base = {key: value for key, value in os.environ.items() if not key.startswith("PULSE_")}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=60
    )


def start_runchecks(*args, database_url: str | None = None, env: dict | None = None) -> subprocess.Popen:
    """A `manage.py runchecks` process on Pulse's test database (or `database_url`).

    Its output goes to a temporary file (a pipe read only at the end could fill up and block it while a
    fault makes it log); `finish` and `stop` return it."""
    log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed by finish/stop)
    process = subprocess.Popen(
        [sys.executable, "manage.py", "runchecks", *args],
        cwd=ROOT,
        env={
            **os.environ,
            "PULSE_DATABASE_URL": database_url or pulse_test_database_url(),
            "PYTHONUNBUFFERED": "1",
            "PULSE_WEBHOOK_ALLOW_PRIVATE": "true",  # test receivers listen on 127.0.0.1
            "PULSE_CONNECTION_ALLOW_LOCAL": "on",  # test replicas listen on 127.0.0.1
            **(env or {}),
        },
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    process.log = log
    return process


def _output(process: subprocess.Popen) -> str:
    process.log.seek(0)
    out = process.log.read()
    process.log.close()
    return out


def wait_for(condition, timeout=30.0, interval=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return False


def finish(process: subprocess.Popen, *, returncode: int = 0) -> str:
    """Wait for a `--once` run to end by itself with `returncode` (0 all passed, 1 failed, 2 could not run)."""
    process.wait(timeout=120)
    out = _output(process)
    assert process.returncode == returncode, out
    return out


def stop(process: subprocess.Popen) -> str:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    return _output(process) if not process.log.closed else ""


def pulse_sessions_waiting_on_a_lock(server) -> int:
    """Pulse's sessions on a replica server that are blocked waiting for a lock (a batch held in flight)."""
    with server.connect() as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pulse' AND wait_event_type = 'Lock'"
        ).fetchone()[0]


class TableLock:
    """ACCESS EXCLUSIVE on a table of the primary, in an open transaction: once replayed, reads of that
    table on the standby block until `release()`. A control event that holds a batch in flight."""

    def __init__(self, pair, dbname: str, table: str):
        self.pair = pair
        self.conn = psycopg.connect(**pair.primary.dsn(dbname=dbname))
        self.conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(table)))
        with pair.primary.connect() as other:
            other.execute("SELECT pg_current_xact_id()")  # a commit flushes the WAL, the lock's record with it
        with pair.standby.connect(dbname) as standby:  # wait until the standby replayed the lock
            replayed = wait_for(
                lambda: standby.execute(
                    "SELECT count(*) FROM pg_locks WHERE mode = 'AccessExclusiveLock' AND relation = %s::regclass",
                    [table],
                ).fetchone()[0],
                timeout=30,
                interval=0.05,
            )
        assert replayed, f"the standby did not replay the lock on {table}"

    def release(self) -> None:
        if not self.conn.closed:
            self.conn.rollback()
            self.conn.close()
            with self.pair.primary.connect() as other:
                other.execute("SELECT pg_current_xact_id()")  # flushes the WAL, the rollback's record with it


def pulse_database_clone(server) -> str:
    """Copy Pulse's test database (schema and committed rows) into `server`; returns its database URL.

    Fault tests restart or stop Pulse's database: they run daemons on such a copy, on a throwaway server,
    never on the shared one."""
    db = pulse_db.settings_dict
    with server.connect() as conn:
        conn.execute("CREATE DATABASE pulse")
    source = ["-h", db["HOST"] or "127.0.0.1", "-p", str(db["PORT"] or 5432), "-U", db["USER"]]
    target = ["-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres", "-d", "pulse"]
    dump = subprocess.run(
        [str(PG_BIN / "pg_dump"), *source, "-Fc", db["NAME"]],
        capture_output=True,
        check=True,
    )
    subprocess.run(
        [str(PG_BIN / "pg_restore"), *target, "--no-owner"],
        input=dump.stdout,
        capture_output=True,
        check=True,
    )
    return f"postgres://postgres@127.0.0.1:{server.port}/pulse"


def query(database_url: str, sql: str, params=()) -> list[tuple]:
    """Read Pulse's tables in a database the test's ORM does not point at."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()
