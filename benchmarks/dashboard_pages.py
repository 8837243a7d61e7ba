"""Measure the dashboard's server time: the overview with 1,000 tables and a table page with 14 days of history.

Usage: .venv/bin/python benchmarks/dashboard_pages.py [--tables 1000] [--requests 60] [--debug]

Runs against a throwaway Pulse database `pulse_bench_dashboard` on 127.0.0.1:5432 (migrated here, dropped at
the end), with production settings (PULSE_DEBUG=off, throwaway keys) unless --debug.

Data, written with INSERT … SELECT generate_series (as runchecks would have left it):
- --tables tables over 5 connections of one team; every table has 14 days of hourly volume results (with
  bands) and hourly freshness results, and over the last 24 h the runs of a 5-minute interval (12 volume
  results per hourly bucket: the judgement and its repeats, and 12 freshness results per hour); one
  replication-lag result per connection every 30 s over the last 24 h. A tenth of the tables fail, with
  an open alert each.
- One more table for the table page: 14 days of 5-minute runs (4,032 volume and 4,032 freshness results).

Server time is the time of Django's test client `get` (URL routing, middleware, session and login, the
view's queries and the template): no network. After 5 warm-up requests, --requests timed requests per page;
wall-clock p50 and p95 are printed, and the p95 of the web process's own CPU time (time.process_time: Python
without the waits for PostgreSQL), which a machine shared with other work disturbs less.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BENCH_DB = "pulse_bench_dashboard"


def configure(debug: bool) -> None:
    os.environ["PULSE_DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{BENCH_DB}"
    os.environ["DJANGO_SETTINGS_MODULE"] = "pulse_project.settings"
    if not debug:
        os.environ["PULSE_DEBUG"] = "off"
        os.environ["PULSE_SECRET_KEY"] = "bench-" + "x" * 60
        os.environ["PULSE_ENCRYPTION_KEY"] = "cHVsc2UtZGV2ZWxvcG1lbnQtb25seS1mZXJuZXQta2U="
        os.environ["PULSE_SECURE_SSL_REDIRECT"] = "off"
        os.environ["PULSE_ALLOWED_HOSTS"] = "testserver"


def admin_sql(statement: str) -> None:
    import psycopg

    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres", autocommit=True) as conn:
        conn.execute(statement)


SEED = """
WITH t AS (SELECT id, connection_id FROM monitors_monitoredtable WHERE table_name LIKE 'bench%')
INSERT INTO monitors_checkresult (connection_id, table_id, kind, status, observed_value, expected_lower,
    expected_upper, message, started_at, duration_ms, queries_used, bucket_start, details, is_anomaly,
    marked_expected)
SELECT t.connection_id, t.id, 'volume', 'pass', 500 + 100 * sin(h), 400, 700, 'within the expected band',
    date_trunc('hour', now()) - make_interval(hours => h) + interval '61 minutes', 3, 1,
    date_trunc('hour', now()) - make_interval(hours => h + 1), '{"judged": true}'::jsonb, false, false
FROM t, generate_series(24, 14 * 24) h
UNION ALL
SELECT t.connection_id, t.id, 'volume', 'pass', 500 + 100 * sin(h), 400, 700, 'within the expected band',
    date_trunc('hour', now()) - make_interval(hours => h) + make_interval(mins => 5 * r + 1), 3, 1,
    date_trunc('hour', now()) - make_interval(hours => h + 1), '{"judged": true}'::jsonb, false, false
FROM t, generate_series(0, 23) h, generate_series(0, 11) r
UNION ALL
SELECT t.connection_id, t.id, 'freshness', 'pass', 300, NULL, 3600, 'newest row',
    date_trunc('hour', now()) - make_interval(hours => h) + interval '1 minute', 2, 1, NULL,
    jsonb_build_object('latest', date_trunc('hour', now()) - make_interval(hours => h) - interval '4 minutes',
        'learned_limit', 1800),
    false, false
FROM t, generate_series(24, 14 * 24) h
UNION ALL
SELECT t.connection_id, t.id, 'freshness', 'pass', 300, NULL, 3600, 'newest row',
    now() - make_interval(mins => 5 * m), 2, 1, NULL,
    jsonb_build_object('latest', now() - make_interval(mins => 5 * m + 5), 'learned_limit', 1800), false, false
FROM t, generate_series(0, 24 * 12 - 1) m
"""

SEED_LAG = """
INSERT INTO monitors_checkresult (connection_id, table_id, kind, status, observed_value, expected_upper, message,
    started_at, duration_ms, queries_used, details, is_anomaly, marked_expected)
SELECT c.id, NULL, 'replication_lag', 'pass', 2, 300, '', now() - make_interval(secs => 30 * s), 1, 1, '{}'::jsonb,
    false, false
FROM connections_connection c, generate_series(0, 24 * 120 - 1) s
"""

SEED_PAGE_TABLE = """
INSERT INTO monitors_checkresult (connection_id, table_id, kind, status, observed_value, expected_lower,
    expected_upper, message, started_at, duration_ms, queries_used, bucket_start, details, is_anomaly,
    marked_expected)
SELECT %(connection)s, %(table)s, 'volume', CASE WHEN m < 24 THEN 'fail' ELSE 'pass' END,
    CASE WHEN m < 24 THEN 0 ELSE 500 + 100 * sin(m / 12.0) END, 400, 700, 'volume',
    now() - make_interval(mins => 5 * m), 3, 1, date_trunc('hour', now() - make_interval(mins => 5 * m + 60)),
    '{"judged": true}'::jsonb, m < 24, false
FROM generate_series(0, 14 * 24 * 12 - 1) m
UNION ALL
SELECT %(connection)s, %(table)s, 'freshness', 'pass', 60 * (m %% 12), NULL, 3600, 'newest row',
    now() - make_interval(mins => 5 * m), 2, 1, NULL,
    jsonb_build_object('latest', now() - make_interval(mins => 5 * m + 5 * (m %% 12)), 'learned_limit', 1800),
    false, false
FROM generate_series(0, 14 * 24 * 12 - 1) m
"""


def seed(tables: int):
    from django.contrib.auth.models import Group, User
    from django.db import connection as db
    from django.utils import timezone

    from alerts.models import Alert
    from connections.models import Connection
    from monitors.models import MonitoredTable

    team = Group.objects.create(name="bench")
    user = User.objects.create_user("bench", password="bench-password-1")
    user.groups.add(team)
    connections = []
    for index in range(5):
        connection = Connection(name=f"replica-{index}", team=team, host="10.0.0.1", database="shop", username="u")
        connection.set_password("pw")
        connection.status = "ok"
        connection.save()
        connections.append(connection)
    now = timezone.now()
    rows = [
        MonitoredTable(
            connection=connections[i % 5],
            table_name=f"bench_{i:05d}",
            timestamp_column="created_at",
            status="failing" if i % 10 == 0 else "healthy",
            last_checked_at=now,
        )
        for i in range(tables)
    ]
    MonitoredTable.objects.bulk_create(rows)
    started = time.perf_counter()
    with db.cursor() as cursor:
        cursor.execute(SEED)
        cursor.execute(SEED_LAG)
    Alert.objects.bulk_create(
        Alert(connection=t.connection, table=t, kind="volume", opened_at=now, last_seen_at=now, message="drop")
        for t in MonitoredTable.objects.filter(status="failing").select_related("connection")
    )
    page_table = MonitoredTable.objects.create(
        connection=connections[0], table_name="page_table", timestamp_column="created_at", status="failing"
    )
    with db.cursor() as cursor:
        cursor.execute(SEED_PAGE_TABLE, {"connection": connections[0].pk, "table": page_table.pk})
        cursor.execute("VACUUM ANALYZE monitors_checkresult")
        cursor.execute("SELECT count(*) FROM monitors_checkresult")
        results = cursor.fetchone()[0]
    print(f"seeded {tables:,} tables and {results:,} results in {time.perf_counter() - started:.1f} s")
    return user, page_table


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * len(ordered)) - 1)]


def measure(client, url: str, requests: int) -> tuple[float, float, float, int]:
    """Wall-clock server time (p50, p95) and the web process's own CPU time (p95) per request, in ms."""
    for _ in range(5):
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
    walls, cpus = [], []
    for _ in range(requests):
        started, cpu_started = time.perf_counter(), time.process_time()
        response = client.get(url)
        walls.append((time.perf_counter() - started) * 1000)
        cpus.append((time.process_time() - cpu_started) * 1000)
        assert response.status_code == 200
    return statistics.median(walls), p95(walls), p95(cpus), len(response.content)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--debug", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the database (for profiling with --reuse)")
    parser.add_argument("--reuse", action="store_true", help="measure on the database a --keep run left")
    args = parser.parse_args()
    configure(args.debug)
    if not args.reuse:
        admin_sql(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        admin_sql(f"CREATE DATABASE {BENCH_DB}")
    try:
        import django

        django.setup()
        from django.core.management import call_command
        from django.test import Client

        if args.reuse:
            from django.contrib.auth.models import User

            from monitors.models import MonitoredTable

            user, page_table = User.objects.get(username="bench"), MonitoredTable.objects.get(table_name="page_table")
        else:
            call_command("migrate", verbosity=0)
            user, page_table = seed(args.tables)
        client = Client()
        client.force_login(user)
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
        print(f"commit {commit.stdout.strip()}, load average {os.getloadavg()[0]:.1f}, "
              f"PULSE_DEBUG={'on' if args.debug else 'off'}")
        pages = [
            (f"overview, {args.tables:,} tables", "/", 150),
            ("table page, 14 days of 5-minute runs", f"/tables/{page_table.pk}/", 80),
            (f"live endpoint, {args.tables:,} tables", "/live/", None),
            ("one sparkline (the overview loads them lazily)", f"/tables/{page_table.pk}/sparkline.svg", None),
        ]
        print(f"{'page':48} {'p50 ms':>7} {'p95 ms':>7} {'CPU p95':>8} {'target':>7} {'KiB':>5}")
        for name, url, target in pages:
            wall50, wall95, cpu95, size = measure(client, url, args.requests)
            verdict = "" if target is None else ("met" if wall95 < target else "MISSED")
            target_text = "" if target is None else f"< {target}"
            print(f"{name:48} {wall50:7.1f} {wall95:7.1f} {cpu95:8.1f} {target_text:>7} {size / 1024:5.0f} {verdict}")
        print(f"load average after: {os.getloadavg()[0]:.1f}")
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            admin_sql(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")


if __name__ == "__main__":
    main()
