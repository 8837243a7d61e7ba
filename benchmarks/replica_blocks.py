"""Blocks a hot standby touches for Pulse's statements, per session and per table (load-independent figures).

Usage: .venv/bin/python benchmarks/replica_blocks.py [--tables 20] [--rows 50000]

A throwaway primary + hot standby pair (`pulse_project.pgcluster`) with --tables tables
`bench.tNN (id bigint, created_at timestamptz, payload text)` of --rows rows (one a minute back from now) and an
index on created_at, VACUUM (ANALYZE)d. Each case opens a new session on the standby with Pulse's session settings,
sends Pulse's own statement templates, and closes it; its blocks are blks_hit + blks_read of the data database in
the standby's pg_stat_database (flushed when the backend exits), read from another database. Printed: what a
session costs before its first table, what each further table costs cold (a backend that has not seen it) and
warm (a second pass in the same session), for the batch's set-based statements and for the per-table statements
they replace, and the floor of any check in a new backend: a statement that only names the table (`SELECT 1 FROM t
WHERE false`: planned, nothing read), which builds the backend's caches of the table, its indexes and statistics. Then the server time of the same statements (EXPLAIN ANALYZE: planning + execution, without the
client's round trips), with the load average beside it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pulse_project.settings")

import django  # noqa: E402

django.setup()

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

from connections import replica  # noqa: E402
from monitors.checks import base, volume  # noqa: E402
from monitors.checks.replication_lag import STATE_QUERY  # noqa: E402
from pulse_project.pgcluster import ReplicaPair  # noqa: E402

DATA_DB = "blocks"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", type=int, default=20)
    parser.add_argument("--rows", type=int, default=50_000)
    args = parser.parse_args()
    print(f"command: .venv/bin/python benchmarks/replica_blocks.py --tables {args.tables} --rows {args.rows}")
    pair = ReplicaPair.create()
    try:
        with pair.primary.connect() as conn:
            conn.execute(f"CREATE DATABASE {DATA_DB}")
        names = [f"t{i:02d}" for i in range(args.tables)]
        with pair.primary.connect(DATA_DB) as conn:
            conn.execute("CREATE SCHEMA bench")
            for name in names:
                conn.execute(f"CREATE TABLE bench.{name} (id bigint, created_at timestamptz, payload text)")
                conn.execute(
                    f"INSERT INTO bench.{name} SELECT g, now() - g * interval '1 minute', 'payload ' || g"
                    f" FROM generate_series(1, {args.rows}) g"
                )
                conn.execute(f"CREATE INDEX ON bench.{name} (created_at)")
        with pair.primary.connect(DATA_DB) as conn:
            conn.execute("VACUUM (ANALYZE)")
        pair.wait_for_replay(timeout=600)
        for _ in range(2):  # the standby writes its relcache init file once
            with pair.standby.connect(DATA_DB) as conn:
                conn.execute("SELECT 1")
        options = replica.session_options(statement_timeout_ms=5000)
        hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        bucket = (hour - timedelta(hours=1), hour)

        def blocks() -> int:
            time.sleep(1.3)
            with pair.standby.connect() as conn:
                conn.execute("SELECT pg_stat_clear_snapshot()")
                return conn.execute(
                    "SELECT blks_hit + blks_read FROM pg_stat_database WHERE datname = %s", (DATA_DB,)
                ).fetchone()[0]

        def session(statements) -> int:
            before = blocks()
            with psycopg.connect(**pair.standby.dsn(dbname=DATA_DB), options=options, autocommit=True) as conn:
                for query, params in statements:
                    conn.execute(query, params)
            return blocks() - before

        def catalog(tables):
            return base._BATCH_CATALOG, (["bench"] * len(tables), tables)

        def data(tables):
            parts = [
                sql.SQL(volume._PART_BUCKET).format(
                    number=sql.Literal(n), column=sql.Identifier("created_at"), relation=sql.Identifier("bench", t)
                )
                for n, t in enumerate(tables)
            ]
            return sql.SQL(" UNION ALL ").join(parts), [value for _ in tables for value in bucket]

        def per_table(tables):
            statements = []
            for t in tables:
                statements.append((base._CATALOG, ("bench", t)))
                query = sql.SQL(volume._BUCKET_COUNT).format(
                    relation=sql.Identifier("bench", t), column=sql.Identifier("created_at")
                )
                statements.append((query, bucket))
            return statements

        def naming(tables):
            """The floor of any check: a statement that only names each table (planned, nothing read)."""
            return [(sql.SQL("SELECT 1 FROM {} WHERE false").format(sql.Identifier("bench", t)), None) for t in tables]

        state = (STATE_QUERY, None)
        one, every = names[:1], names
        extra = len(names) - 1
        figures = {
            "a session, connected and closed": session([]),
            "+ the replica's state": session([state]),
            "+ the batch's catalog statement, 1 table": session([state, catalog(one)]),
            f"+ the batch's catalog statement, {len(names)} tables": session([state, catalog(every)]),
            "+ the batch's data statement, 1 table": session([state, catalog(one), data(one)]),
            f"+ the batch's data statement, {len(names)} tables": session([state, catalog(every), data(every)]),
            f"the batch's statements twice, {len(names)} tables": session(
                [state, catalog(every), data(every), catalog(every), data(every)]
            ),
            "per-table statements (before), 1 table": session([state, *per_table(one)]),
            f"per-table statements (before), {len(names)} tables": session([state, *per_table(every)]),
            "the floor: a statement naming the table, 1 table": session([state, *naming(one)]),
            f"the floor: a statement naming each table, {len(names)} tables": session([state, *naming(every)]),
        }
        for label, value in figures.items():
            print(f"  {label:<55} {value:>7,} blocks")
        batch_one = figures["+ the batch's data statement, 1 table"]
        batch_all = figures[f"+ the batch's data statement, {len(names)} tables"]
        twice = figures[f"the batch's statements twice, {len(names)} tables"]
        before_one = figures["per-table statements (before), 1 table"]
        before_all = figures[f"per-table statements (before), {len(names)} tables"]
        print(f"  session before its second table (state + first statements' catalog caches): {batch_one:,} blocks")
        print(f"  each further table, cold (set-based): {(batch_all - batch_one) / extra:.1f} blocks")
        print(f"  each further table, cold (per-table statements): {(before_all - before_one) / extra:.1f} blocks")
        print(f"  each table, warm (second pass in the same session): {(twice - batch_all) / len(names):.1f} blocks")
        floor_one = figures["the floor: a statement naming the table, 1 table"]
        floor_all = figures[f"the floor: a statement naming each table, {len(names)} tables"]
        print(
            "  each further table, cold, the floor (a backend opening a table it has not seen, nothing read): "
            f"{(floor_all - floor_one) / extra:.1f} blocks"
        )

        def server_ms(conn, statement) -> float:
            """Planning + execution time of one statement on the server (EXPLAIN ANALYZE: runs it)."""
            query, params = statement
            plan = conn.execute(sql.SQL("EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) ") + query, params).fetchone()[0][0]
            return plan["Planning Time"] + plan["Execution Time"]

        print(f"server time (EXPLAIN ANALYZE: planning + execution), load average {os.getloadavg()[0]:.2f}:")
        rounds = []
        for _ in range(3):
            with psycopg.connect(**pair.standby.dsn(dbname=DATA_DB), options=options, autocommit=True) as conn:
                conn.execute(*state)
                cold = server_ms(conn, catalog(every)) + server_ms(conn, data(every))
                warm = server_ms(conn, catalog(every)) + server_ms(conn, data(every))
            with psycopg.connect(**pair.standby.dsn(dbname=DATA_DB), options=options, autocommit=True) as conn:
                conn.execute(*state)
                before = sum(server_ms(conn, statement) for statement in per_table(every))
            rounds.append((cold, warm, before))
        cold, warm, before = (sorted(r[i] for r in rounds)[1] for i in range(3))
        n = len(names)
        print(f"  set-based, new session: {cold:.2f} ms for {n} tables ({cold / n:.3f} ms/table)")
        print(f"  set-based, warm session: {warm:.2f} ms for {n} tables ({warm / n:.3f} ms/table)")
        print(f"  per-table statements, new session: {before:.2f} ms for {n} tables ({before / n:.3f} ms/table)")
        print("  (medians of 3; the client's round trips are not included)")
        return 0
    finally:
        pair.stop()


if __name__ == "__main__":
    sys.exit(main())
