"""Time one volume evaluation of a table (`monitors.anomalies.volume_judge`) on Pulse's own database.

Usage: .venv/bin/python benchmarks/volume_judge_speed.py [--tables 40] [--days 14] [--retention-days 90]
           [--rounds 6] [--batch 10] [--database pulse_bench_volume_judge] [--profile]
           [--now 2026-11-30T05:00+00:00 --verdicts before.json]

Setup (a throwaway database on 127.0.0.1:5432, dropped at the end): `--tables` tables with a timestamp column,
each with `--days` of hourly volume results of its series (the training window), and, like a real deployment,
`--retention-days` of older volume, freshness and schema results in the weekly partitions (one of each kind per
hour), so the query meets every partition retention keeps. Then `--rounds` hours: each hour every table's new
bucket is judged by `volume_judge` (one table per call: the per-table figure; and once per batch of `--batch`
tables, as runchecks judges a batch) and recorded by `results_record`, the path runchecks takes. Every judged
value is far from its table's usual level, so each first judgement also reads the run of buckets that may confirm
a level shift (with more than 6 rounds, the sixth accepts one).

Prints, per table: wall time median/p95 of the `volume_judge` call (Pulse's round trips included), the process's
CPU time median/p95 (load-independent), Pulse queries per call, and the server's planning + execution time of each
query (EXPLAIN ANALYZE of the statements of the last one-table round's first call, run before its result is
recorded, as that call found the database), plus the load average. `--verdicts FILE` writes every judged outcome,
and `--now` fixes the hours judged, so that two codes can be compared verdict by verdict (`cmp` of the files).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import secrets
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

PULSE_SERVER = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
HOUR = timedelta(hours=1)
TARGET_MS = 10.0


def setup_django(database: str) -> None:
    from cryptography.fernet import Fernet

    os.environ["DJANGO_SETTINGS_MODULE"] = "pulse_project.settings"
    os.environ["PULSE_DATABASE_URL"] = "postgres://{user}@{host}:{port}/".format(**PULSE_SERVER) + database
    os.environ["PULSE_DEBUG"] = "off"
    os.environ.setdefault("PULSE_SECRET_KEY", secrets.token_urlsafe(50))
    os.environ.setdefault("PULSE_ENCRYPTION_KEY", Fernet.generate_key().decode())
    with psycopg.connect(**PULSE_SERVER, dbname="postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {database}")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


_POPULATE = """
INSERT INTO monitors_checkresult (
    connection_id, table_id, kind, status, observed_value, message, started_at, duration_ms, queries_used,
    bucket_start, series, details, is_anomaly, marked_expected
)
SELECT %(connection)s, t.id, k.kind, %(status)s,
       CASE k.kind WHEN 'volume' THEN 500 + 300 * (extract(hour FROM b)::int BETWEEN 8 AND 19)::int
                                      + (t.id * 7 + extract(hour FROM b)::int * 13) %% 41
                   WHEN 'freshness' THEN 120 END,
       '', b + interval '1 hour', 3, 1,
       CASE k.kind WHEN 'volume' THEN b END, CASE k.kind WHEN 'volume' THEN %(key)s ELSE '' END,
       CASE k.kind WHEN 'volume' THEN jsonb_build_object('judged', true, 'series', %(key)s) ELSE '{}' END,
       false, false
FROM unnest(%(ids)s::bigint[]) AS t(id)
CROSS JOIN generate_series(%(oldest)s::timestamptz, %(now)s::timestamptz - interval '1 hour', interval '1 hour') AS b
CROSS JOIN (VALUES ('volume'), ('freshness'), ('schema_change')) AS k(kind)
"""


def populate(*, tables: int, days: int, retention_days: int, now: datetime):
    """The tables and their stored results; returns (connection, tables)."""
    from django.contrib.auth.models import Group
    from django.db import connection as pulse_db

    from connections.models import Connection
    from monitors.checks import Status
    from monitors.checks.volume import series_key
    from monitors.models import MonitoredTable
    from monitors.results import result_partitions_ensure

    oldest = now - timedelta(days=max(days, retention_days))
    result_partitions_ensure(now=oldest, weeks_ahead=(now - oldest).days // 7 + 3)
    connection = Connection(
        name="bench", team=Group.objects.create(name="bench"), host="127.0.0.1", database="x", username="x"
    )
    connection.set_password("x")
    connection.save()
    key = series_key("created_at", HOUR)
    made = [
        MonitoredTable.objects.create(
            connection=connection,
            table_name=f"t{index}",
            timestamp_column="created_at",
            backfilled_at=oldest,
            volume_series=key,
            volume_bucket_seconds=3600,
        )
        for index in range(tables)
    ]
    with pulse_db.cursor() as cursor:
        cursor.execute(
            _POPULATE,
            {
                "ids": [t.id for t in made],
                "connection": connection.id,
                "key": key,
                "oldest": oldest,
                "now": now,
                "status": Status.PASS,
            },
        )
    with psycopg.connect(**PULSE_SERVER, dbname=os.environ["PULSE_DATABASE_URL"].rsplit("/", 1)[1]) as conn:
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")  # as autovacuum will have done on weeks-old rows
    return connection, made


class QueryLog:
    """The SQL statements (with parameters) sent to Pulse's database while it is installed: Django's, and those
    of the raw binary cursors `monitors.database.binary_cursor` gives."""

    current: QueryLog | None = None

    def __init__(self) -> None:
        self.statements: list[tuple[str, object]] = []

    def __call__(self, execute, sql, params, many, context):
        self.statements.append((sql, params))
        return execute(sql, params, many, context)

    def __enter__(self):
        QueryLog.current = self
        return self

    def __exit__(self, *exc) -> None:
        QueryLog.current = None


class LoggedCursor(psycopg.Cursor):
    """The cursor `monitors.database.binary_cursor` gives, with its statements added to the installed QueryLog."""

    def execute(self, query, params=None, **kwargs):
        if QueryLog.current is not None:
            QueryLog.current.statements.append((query, params))
        return super().execute(query, params, **kwargs)


def logged_binary_cursor() -> LoggedCursor:
    """What `monitors.database.binary_cursor` gives, logged."""
    from django.db import connection as pulse_db

    pulse_db.ensure_connection()
    return LoggedCursor(pulse_db.connection)


def explain(statements) -> list[tuple[float, float, int, str]]:
    """(planning ms, execution ms, shared buffers, first words) of each SELECT, from EXPLAIN (ANALYZE, BUFFERS)
    on Pulse's database."""
    from django.db import connection as pulse_db

    figures = []
    for text, params in statements:
        if not text.lstrip().upper().startswith(("SELECT", "WITH")):
            continue
        with psycopg.Cursor(pulse_db.connection) as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + text, params)
            plan = cursor.fetchone()[0]
        plan = plan[0] if isinstance(plan, list) else plan
        buffers = plan["Plan"].get("Shared Hit Blocks", 0) + plan["Plan"].get("Shared Read Blocks", 0)
        figures.append((plan["Planning Time"], plan["Execution Time"], buffers, " ".join(text.split()[:6])[:70]))
    return figures


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[int(share * (len(ordered) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, default=40)
    parser.add_argument("--days", type=int, default=14, help="days of hourly volume history (the training window)")
    parser.add_argument("--retention-days", type=int, default=90, help="days of results kept in the partitions")
    parser.add_argument("--rounds", type=int, default=6, help="hours judged")
    parser.add_argument("--batch", type=int, default=10, help="tables per volume_judge call in batch mode")
    parser.add_argument("--database", default="pulse_bench_volume_judge")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards (to inspect plans)")
    parser.add_argument("--profile", action="store_true", help="print cProfile's top functions of the per-table calls")
    parser.add_argument(
        "--now",
        type=datetime.fromisoformat,
        help="the hour judged last (ISO, UTC; default: this hour), to compare codes",
    )
    parser.add_argument(
        "--verdicts",
        type=Path,
        help="write every judged outcome (status, band, message, details) to this JSON file, to compare two codes",
    )
    args = parser.parse_args()
    setup_django(args.database)
    from django.db import connection as pulse_db
    from django.db import connections

    from monitors import anomalies
    from monitors.anomalies import volume_judge
    from monitors.checks import Outcome, Status
    from monitors.models import MonitoredTable
    from monitors.recording import TableRun, results_ignore, results_record

    anomalies.binary_cursor = logged_binary_cursor  # count its statements too (the judging path is unchanged)
    last = (args.now or datetime.now(UTC)).astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    now = last - timedelta(hours=args.rounds)
    began = time.perf_counter()
    connection, tables = populate(tables=args.tables, days=args.days, retention_days=args.retention_days, now=now)
    print(f"setup: {args.tables} tables, {args.retention_days} days of results, {time.perf_counter() - began:.0f} s")

    def new_run(table, bucket):
        table.refresh_from_db()
        outcome = Outcome(
            kind="volume",
            status=Status.PASS,
            observed_value=float(650 + table.id % 17),
            bucket_start=bucket,
            message="rows",
            details={"series": table.volume_series, "bucket_seconds": 3600},
        )
        return TableRun(table=table, outcomes=[outcome])

    def record(runs, bucket):
        token = uuid.uuid4()
        MonitoredTable.objects.filter(pk__in=[r.table.pk for r in runs]).update(lease_token=token)
        results_record(
            connection=connection,
            token=token,
            runs=runs,
            connection_outcomes=[],
            started_at=bucket + HOUR,
            on_recorded=results_ignore,
        )

    verdicts = []

    def keep(runs, bucket):
        for run in runs:
            outcome = run.outcomes[0]
            verdicts.append(
                {
                    "table": run.table.table_name,
                    "bucket": bucket.isoformat(),
                    "status": outcome.status,
                    "is_anomaly": outcome.is_anomaly,
                    "expected": [outcome.expected_lower, outcome.expected_upper],
                    "message": outcome.message,
                    "details": outcome.details,
                }
            )

    wall, cpu, queries = [], [], []
    batch_wall, batch_cpu = [], []
    sample = None  # EXPLAIN of the statements of the last round's first call, before its result is recorded
    profiler = cProfile.Profile() if args.profile else None
    for round_index in range(args.rounds):
        bucket = now + round_index * HOUR
        if round_index % 2 == 0:  # one table per call
            for table in tables:
                run = new_run(table, bucket)
                log = QueryLog()
                with pulse_db.execute_wrapper(log), log:
                    wall_began, cpu_began = time.perf_counter(), time.process_time()
                    if profiler:
                        profiler.runcall(volume_judge, runs=[run])
                    else:
                        volume_judge(runs=[run])
                    cpu.append((time.process_time() - cpu_began) * 1000)
                    wall.append((time.perf_counter() - wall_began) * 1000)
                queries.append(len(log.statements))
                if table is tables[0]:
                    sample = explain(log.statements)
                keep([run], bucket)
                record([run], bucket)
        else:  # a batch of tables per call, as runchecks judges a batch
            for first in range(0, len(tables), args.batch):
                runs = [new_run(table, bucket) for table in tables[first : first + args.batch]]
                wall_began, cpu_began = time.perf_counter(), time.process_time()
                volume_judge(runs=runs)
                batch_cpu.append((time.process_time() - cpu_began) * 1000 / len(runs))
                batch_wall.append((time.perf_counter() - wall_began) * 1000 / len(runs))
                keep(runs, bucket)
                record(runs, bucket)
    if args.verdicts:
        args.verdicts.write_text(json.dumps(verdicts, indent=1, sort_keys=True, default=str))
    load = os.getloadavg()
    print(f"command: .venv/bin/python benchmarks/volume_judge_speed.py {' '.join(sys.argv[1:])}".rstrip())
    print(f"load average (1, 5, 15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(
        f"volume_judge, one table per call ({len(wall)} calls): wall median {statistics.median(wall):.2f} ms, "
        f"p95 {percentile(wall, 0.95):.2f} ms; CPU median {statistics.median(cpu):.2f} ms, "
        f"p95 {percentile(cpu, 0.95):.2f} ms; {statistics.median(queries):.0f} queries per call"
    )
    if batch_wall:
        print(
            f"volume_judge, {args.batch} tables per call, per table ({len(batch_wall)} calls): wall median "
            f"{statistics.median(batch_wall):.2f} ms, p95 {percentile(batch_wall, 0.95):.2f} ms; CPU median "
            f"{statistics.median(batch_cpu):.2f} ms, p95 {percentile(batch_cpu, 0.95):.2f} ms"
        )
    for planning, execution, buffers, words in sample or []:
        print(f"  server: planning {planning:.2f} ms, execution {execution:.2f} ms, {buffers} buffers: {words}…")
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
    verdict = "met" if percentile(wall, 0.95) < TARGET_MS else "missed"
    print(f"target: one evaluation of a table < {TARGET_MS:g} ms (p95, one table per call): {verdict}")
    connections.close_all()
    if args.keep:
        return
    with psycopg.connect(**PULSE_SERVER, dbname="postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {args.database} WITH (FORCE)")


if __name__ == "__main__":
    main()
