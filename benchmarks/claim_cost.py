"""What one claim costs Pulse's database with every table due: the claim of monitors/claims.py, and the claim
as it was before the due-order indexes (commit 02c0d97: ORDER BY a CASE over next_check_at NULLS FIRST, the
plain `table_due (next_check_at) WHERE is_active` index), on the same rows.

Usage: .venv/bin/python benchmarks/claim_cost.py [--database pulse_bench_reh_rehearsal] [--runs 5]

Runs on a database left by benchmarks/rehearsal_100k.py (its daemons stopped; at default settings nearly every
table is overdue at the end). Everything happens in transactions that are rolled back: `EXPLAIN (ANALYZE,
BUFFERS)` of the claim (a batch of 50, unforced); then, in another rolled-back transaction, the old index and
query. (Making every table due in the same transaction would leave a dead index entry per table for the scan
to step over: not the daemon's state.) Prints
the server's execution time and the shared buffers touched per claim (median of --runs).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

OLD_DUE = """{t}.is_active AND {c}.is_active AND {t}.status <> 'missing'
      AND ({t}.lease_expires_at IS NULL OR {t}.lease_expires_at < %(now)s)
      AND ({c}.backoff_until IS NULL OR {c}.backoff_until <= %(now)s)
      AND (%(force)s OR {t}.next_check_at IS NULL OR {t}.next_check_at <= %(now)s)
      AND (%(ids)s::bigint[] IS NULL OR {t}.id = ANY(%(ids)s::bigint[]))
      AND {t}.id > COALESCE((SELECT w.after_id FROM unnest(%(walked)s::bigint[], %(walked_to)s::bigint[])
                             AS w(connection_id, after_id) WHERE w.connection_id = {t}.connection_id), 0)
      AND NOT ({t}.connection_id = ANY(%(busy)s::bigint[]))"""
OLD_ORDER = "ORDER BY CASE WHEN %(force)s THEN NULL ELSE {t}.next_check_at END NULLS FIRST, {t}.id"
OLD_CLAIM = f"""
UPDATE monitors_monitoredtable SET lease_token = %(token)s, lease_expires_at = %(expires)s
WHERE id IN (
    SELECT t.id FROM monitors_monitoredtable t JOIN connections_connection c ON c.id = t.connection_id
    WHERE {OLD_DUE.format(t="t", c="c")}
      AND t.connection_id = (
        SELECT f.connection_id FROM monitors_monitoredtable f JOIN connections_connection fc ON fc.id = f.connection_id
        WHERE {OLD_DUE.format(t="f", c="fc")}
        {OLD_ORDER.format(t="f")}
        LIMIT 1
        FOR UPDATE OF f SKIP LOCKED
      )
    {OLD_ORDER.format(t="t")}
    LIMIT %(limit)s
    FOR UPDATE OF t SKIP LOCKED
)
RETURNING id, EXISTS (
    SELECT 1 FROM monitors_check ch WHERE ch.table_id = monitors_monitoredtable.id AND ch.is_active
)
"""


def explain(conn: psycopg.Connection, query: str, params: dict) -> tuple[float, int]:
    rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + query, params).fetchone()[0][0]
    plan = rows["Plan"]
    return rows["Execution Time"], plan.get("Shared Hit Blocks", 0) + plan.get("Shared Read Blocks", 0)


def measure(conn: psycopg.Connection, query: str, *, runs: int, setup: str = "") -> tuple[float, int, int]:
    now = datetime.now(UTC)
    params = {
        "token": uuid.uuid4(),
        "expires": now + timedelta(seconds=15),
        "now": now,
        "force": False,
        "ids": None,
        "walked": [],
        "walked_to": [],
        "busy": [],
        "limit": 50,
    }
    times, blocks = [], []
    with conn.transaction(force_rollback=True):
        if setup:
            conn.execute(setup)
        due = conn.execute(
            "SELECT count(*) FROM monitors_monitoredtable WHERE is_active AND next_check_at <= %s", [now]
        ).fetchone()[0]
        for _ in range(runs):
            with conn.transaction(force_rollback=True):
                ms, touched = explain(conn, query, params)
            times.append(ms)
            blocks.append(touched)
    return statistics.median(times), int(statistics.median(blocks)), due


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", default="pulse_bench_reh_rehearsal")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    import secrets

    from cryptography.fernet import Fernet

    os.environ.update(
        DJANGO_SETTINGS_MODULE="pulse_project.settings",
        PULSE_DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{args.database}",
        PULSE_DEBUG="off",
    )
    os.environ.setdefault("PULSE_SECRET_KEY", secrets.token_urlsafe(50))
    os.environ.setdefault("PULSE_ENCRYPTION_KEY", Fernet.generate_key().decode())
    import django

    django.setup()
    from monitors.claims import _CLAIM

    with psycopg.connect(host="127.0.0.1", port=5432, user="postgres", dbname=args.database) as conn:
        print(f"load average {os.getloadavg()}")
        ms, blocks, due = measure(conn, _CLAIM[False], runs=args.runs)
        print(f"claim now (due-order indexes): {ms:.1f} ms execution, {blocks:,} buffers; {due:,} tables due")
        ms, blocks, due = measure(
            conn,
            OLD_CLAIM,
            runs=args.runs,
            setup="DROP INDEX table_due; DROP INDEX table_due_per_connection;"
            " CREATE INDEX table_due ON monitors_monitoredtable (next_check_at) WHERE is_active",
        )
        print(f"claim before (02c0d97): {ms:.1f} ms execution, {blocks:,} buffers; {due:,} tables due")
    return 0


if __name__ == "__main__":
    sys.exit(main())
