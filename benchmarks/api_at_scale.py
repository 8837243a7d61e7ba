"""The API at scale: p50/p95/p99 of GET /api/tables, /api/alerts and /api/tables/{id}/results over a Pulse
database holding --tables monitored tables and --results stored check results.

Usage: .venv/bin/python benchmarks/api_at_scale.py [--tables 10000] [--results 100000000] [--requests 200]
                                                   [--database pulse_bench_api] [--drop] [--measure-only]
                                                   [--api-indexes-only]

Rows are generated with SQL (generate_series) straight into a separate benchmark database on
127.0.0.1:5432 (migrated here; never a test database). Re-runnable: teams, connections, tables and alerts are
made once; results continue from the highest id already stored up to --results (ids are the series number),
so a run interrupted while loading resumes where it stopped. --drop starts from an empty database.
After a load the left-out result indexes are built: first the two the results endpoints read (then VACUUM
ANALYZE), then the others; --api-indexes-only stops after the first two (a later run builds the others).

Layout of the results: the series number g gives the table (g mod T), the round r = g div T and the time
(`started_at` = now - 90 days + r x 90 days / rounds: the default retention, evenly filled), and the kind in
turn freshness, volume (with its hour bucket), schema_change. So every table has results / T results over
90 days in weekly partitions (made with monitors.results.result_partitions_ensure). Then VACUUM ANALYZE.

Alerts: 10 per table (one open or acknowledged for 1 table in 20, the others resolved), opened over 90 days.

Requests go through Django's full stack in-process (django.test.Client: every middleware, token
authentication, team scoping, serialisation; no network), as a team member with model permissions, with
production settings (PULSE_DEBUG=off). Per endpoint: 10 warm-up requests, then --requests timed ones over
random tables/pages; the queries of one request are printed with their count.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

SERVER = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
CONNECTIONS = 10
CHUNK = 1_000_000
KINDS = ("freshness", "volume", "schema_change")
# The result indexes the measured endpoints read (a table's history, with and without ?kind=).
API_READ_INDEXES = ("result_table_latest", "result_table_kind_latest")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def setup_django(database: str, drop: bool) -> None:
    with psycopg.connect(**SERVER, dbname="postgres", autocommit=True) as conn:
        if drop:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}"')
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone():
            conn.execute(f'CREATE DATABASE "{database}"')
    from cryptography.fernet import Fernet

    os.environ["PULSE_DATABASE_URL"] = "postgres://{user}@{host}:{port}/".format(**SERVER) + database
    os.environ["PULSE_DEBUG"] = "off"
    os.environ.setdefault("PULSE_SECRET_KEY", secrets.token_urlsafe(50))
    os.environ.setdefault("PULSE_ENCRYPTION_KEY", Fernet.generate_key().decode())
    os.environ["PULSE_ALLOWED_HOSTS"] = "testserver"
    os.environ["DJANGO_SETTINGS_MODULE"] = "pulse_project.settings"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def seed_objects(tables: int):
    """Team, member with permissions, token, connections, tables, alerts (once)."""
    from django.contrib.auth.models import Group, Permission, User
    from django.db import connection
    from rest_framework.authtoken.models import Token

    from connections.models import Connection
    from monitors.models import MonitoredTable

    team, _ = Group.objects.get_or_create(name="bench")
    user, created = User.objects.get_or_create(username="bench-member")
    if created:
        user.groups.add(team)
        user.user_permissions.add(
            *Permission.objects.filter(content_type__app_label__in=["connections", "monitors", "alerts"])
        )
    token, _ = Token.objects.get_or_create(user=user)
    existing = MonitoredTable.objects.count()
    if existing < tables:
        log(f"creating {tables - existing} tables")
        conns = []
        for n in range(CONNECTIONS):
            conn, _ = Connection.objects.get_or_create(
                team=team,
                name=f"replica-{n}",
                defaults={"host": "replica.invalid", "database": "shop", "username": "pulse"},
            )
            conns.append(conn)
        with connection.cursor() as cursor:
            cursor.execute(
                """
                INSERT INTO monitors_monitoredtable
                  (connection_id, schema_name, table_name, timestamp_column, freshness_threshold_minutes,
                   check_interval_seconds, failure_threshold, sensitivity, direction, seasonality,
                   min_relative_change, min_absolute_change, is_active, status, last_error, plan_costs,
                   update_times, created_at, updated_at, next_check_at)
                SELECT (%(conns)s::bigint[])[1 + g %% %(nconn)s], 'public', format('t%%s', lpad(g::text, 7, '0')),
                       'created_at', 60, 300, 2, 3.5, 'both', 'auto', 0, 0, true, 'healthy', '', '{}', '[]',
                       now(), now(), now() + (g %% 300) * interval '1 second'
                FROM generate_series(%(first)s, %(last)s) g
                ON CONFLICT DO NOTHING
                """,
                {"conns": [c.id for c in conns], "nconn": CONNECTIONS, "first": existing, "last": tables - 1},
            )
            log("creating alerts (10 per table)")
            cursor.execute(
                """
                INSERT INTO alerts_alert
                  (connection_id, table_id, kind, severity, status, message, opened_at, last_seen_at,
                   resolved_at, consecutive_failures)
                SELECT t.connection_id, t.id, k.kind, 'warning',
                       CASE WHEN k.n = 0 AND t.id % 20 = 0 THEN (CASE WHEN t.id % 40 = 0 THEN 'acknowledged' ELSE 'open' END)
                            ELSE 'resolved' END,
                       'generated', now() - (t.id % 90 + k.n * 9) * interval '1 day' - (t.id % 1440) * interval '1 minute',
                       now() - (t.id % 90) * interval '1 day',
                       CASE WHEN k.n = 0 AND t.id % 20 = 0 THEN NULL ELSE now() - (t.id % 90) * interval '1 day' END,
                       2
                FROM monitors_monitoredtable t
                CROSS JOIN (SELECT n, (ARRAY['freshness','volume','schema_change'])[1 + n % 3] AS kind
                            FROM generate_series(0, 9) n) k
                WHERE NOT EXISTS (SELECT 1 FROM alerts_alert a WHERE a.table_id = t.id)
                """
            )
    return token.key


INSERT_RESULTS = """
    INSERT INTO monitors_checkresult
      (id, connection_id, table_id, kind, status, observed_value, message, started_at, duration_ms,
       queries_used, bucket_start, details, is_anomaly, marked_expected)
    OVERRIDING SYSTEM VALUE
    SELECT g, (%(table_connection)s::bigint[])[1 + g %% %(tables)s], %(first_table)s + g %% %(tables)s, k.kind,
           'pass', (g %% 1000)::float8, '', s.at, 3, 1,
           CASE WHEN k.kind = 'volume' THEN date_trunc('hour', s.at) END,
           '{}', false, false
    FROM generate_series(%(lower)s::bigint, %(upper)s::bigint) g
    CROSS JOIN LATERAL (SELECT (ARRAY['freshness','volume','schema_change'])[1 + (g / %(tables)s) %% 3] AS kind) k
    CROSS JOIN LATERAL (SELECT %(start)s::timestamptz
                        + (g / %(tables)s) * (interval '90 days' / %(rounds)s)
                        + (g %% %(tables)s) * interval '1 millisecond' AS at) s
"""


def niced_session(database: str) -> psycopg.Connection:
    """A session on the benchmark database whose backend runs at nice 19 (the other sessions keep the cores)."""
    # Never prepared: a prepared (generic) plan would cast the table-connection array parameter on every row.
    conn = psycopg.connect(**SERVER, dbname=database, autocommit=True, prepare_threshold=None)
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    subprocess.run(["renice", "-n", "19", "-p", str(pid)], check=False, capture_output=True)
    conn.execute("SET synchronous_commit = off")
    conn.execute("SET max_parallel_maintenance_workers = 0")  # work stays in this (niced) backend
    conn.execute("SET maintenance_work_mem = '512MB'")
    # Generated rows are consistent by construction: skip the per-row foreign-key triggers (superuser).
    conn.execute("SET session_replication_role = replica")
    return conn


def _load_chunks(database: str, chunks: list[tuple[int, int]], params: dict) -> None:
    with niced_session(database) as conn:
        for lower, upper in chunks:
            started = time.perf_counter()
            with conn.transaction():
                conn.execute(INSERT_RESULTS, {**params, "lower": lower, "upper": upper})
                conn.execute("INSERT INTO bench_loaded_chunks VALUES (%s)", [lower])
            rate = (upper + 1 - lower) / (time.perf_counter() - started)
            log(f"  results {lower:,}..{upper:,} loaded ({rate:,.0f} rows/s in this session)")


def _index_partitions(
    database: str, partitions: list[str], definitions: list[tuple[str, str]], *, vacuum: bool
) -> None:
    """Build the left-out indexes on each of `partitions`, then (with `vacuum`) VACUUM ANALYZE it (visibility
    map for index-only scans); the parent's CREATE INDEX afterwards attaches these instead of building again."""
    with niced_session(database) as conn:
        for partition in partitions:
            for name, definition in definitions:
                started = time.perf_counter()
                local = f"{partition.removeprefix('monitors_checkresult_')}_{name}"[:63]
                statement = definition.replace(
                    f"INDEX {name} ON ONLY public.monitors_checkresult",
                    f'INDEX IF NOT EXISTS "{local}" ON public."{partition}"',
                )
                conn.execute(statement)
                log(f"  {partition}: built {name} in {time.perf_counter() - started:.0f} s")
            if vacuum:
                started = time.perf_counter()
                conn.execute(f'VACUUM (ANALYZE) "{partition}"')
                log(f"  {partition}: VACUUM ANALYZE in {time.perf_counter() - started:.0f} s")


def _index_rebuild(database: str, definitions: list[tuple[str, str]], sessions: int, *, vacuum: bool) -> None:
    """Build `definitions` on every partition in `sessions` niced sessions, then attach them to the parent."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'monitors_checkresult'::regclass ORDER BY c.relname"
        )
        partitions = [name for (name,) in cursor.fetchall()]
    shares = [partitions[n::sessions] for n in range(sessions)]
    with ThreadPoolExecutor(sessions) as pool:
        jobs = [
            pool.submit(_index_partitions, database, share, definitions, vacuum=vacuum) for share in shares if share
        ]
        for future in jobs:
            future.result()
    with connection.cursor() as cursor:
        for name, definition in definitions:
            cursor.execute(definition.replace(" ON ONLY ", " ON "))  # attaches the partitions' indexes
            cursor.execute("DELETE FROM bench_dropped_indexes WHERE name = %s", [name])
        cursor.execute("ANALYZE monitors_checkresult")


def load_results(target: int, tables: int, sessions: int, *, api_indexes_only: bool) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection
    from django.utils import timezone

    from monitors.results import result_partitions_ensure

    database = connection.settings_dict["NAME"]
    now = timezone.now()
    for weeks in range(0, 15):
        result_partitions_ensure(now=now - timedelta(weeks=weeks), weeks_ahead=0)
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS bench_loaded_chunks (lower_id bigint PRIMARY KEY)")
        cursor.execute("CREATE TABLE IF NOT EXISTS bench_load (start timestamptz, rounds int, target bigint)")
        cursor.execute("SELECT start, rounds, target FROM bench_load")
        row = cursor.fetchone()
        if row is None:
            row = (now - timedelta(days=90), max(1, target // tables), target)
            cursor.execute("INSERT INTO bench_load VALUES (%s, %s, %s)", row)
        start, rounds, target = row
        cursor.execute("SELECT array_agg(lower_id) FROM bench_loaded_chunks")
        loaded = set(cursor.fetchone()[0] or ())
        cursor.execute("SELECT min(id) FROM monitors_monitoredtable")
        first_table = cursor.fetchone()[0]
        cursor.execute("SELECT array_agg(connection_id ORDER BY id) FROM monitors_monitoredtable")
        table_connection = cursor.fetchone()[0]
    chunks = [(lower, min(target, lower + CHUNK) - 1) for lower in range(0, target, CHUNK) if lower not in loaded]
    log(
        f"loading {len(chunks)} chunks of {CHUNK:,} results in {sessions} sessions (target {target:,}, "
        f"{rounds:,} per table over 90 days)"
    )
    # A big load goes in without the secondary indexes, which are then built once per partition (far faster
    # than maintaining them row by row); the primary key (sequential ids) stays. Their definitions are kept
    # in `bench_dropped_indexes`, so an interrupted load still rebuilds them. The weekly partitions are
    # UNLOGGED in this benchmark database (no WAL written for 100 M rows; reads do not depend on it).
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS bench_dropped_indexes (name text PRIMARY KEY, definition text)")
        if chunks:
            cursor.execute(
                "INSERT INTO bench_dropped_indexes SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid)"
                " FROM pg_index WHERE indrelid = 'monitors_checkresult'::regclass AND NOT indisprimary"
                " ON CONFLICT DO NOTHING"
            )
            cursor.execute("SELECT name FROM bench_dropped_indexes")
            for (name,) in cursor.fetchall():
                cursor.execute(f"DROP INDEX IF EXISTS {name}")
            cursor.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                " WHERE i.inhparent = 'monitors_checkresult'::regclass AND c.relpersistence = 'p'"
                " AND NOT EXISTS (SELECT 1 FROM bench_loaded_chunks)"
            )
            for (partition,) in cursor.fetchall():
                cursor.execute(f'ALTER TABLE "{partition}" SET UNLOGGED')
        cursor.execute("SELECT name, definition FROM bench_dropped_indexes ORDER BY name")
        rebuild = cursor.fetchall()
    log(f"{len(rebuild)} indexes left out during the load")
    params = {
        "first_table": first_table,
        "tables": tables,
        "rounds": rounds,
        "start": start,
        "table_connection": table_connection,
    }
    started = time.perf_counter()
    # Contiguous id ranges per session: the sessions mostly write different weekly partitions.
    shares = [chunks[len(chunks) * n // sessions : len(chunks) * (n + 1) // sessions] for n in range(sessions)]
    with ThreadPoolExecutor(sessions) as pool:
        for future in [pool.submit(_load_chunks, database, share, params) for share in shares if share]:
            future.result()
    if chunks:
        rows = sum(upper + 1 - lower for lower, upper in chunks)
        log(
            f"loaded {rows:,} results in {time.perf_counter() - started:.0f} s "
            f"({rows / (time.perf_counter() - started):,.0f} rows/s)"
        )
    # First the indexes the results endpoints read (then VACUUM ANALYZE: index-only counts), so a run with
    # --api-indexes-only can measure as soon as they exist; the others are built by a later run without it.
    first = [(name, definition) for name, definition in rebuild if name in API_READ_INDEXES]
    rest = [(name, definition) for name, definition in rebuild if name not in API_READ_INDEXES]
    if first:
        started = time.perf_counter()
        _index_rebuild(database, first, sessions, vacuum=True)
        log(f"API-read indexes built and partitions vacuumed in {time.perf_counter() - started:.0f} s")
    if rest and not api_indexes_only:
        started = time.perf_counter()
        _index_rebuild(database, rest, sessions, vacuum=False)
        log(f"other indexes built in {time.perf_counter() - started:.0f} s")
    elif rest:
        log(f"left for a later run: {', '.join(name for name, _ in rest)} (not read by the API)")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence('monitors_checkresult', 'id'), (SELECT max(id) FROM monitors_checkresult))"
        )
        cursor.execute("VACUUM (ANALYZE) alerts_alert")
        cursor.execute("VACUUM (ANALYZE) monitors_monitoredtable")


def sizes() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT (SELECT count(*) FROM monitors_monitoredtable),
                   (SELECT count(*) FROM alerts_alert),
                   (SELECT sum(reltuples)::bigint FROM pg_class c JOIN pg_inherits i ON i.inhrelid = c.oid
                     WHERE i.inhparent = 'monitors_checkresult'::regclass),
                   (SELECT count(*) FROM pg_inherits WHERE inhparent = 'monitors_checkresult'::regclass),
                   pg_size_pretty(pg_database_size(current_database()))
            """
        )
        tables, alerts, results, partitions, size = cursor.fetchone()
    log(f"database: {tables:,} tables, {alerts:,} alerts, ~{results:,} results in {partitions} partitions, {size}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _followed(client, url: str, *, pages: int) -> str:
    """The address `pages` `next` links on from `url` (a cursor when the list gives them), or `url`."""
    for _ in range(pages):
        following = client.get(url, secure=True).json().get("next")
        if not following:
            break
        url = following.removeprefix("https://testserver")
    return url


def measure(token: str, requests: int) -> None:
    from django.db import connection
    from django.test import Client

    from monitors.models import MonitoredTable

    client = Client(HTTP_AUTHORIZATION=f"Token {token}")
    table_ids = list(MonitoredTable.objects.values_list("id", flat=True))
    connection_ids = list(MonitoredTable.objects.values_list("connection_id", flat=True).distinct())
    pages = max(1, len(table_ids) // 50)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM monitors_checkresult WHERE table_id = %s", [table_ids[0]])
        result_page = max(1, min(10, cursor.fetchone()[0] // 50))
    rng = random.Random(11)
    deep_cursors = [
        _followed(client, f"/api/tables/{table_id}/results", pages=result_page - 1)
        for table_id in random.Random(12).sample(table_ids, 20)
    ]
    endpoints = {
        "GET /api/tables": lambda: "/api/tables",
        "GET /api/tables?page=N (random)": lambda: f"/api/tables?page={rng.randint(1, pages)}",
        "GET /api/tables?connection=ID": lambda: f"/api/tables?connection={rng.choice(connection_ids)}",
        "GET /api/alerts": lambda: "/api/alerts",
        "GET /api/alerts?status=open": lambda: "/api/alerts?status=open",
        "GET /api/alerts?table=ID": lambda: f"/api/alerts?table={rng.choice(table_ids)}",
        "GET /api/tables/{id}/results": lambda: f"/api/tables/{rng.choice(table_ids)}/results",
        "GET /api/tables/{id}/results?kind=volume": lambda: f"/api/tables/{rng.choice(table_ids)}/results?kind=volume",
        f"GET /api/tables/{{id}}/results?page={result_page}": lambda: (
            f"/api/tables/{rng.choice(table_ids)}/results?page={result_page}"
        ),
        f"GET /api/tables/{{id}}/results?cursor= (page {result_page} by next links)": lambda: rng.choice(deep_cursors),
    }
    print()
    print(
        f"| endpoint ({requests} requests) | p50 ms | p95 ms | p99 ms | max ms | queries"
        " | SQL p50 / p95 ms | Python CPU p50 / p95 ms |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, path in endpoints.items():
        for _ in range(10):
            assert client.get(path(), secure=True).status_code == 200
        queries = []
        with connection.execute_wrapper(
            lambda execute, sql, *rest, queries=queries: queries.append(sql) or execute(sql, *rest)
        ):
            response = client.get(path(), secure=True)
        assert response.status_code == 200, response.content[:300]
        times, sql_times, cpu_times = [], [], []
        for _ in range(requests):
            url = path()
            in_sql = [0.0]

            def timed(execute, sql, params, many, context, in_sql=in_sql):
                started = time.perf_counter()
                try:
                    return execute(sql, params, many, context)
                finally:
                    in_sql[0] += time.perf_counter() - started

            with connection.execute_wrapper(timed):
                started, cpu_started = time.perf_counter(), time.process_time()
                response = client.get(url, secure=True)
                times.append((time.perf_counter() - started) * 1000)
                cpu_times.append((time.process_time() - cpu_started) * 1000)
            sql_times.append(in_sql[0] * 1000)
            assert response.status_code == 200, (url, response.status_code)
        print(
            f"| {name} | {statistics.median(times):.1f} | {percentile(times, 0.95):.1f} | "
            f"{percentile(times, 0.99):.1f} | {max(times):.1f} | {len(queries)} | "
            f"{statistics.median(sql_times):.1f} / {percentile(sql_times, 0.95):.1f} | "
            f"{statistics.median(cpu_times):.1f} / {percentile(cpu_times, 0.95):.1f} |",
            flush=True,
        )
    explain(client, endpoints)
    if os.environ.get("BENCH_SHOW_QUERIES"):
        for name, path in endpoints.items():
            queries = []

            def timed(execute, sql, params, many, context, queries=queries):
                started = time.perf_counter()
                try:
                    return execute(sql, params, many, context)
                finally:
                    queries.append((time.perf_counter() - started, sql))

            with connection.execute_wrapper(timed):
                client.get(path(), secure=True)
            print(f"\n{name}:")
            for seconds, sql in queries:
                print(f"  {seconds * 1000:.1f} ms {sql[:300]}")


def explain(client, endpoints: dict) -> None:
    """Load-independent figures: the server's own execution time and buffers of each endpoint's queries
    (`EXPLAIN (ANALYZE, BUFFERS)` of the statements one request sends, token lookup included), median of 5."""
    import json

    from django.db import connection

    print()
    print("| endpoint | server execution ms (median of 5 requests) | buffers | statements |")
    print("| --- | --- | --- | --- |")
    for name, path in endpoints.items():
        runs = []
        for _ in range(5):
            statements = []
            with connection.execute_wrapper(
                lambda execute, sql, params, many, context, statements=statements: (
                    statements.append((sql, params)) or execute(sql, params, many, context)
                )
            ):
                client.get(path(), secure=True)
            total, buffers = 0.0, 0
            with connection.cursor() as cursor:
                for sql, params in statements:
                    if not sql.lstrip().upper().startswith("SELECT"):
                        continue  # nothing but reads is re-run
                    cursor.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, params)
                    plan = cursor.fetchone()[0]
                    plan = (json.loads(plan) if isinstance(plan, str) else plan)[0]
                    total += plan["Planning Time"] + plan["Execution Time"]
                    buffers += plan["Plan"].get("Shared Hit Blocks", 0) + plan["Plan"].get("Shared Read Blocks", 0)
            runs.append((total, buffers, len(statements)))
        total, buffers, count = sorted(runs)[len(runs) // 2]
        print(f"| {name} | {total:.1f} (planning included) | {buffers:,} | {count} |", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", type=int, default=10_000)
    parser.add_argument("--results", type=int, default=100_000_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--sessions", type=int, default=2, help="database sessions generating results")
    parser.add_argument("--database", default="pulse_bench_api")
    parser.add_argument("--drop", action="store_true", help="drop the benchmark database first")
    parser.add_argument("--measure-only", action="store_true", help="do not load more results")
    parser.add_argument(
        "--api-indexes-only",
        action="store_true",
        help="after a load, build only the indexes the measured endpoints read (the others on a later run)",
    )
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    log(f"commit {commit.strip()}; {os.cpu_count()} cores; load {os.getloadavg()}; database {args.database}")
    setup_django(args.database, args.drop)
    token = seed_objects(args.tables)
    if not args.measure_only:
        load_results(args.results, args.tables, args.sessions, api_indexes_only=args.api_indexes_only)
    sizes()
    measure(token, args.requests)
    return 0


if __name__ == "__main__":
    sys.exit(main())
