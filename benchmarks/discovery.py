"""Measure discovery (monitors/discovery.py) on a replica with many tables of realistic shapes.

Usage: python benchmarks/discovery.py [--tables 10000] [--runs 3] [--seed N]

Builds a real primary + hot standby (pulse_project/pgcluster.py) whose database holds `--tables` tables,
each of one of the SHAPES below (an OLTP/analytics mix: insert-time columns under many names, update-time
columns, lifecycle and scheduled times, text "timestamps", date-only columns, unindexed columns, no time
at all; some tables loaded in time order, some imported out of order), with 20-200 rows each, analyzed so
pg_stats holds their statistics. Each shape names the column a person would pick (the expected answer).

Then, against Pulse's own database (a throwaway `pulse_bench_discovery` on 127.0.0.1:5432), it registers
the standby as a connection with default guardrails (statement timeout 5 s, budget, rate and slots), and
runs discovery as a dry run `--runs` times, reporting:
- the statements sent to the replica per discovery (from the connection's query budget) and wall time;
- the time of the catalog statement alone (the rest is Pulse-side work);
- how often the chosen timestamp column is the expected one, per shape, with the confusions;
- then one applied discovery (10,000 tables written to Pulse, first checks staggered) and its time.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import shlex
import statistics
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

from pulse_project.pgcluster import ReplicaPair  # noqa: E402

BENCH_DB = "pulse_bench_discovery"
PULSE_SERVER = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
DATA_DB = "discoverybench"
READER = "pulse_discovery_reader"
READER_PASSWORD = "bench-" + secrets.token_hex(8)
SCHEMAS = ("app", "analytics", "staging")
DDL_CHUNK = 250
TARGET_SECONDS = 5.0
TARGET_ACCURACY = 0.95

# name: (columns, indexed columns, SELECT list producing the rows from g = 1..n (ordered or not), expected)
# In the SELECT, {t} is a time n - g minutes ago (insertion order) and {r} a random time in the last 30 days.
T = "now() - make_interval(mins => n - g)"
R = "now() - random() * interval '30 days'"
SHAPES = {
    "events": (
        "id bigint, created_at timestamptz NOT NULL, payload text",
        ["created_at"],
        f"g, {T}, 'x'",
        "created_at",
    ),
    "orders": (
        "id bigint, customer_id int, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL,"
        " shipped_at timestamptz",
        ["created_at", "updated_at", "shipped_at"],
        f"g, g % 50, {T}, {R}, CASE WHEN g % 3 = 0 THEN {T} END",
        "created_at",
    ),
    "users": (
        "id bigint, email text, created_at timestamptz NOT NULL, updated_at timestamptz, last_login_at timestamptz",
        ["created_at", "last_login_at"],
        f"g, 'u' || g, {T}, {R}, {R}",
        "created_at",
    ),
    "audit_log": (
        "id bigint, event_time timestamptz NOT NULL, actor text",
        ["event_time"],
        f"g, {T}, 'a'",
        "event_time",
    ),
    "metrics_raw": ("ts timestamptz NOT NULL, value float8", ["ts"], f"{T}, random()", "ts"),
    "daily_rollup": ("day date NOT NULL, total bigint", ["day"], "current_date - (n - g), g", "day"),
    "staging_loads": (
        "loaded_at timestamp NOT NULL, batch_id int",
        ["loaded_at"],
        f"({T}) AT TIME ZONE 'UTC', g",
        "loaded_at",
    ),
    "profiles": ("id bigint, updated_at timestamptz NOT NULL, bio text", ["updated_at"], f"g, {R}, 'b'", "updated_at"),
    "lookup": ("code text, label text", ["code"], "'c' || g, 'l'", ""),
    "legacy_text": ("id bigint, created_at text, data text", ["created_at"], f"g, ({T})::text, 'd'", ""),
    "legacy_text_upd": (
        "id bigint, created_at text, modified_at timestamptz NOT NULL",
        ["modified_at"],
        f"g, ({T})::text, {R}",
        "modified_at",
    ),
    "subscriptions": (
        "id bigint, created_at timestamptz NOT NULL, expires_at timestamptz NOT NULL",
        ["created_at", "expires_at"],
        f"g, {T}, now() + make_interval(days => g)",
        "created_at",
    ),
    "page_views": ("id bigint, path text, viewed_at timestamptz NOT NULL", ["viewed_at"], f"g, '/', {T}", "viewed_at"),
    "payments": (
        "id bigint, created_at timestamptz NOT NULL, paid_at timestamptz",
        ["created_at", "paid_at"],
        f"g, {T}, CASE WHEN g % 10 < 7 THEN {T} END",
        "created_at",
    ),
    "sensor_readings": (
        "sensor int, recorded_at timestamptz NOT NULL, measured_on date NOT NULL, value float8",
        ["recorded_at"],
        f"g % 7, {T}, current_date, random()",
        "recorded_at",
    ),
    "people": ("id bigint, name text, birth_date date NOT NULL", ["birth_date"], "g, 'p', date '1980-01-01' + g", ""),
    "people_created": (
        "id bigint, birth_date date NOT NULL, created_at timestamptz NOT NULL",
        ["birth_date", "created_at"],
        f"g, date '1980-01-01' + g, {T}",
        "created_at",
    ),
    "jobs": (
        "id bigint, run_at timestamptz NOT NULL, created_at timestamptz NOT NULL",
        ["run_at"],
        f"g, now() + make_interval(mins => g), {T}",
        "",
    ),
    "events_imported": (
        "id bigint, created_at timestamptz NOT NULL, payload text",
        ["created_at"],
        f"g, {R}, 'x'",
        "created_at",
    ),
    "sessions": (
        "id bigint, started_at timestamptz NOT NULL, ended_at timestamptz",
        ["started_at", "ended_at"],
        f"g, {T}, CASE WHEN g % 2 = 0 THEN {T} END",
        "started_at",
    ),
    "snapshots": (
        "sku text, snapshot_date date NOT NULL, updated_at timestamptz NOT NULL",
        ["snapshot_date", "updated_at"],
        f"'s' || g, current_date - (n - g) / 10, {R}",
        "snapshot_date",
    ),
    "messages": (
        "id bigint, sent_at timestamptz, created_at timestamptz NOT NULL",
        ["sent_at", "created_at"],
        f"g, {T}, {T}",
        "created_at",
    ),
    "inventory_counts": ("sku text, counted_at timestamptz NOT NULL", ["counted_at"], f"'s' || g, {T}", "counted_at"),
    "kv_store": ("key text, value text, mtime timestamptz NOT NULL", ["mtime", "key"], f"'k' || g, 'v', {R}", "mtime"),
    "comments": (
        "id bigint, created timestamp NOT NULL, body text",
        ["created"],
        f"g, ({T}) AT TIME ZONE 'UTC', 'b'",
        "created",
    ),
    "camel_case": ('id bigint, "createdAt" timestamptz NOT NULL', ["createdAt"], f"g, {T}", "createdAt"),
    "soft_deleted": (
        "id bigint, created_at timestamptz NOT NULL, deleted_at timestamptz",
        ["deleted_at"],
        f"g, {T}, CASE WHEN g % 5 = 0 THEN {T} END",
        "",
    ),
    "orders_no_index": ("id bigint, created_at timestamptz NOT NULL", ["id"], f"g, {T}", ""),
    "ingest_both": (
        "id bigint, inserted_at timestamptz NOT NULL, updated_at timestamptz NOT NULL",
        ["inserted_at", "updated_at"],
        f"g, {R}, {R}",
        "inserted_at",
    ),
    "app_log": ('id bigint, "timestamp" timestamptz NOT NULL, line text', ["timestamp"], f"g, {T}, 'l'", "timestamp"),
    "partitions_dt": ("dt date NOT NULL, clicks int", ["dt"], "current_date - (n - g) / 5, g", "dt"),
    "cdc_rows": (
        "id bigint, _ingested_at timestamptz NOT NULL, source_updated_at timestamptz",
        ["_ingested_at", "source_updated_at"],
        f"g, {T}, {R}",
        "_ingested_at",
    ),
    # Shapes that are hard for a name-and-statistics rule: what a person would pick is noted.
    "shipments": (
        "id bigint, order_id bigint, shipped_at timestamptz",
        ["shipped_at"],
        f"g, g, CASE WHEN g % 10 < 7 THEN {T} END",
        "shipped_at",
    ),
    "tickets": (
        "id bigint, opened_at timestamptz NOT NULL, closed_at timestamptz",
        ["opened_at", "closed_at"],
        f"g, {T}, CASE WHEN g % 3 = 0 THEN {T} END",
        "opened_at",
    ),
    "bookings": (
        "id bigint, booked_at timestamptz NOT NULL, check_in date NOT NULL",
        ["booked_at", "check_in"],
        f"g, {T}, current_date + g",
        "booked_at",
    ),
    "fx_rates": (
        "currency text, rate_date date NOT NULL, fetched_at timestamptz NOT NULL, rate numeric",
        ["rate_date", "fetched_at"],
        f"'EUR', current_date - (n - g), {T}, 1.1",
        "fetched_at",
    ),
    "valid_periods": (
        "id bigint, valid_from timestamptz NOT NULL, valid_to timestamptz",
        ["valid_from", "valid_to"],
        f"g, {T}, {T} + interval '1 day'",
        "",
    ),
    "hosts_upserted": (
        "host text, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL",
        ["created_at", "updated_at"],
        f"'h' || g, now() - interval '90 days' - make_interval(mins => n - g), {T}",
        "updated_at",
    ),
    "articles": (
        "id bigint, created_at timestamptz NOT NULL, published_at timestamptz",
        ["published_at"],
        f"g, {T}, CASE WHEN g % 5 > 0 THEN {T} END",
        "published_at",
    ),
}

T0 = time.monotonic()


def say(line: str = "") -> None:
    print(line, flush=True)


def phase(title: str) -> None:
    say()
    say(f"== {title}  [t+{time.monotonic() - T0:.0f}s]")


def plan_tables(*, count: int, rng: random.Random) -> list[tuple[str, str, str]]:
    """(schema, table, shape) for `count` tables, shapes drawn uniformly."""
    shapes = list(SHAPES)
    return [
        (SCHEMAS[i % len(SCHEMAS)], f"{shape}_{i:05d}", shape)
        for i, shape in enumerate(rng.choice(shapes) for _ in range(count))
    ]


def create_source_data(pair: ReplicaPair, *, planned, rng: random.Random) -> None:
    with pair.primary.connect() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATA_DB)))
    with pair.primary.connect(DATA_DB) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(READER), sql.Literal(READER_PASSWORD))
        )
        for schema in SCHEMAS:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
            conn.execute(
                sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(schema), sql.Identifier(READER))
            )
            conn.execute(
                sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT SELECT ON TABLES TO {}").format(
                    sql.Identifier(schema), sql.Identifier(READER)
                )
            )
        started = time.monotonic()
        for first in range(0, len(planned), DDL_CHUNK):
            statements = []
            for schema, name, shape in planned[first : first + DDL_CHUNK]:
                columns, indexed, select, _ = SHAPES[shape]
                table = sql.Identifier(schema, name)
                rows = rng.randint(20, 200)
                statements.append(sql.SQL("CREATE TABLE {} ({})").format(table, sql.SQL(columns)))
                statements.append(
                    sql.SQL("INSERT INTO {} SELECT {} FROM (SELECT g, {} AS n FROM generate_series(1, {}) g) s").format(
                        table, sql.SQL(select.format()), sql.Literal(rows), sql.Literal(rows)
                    )
                )
                for column in indexed:
                    statements.append(sql.SQL("CREATE INDEX ON {} ({})").format(table, sql.Identifier(column)))
            with conn.transaction():
                for statement in statements:
                    conn.execute(statement)
        say(f"  {len(planned):,} tables with rows and indexes: {time.monotonic() - started:.1f}s")
        started = time.monotonic()
        conn.execute("ANALYZE")
        say(f"  ANALYZE: {time.monotonic() - started:.1f}s")
    started = time.monotonic()
    pair.wait_for_replay(timeout=1800)
    say(f"  standby caught up: {time.monotonic() - started:.1f}s")


def setup_django() -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "pulse_project.settings"
    os.environ["PULSE_DATABASE_URL"] = "postgres://{user}@{host}:{port}/".format(**PULSE_SERVER) + BENCH_DB
    os.environ["PULSE_CONNECTION_ALLOW_LOCAL"] = "on"
    with psycopg.connect(**PULSE_SERVER, dbname="postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {BENCH_DB}")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def drop_bench_db() -> None:
    try:
        from django.db import connections

        connections.close_all()
    except Exception:  # Django may not be set up yet
        pass
    with psycopg.connect(**PULSE_SERVER, dbname="postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")


def timed_catalog_statement(connection, policy) -> float:
    """The catalog statement alone, on its own read-only session (as the reader), in seconds."""
    from connections import replica
    from monitors import discovery

    message = discovery.catalog_message(policy=policy, known=[])
    with replica.session_for(connection) as session, session.cursor() as cur:
        started = time.monotonic()
        cur.execute(message)
        while cur.description is None and cur.nextset():
            pass
        cur.fetchall()
        return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    say("discovery benchmark")
    say(f"load average at the start: {os.getloadavg()[0]:.1f} (2 vCPUs)")
    say(f"command: {shlex.join([os.path.relpath(sys.executable, ROOT), *sys.argv])}")
    pair = None
    try:
        phase("setup: Pulse database and replica pair")
        setup_django()
        from django.contrib.auth.models import Group

        from connections.models import Connection, QueryAllowance
        from monitors import discovery
        from monitors.models import DiscoveryPolicy, MonitoredTable

        pair = ReplicaPair.create()
        planned = plan_tables(count=args.tables, rng=rng)
        phase(f"1. {args.tables:,} tables of {len(SHAPES)} shapes on the primary")
        create_source_data(pair, planned=planned, rng=rng)

        phase("2. the connection (default guardrails) and its discovery policy")
        team = Group.objects.create(name="bench")
        connection = Connection(
            team=team,
            name="bench-replica",
            host="127.0.0.1",
            port=pair.standby.port,
            database=DATA_DB,
            username=READER,
            sslmode="disable",
        )
        connection.set_password(READER_PASSWORD)
        connection.save()
        policy = DiscoveryPolicy.objects.create(connection=connection, max_tables=20_000)
        say(
            f"  statement_timeout_ms={connection.statement_timeout_ms}, max_queries_per_hour="
            f"{connection.max_queries_per_hour:,}, max_queries_per_second={connection.max_queries_per_second}, "
            f"max_concurrent_queries={connection.max_concurrent_queries}"
        )

        phase(f"3. dry-run discoveries ({args.runs} runs)")
        walls, statements, catalog_times, summary = [], [], [], None
        for run in range(args.runs):
            QueryAllowance.objects.filter(connection=connection).delete()
            started = time.monotonic()
            summary = discovery.discovery_run(connection=connection, apply=False, on_recorded=lambda **_: None)
            walls.append(time.monotonic() - started)
            statements.append(QueryAllowance.objects.get(connection=connection).queries_used)
            catalog_times.append(timed_catalog_statement(connection, policy))
            say(
                f"  run {run + 1}: {walls[-1]:.2f}s wall, {statements[-1]} statements to the replica "
                f"(in 2 round trips: the session's recovery check, then SET LOCAL jit, SET LOCAL parallel workers and the catalog query in one message), catalog statement alone {catalog_times[-1]:.2f}s, "
                f"{summary['tables_seen']:,} tables seen, {summary['added_count']:,} would be added"
            )

        phase("4. timestamp column choice against the expected answers")
        expected = {f"{schema}.{name}": SHAPES[shape][3] for schema, name, shape in planned}
        shape_of = {f"{schema}.{name}": shape for schema, name, shape in planned}
        chosen = {f"{t['schema']}.{t['table']}": t["timestamp_column"] for t in summary["added"]}
        missing_from_summary = len(expected) - len(chosen)
        # The summary lists at most LISTED_AT_MOST tables: score the full choice from a catalog read instead.
        catalog = discovery.catalog_read(connection=connection, policy=policy, known=[])
        chosen = {f"{t.schema}.{t.name}": discovery.timestamp_column_choose(t.columns).column for t in catalog.tables}
        right = sum(1 for key, column in expected.items() if chosen.get(key) == column)
        per_shape: dict[str, Counter] = defaultdict(Counter)
        confusions: Counter = Counter()
        for key, want in expected.items():
            got = chosen.get(key, "<not seen>")
            per_shape[shape_of[key]][got == want] += 1
            if got != want:
                confusions[(shape_of[key], want or "(none)", got or "(none)")] += 1
        accuracy = right / len(expected)
        say(f"  right on {right:,} of {len(expected):,} tables: {accuracy:.1%} (target >= {TARGET_ACCURACY:.0%})")
        say(f"  ({missing_from_summary:,} tables beyond the summary's listing limit were scored from the same catalog)")
        for shape in sorted(per_shape):
            counts = per_shape[shape]
            say(
                f"    {shape:<18} expected {SHAPES[shape][3] or '(none)':<14} right {counts[True]:>4} / {sum(counts.values()):>4}"
            )
        if confusions:
            say("  confusions (shape, expected, chosen, tables):")
            for (shape, want, got), count in confusions.most_common():
                say(f"    {shape}: expected {want}, chose {got} ({count})")

        phase("5. one applied discovery")
        QueryAllowance.objects.filter(connection=connection).delete()
        started = time.monotonic()
        applied = discovery.discovery_run(connection=connection, apply=True, on_recorded=lambda **_: None)
        apply_wall = time.monotonic() - started
        due = list(
            MonitoredTable.objects.filter(connection=connection)
            .order_by("next_check_at")
            .values_list("next_check_at", flat=True)
        )
        spread = (due[-1] - due[0]).total_seconds() / 60 if due else 0
        say(
            f"  {applied['added_count']:,} tables added in {apply_wall:.2f}s; first checks spread over {spread:.0f} min "
            f"at {policy.first_checks_per_minute}/min"
        )

        phase("summary")
        median_wall = statistics.median(walls)
        say(
            f"  statements per discovery: {max(statements)} in 2 round trips (recovery check; 2 SET LOCAL + the "
            "catalog query in one message)"
        )
        say(f"  load average at the end: {os.getloadavg()[0]:.1f} (2 vCPUs)")
        say(
            f"  dry-run wall time, median of {args.runs}: {median_wall:.2f}s (target < {TARGET_SECONDS:.0f}s): "
            f"{'met' if median_wall < TARGET_SECONDS else 'MISSED'}"
        )
        say(
            f"  catalog statement alone, median: {statistics.median(catalog_times):.2f}s "
            f"(statement timeout {connection.statement_timeout_ms} ms)"
        )
        say(f"  timestamp column right: {accuracy:.1%}: {'met' if accuracy >= TARGET_ACCURACY else 'MISSED'}")
        return 0
    finally:
        if pair is not None:
            pair.stop()
        drop_bench_db()


if __name__ == "__main__":
    sys.exit(main())
