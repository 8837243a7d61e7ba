"""Measure `monitors plan` and `apply` of a 1,000-table pulse.yml at default guardrails (issue 13).

Usage: .venv/bin/python benchmarks/monitors_as_code.py [--tables 1000] [--custom-sql 5] [--debug]

Everything runs against throwaway servers: a fresh Pulse database `pulse_bench_mac` on 127.0.0.1:5432 (migrated
here, dropped at the end) and a primary + hot standby pair from `pulse_project.pgcluster`.

1. On the primary: N tables `bench.tNNNN (id, created_at timestamptz, note text)`, 80% of them listed by name in
   the file and 20% named `events_NNNN`, covered by one table group (`tables: "events_*"`); a login role with
   SELECT grants; wait for the standby's replay.
2. Pulse: a team and one Connection to the standby with the model's DEFAULT guardrails (10,000 queries/h,
   20 queries/s, 2 concurrent sessions, cost limit 1e6). The file: every table with its timestamp column, a
   null_rate and a row_count check each, --custom-sql custom SQL checks (each checked on the replica: 3
   statements + the session's recovery check, spaced by the 20/s rate), a channel and a maintenance window.
3. Timed (time.perf_counter around the service functions the command and the API call):
   plan (all to create), apply (create), plan again (nothing to change), a change of 10% of the tables'
   settings (every 10th listed table) planned and applied, export, and a plan of the exported file. Replica statements per plan are
   read from the connection's QueryAllowance (the hourly budget's counter).
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

from pulse_project.pgcluster import ReplicaPair  # noqa: E402

BENCH_DB = "pulse_bench_mac"
PULSE_SERVER = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
DATA_DB = "macdata"
READER = "pulse_mac_reader"
READER_PASSWORD = "bench-" + secrets.token_hex(8)
SCHEMA = "bench"
TARGET_SECONDS = 10.0
DDL_CHUNK = 200


def say(line: str = "") -> None:
    print(line, flush=True)


def setup_django(debug: bool) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "pulse_project.settings"
    os.environ["PULSE_DATABASE_URL"] = "postgres://{user}@{host}:{port}/".format(**PULSE_SERVER) + BENCH_DB
    os.environ["PULSE_DEBUG"] = "on" if debug else "off"
    os.environ["PULSE_CONNECTION_ALLOW_LOCAL"] = "on"
    if not debug:
        from cryptography.fernet import Fernet

        os.environ.setdefault("PULSE_SECRET_KEY", secrets.token_urlsafe(50))
        os.environ.setdefault("PULSE_ENCRYPTION_KEY", Fernet.generate_key().decode())
    with psycopg.connect(**PULSE_SERVER, dbname="postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {BENCH_DB}")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def drop_bench_db() -> None:
    from django.db import connections

    connections.close_all()
    with psycopg.connect(**PULSE_SERVER, dbname="postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")


def names_for(count: int) -> tuple[list[str], list[str]]:
    listed = [f"t{index:04}" for index in range(count - count // 5)]
    grouped = [f"events_{index:04}" for index in range(count // 5)]
    return listed, grouped


def load_replica(pair: ReplicaPair, count: int) -> None:
    with pair.primary.connect() as conn:
        conn.execute(f"CREATE DATABASE {DATA_DB}")
    listed, grouped = names_for(count)
    with pair.primary.connect(DATA_DB) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(READER), sql.Literal(READER_PASSWORD))
        )
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(SCHEMA)))
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(SCHEMA), sql.Identifier(READER)))
        names = listed + grouped
        for start in range(0, len(names), DDL_CHUNK):
            statements = []
            for name in names[start : start + DDL_CHUNK]:
                table = sql.Identifier(SCHEMA, name)
                statements.append(
                    sql.SQL("CREATE TABLE {} (id int, created_at timestamptz DEFAULT now(), note text)").format(table)
                )
                statements.append(sql.SQL("GRANT SELECT ON {} TO {}").format(table, sql.Identifier(READER)))
            conn.execute(sql.SQL("; ").join(statements))
    pair.wait_for_replay(timeout=120)


def pulse_file(count: int, custom_sql: int, *, sensitivity_every: int = 0) -> str:
    listed, _ = names_for(count)
    lines = [
        "version: 1",
        "team: bench",
        "channels:",
        "  - name: ops",
        "    kind: slack",
        "    target_env: BENCH_SLACK_URL",
        "connections:",
        "  - name: bench-replica",
        "    maintenance_windows:",
        "      - starts_at: 2026-12-01T02:00:00Z",
        "        ends_at: 2026-12-01T04:00:00Z",
        "        reason: upgrade",
        "    tables:",
    ]
    for index, name in enumerate(listed):
        lines += [f"      - schema: {SCHEMA}", f"        table: {name}", "        timestamp_column: created_at"]
        if sensitivity_every and index % sensitivity_every == 0:
            lines.append("        sensitivity: 5")
        lines += [
            "        checks:",
            "          - kind: null_rate",
            "            column: note",
            "            max_value: 0.5",
            "          - kind: row_count",
            "            min_value: 0",
        ]
        if index < custom_sql:
            lines += [
                "          - kind: custom_sql",
                f"            sql: SELECT count(*) FROM {SCHEMA}.{name} WHERE note IS NULL",
                "            max_value: 1000",
            ]
    lines += [
        "    table_groups:",
        f"      - schema: {SCHEMA}",
        '        tables: "events_*"',
        "        timestamp_column: created_at",
        "        checks:",
        "          - kind: row_count",
        "            min_value: 0",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tables", type=int, default=1000)
    parser.add_argument("--custom-sql", type=int, default=5)
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args()

    say(f"== monitors as code: {args.tables} tables, {args.custom_sql} custom SQL checks, default guardrails")
    pair = ReplicaPair.create()
    try:
        load_replica(pair, args.tables)
        setup_django(args.debug)
        try:
            return run(pair, args)
        finally:
            drop_bench_db()
    finally:
        pair.stop()


def run(pair: ReplicaPair, args) -> int:
    from django.contrib.auth.models import Group
    from django.db.models import Sum

    from connections.models import Connection, QueryAllowance
    from monitors.models import Check, MonitoredTable
    from monitors_as_code.apply import plan_apply
    from monitors_as_code.export import export_text
    from monitors_as_code.plan import plan_build

    team = Group.objects.create(name="bench")
    connection = Connection(
        name="bench-replica",
        team=team,
        host="127.0.0.1",
        port=pair.standby.port,
        database=DATA_DB,
        username=READER,
        sslmode="disable",
    )
    connection.set_password(READER_PASSWORD)
    connection.save()
    env = {"BENCH_SLACK_URL": "https://hooks.slack.com/services/T0/B0/bench"}
    teams = Group.objects.all()
    text = pulse_file(args.tables, args.custom_sql)
    say(f"  file: {len(text):,} bytes, {text.count(chr(10)):,} lines")

    def queries() -> int:
        # the hourly budget's counters (one row per connection; summed in case a clock hour turns)
        return QueryAllowance.objects.filter(connection=connection).aggregate(used=Sum("queries_used"))["used"] or 0

    rows = []

    def timed(label: str, function, content: str, prune: bool = False, expect_changes: bool | None = None):
        before = queries()
        start = time.perf_counter()
        plan = function(content=content, filename="pulse.yml", teams=teams, env=env, prune=prune)
        seconds = time.perf_counter() - start
        if plan.problems:
            for line in plan.problem_lines()[:20]:
                say(f"  PROBLEM {line}")
            raise SystemExit(f"{label}: the plan has problems")
        if expect_changes is not None and plan.has_changes != expect_changes:
            raise SystemExit(f"{label}: has_changes is {plan.has_changes}, expected {expect_changes}")
        counts = plan.counts()
        rows.append((label, seconds, queries() - before, counts))
        say(
            f"  {label:<40} {seconds:6.2f} s  replica statements {queries() - before:4}  "
            f"create {counts['create']}, change {counts['change']}, delete {counts['delete']}"
        )
        return plan

    timed("plan (everything to create)", plan_build, text, expect_changes=True)
    timed("apply (create)", plan_apply, text, expect_changes=True)
    tables = MonitoredTable.objects.filter(connection=connection).count()
    checks = Check.objects.filter(table__connection=connection).count()
    say(f"  stored: {tables} tables, {checks} checks")
    if tables != args.tables:
        raise SystemExit(f"expected {args.tables} tables, found {tables}")
    timed("plan (nothing to change)", plan_build, text, expect_changes=False)
    timed("apply (nothing to change)", plan_apply, text, expect_changes=False)
    changed = pulse_file(args.tables, args.custom_sql, sensitivity_every=10)
    timed("plan (every 10th listed table changed)", plan_build, changed, expect_changes=True)
    timed("apply (every 10th listed table changed)", plan_apply, changed, expect_changes=True)
    start = time.perf_counter()
    exported = export_text(team=team)
    say(f"  {'export':<40} {time.perf_counter() - start:6.2f} s  ({len(exported):,} bytes)")
    timed("plan of the exported file", plan_build, exported, expect_changes=False)

    worst = max(seconds for _, seconds, _, _ in rows)
    catalog_ok = all(used <= 2 + 4 * args.custom_sql for _, _, used, _ in rows)
    say()
    say(
        f"  slowest plan/apply: {worst:.2f} s (target < {TARGET_SECONDS:.0f} s): {'met' if worst < TARGET_SECONDS else 'MISSED'}"
    )
    say(f"  replica statements per run <= 2 + 4 per new custom SQL check: {'met' if catalog_ok else 'MISSED'}")
    return 0 if worst < TARGET_SECONDS and catalog_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
