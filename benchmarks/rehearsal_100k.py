"""A 100,000-table rehearsal: a replica (primary + hot standby from pulse_project.pgcluster) with --tables
empty (or, with --rows, small) tables, two `runchecks` daemons on this machine, checked at --interval for --minutes.

Usage: .venv/bin/python benchmarks/rehearsal_100k.py [--tables 100000] [--interval 300] [--minutes 11]
                                                      [--rows 0] [--processes 2] [--lift-limits] [--keep]

1. The replica pair lives in var/rehearsal-pg (kept with --keep; an existing pair there with all the tables
   is reused, so the script is re-runnable). Tables `r.tNNNNNN (id bigint, created_at timestamptz)`, created
   2,000 per transaction, then the standby catches up. Two variants, each in its own database of the pair:
   - empty tables (the default, database `rehearsal`): the worst case, freshness fails on every table at every
     check and every table opens a freshness alert at its second failure (the default failure threshold);
   - `--rows N` (database `rehearsal_rows`): N rows per table, the newest stamped now at the start of every run
     (an UPDATE per table), so freshness passes (within the default 60-minute threshold): checks pass, no alert.
2. Pulse's database `pulse_bench_<PULSE_BENCH_TAG or reh>_rehearsal` (dropped and migrated each run): one connection to the standby
   with default settings (--lift-limits: rate, budget and concurrency at the fields' maxima, for a branch
   whose defaults throttle), --tables monitored tables with `created_at` as timestamp column and
   `check_interval_seconds` = --interval, their first checks due evenly over the first interval.
   A trigger (benchmark only) copies (due, checked) from every table update that sets last_checked_at into
   `rehearsal_lateness`: lateness = last_checked_at - the next_check_at it replaces.
3. --processes `manage.py runchecks` daemons (default flags), production settings. After --minutes:
   the first pass (until every table was checked once: its length and rate, and the daemons' CPU per check in
   it), then over the last full interval (when the first pass's one-off work is done): tables checked per
   second, lateness p50/p99, Pulse DB inserts/s (pg_stat_database.tup_inserted, the trigger's rows
   excluded) and growth per day (pg_database_size over the window), the replica time used (sum of the
   results' duration_ms over the window: backend-seconds per second, the share of one backend), the
   daemons' CPU time per table check (from /proc: unaffected by how busy the shared machine is) and each
   daemon's RSS (VmRSS and peak VmHWM from /proc), and the machine's 1-minute load average (lowest and
   highest seen during the run, sampled every 15 s).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from pulse_project.pgcluster import ReplicaPair, Server  # noqa: E402

PULSE_SERVER = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
BENCH_DB = f"pulse_bench_{os.environ.get('PULSE_BENCH_TAG', 'reh')}_rehearsal"
DATA_DB = "rehearsal"  # empty tables; with --rows: DATA_DB + "_rows"
READER = "pulse_rehearsal_reader"
READER_PASSWORD = "rehearsal-reader-password"
PAIR_DIR = ROOT / "var" / "rehearsal-pg"
DDL_CHUNK = 2000
T0 = time.monotonic()


def say(line: str = "") -> None:
    print(f"[t+{time.monotonic() - T0:5.0f}s] {line}", flush=True)


def data_db(rows: int) -> str:
    return f"{DATA_DB}_rows" if rows else DATA_DB


def replica(tables: int, *, rows: int) -> ReplicaPair:
    """The pair under var/rehearsal-pg: reused when it already holds the tables, else made afresh. With `rows`,
    every table holds that many rows (one a minute back from now); the newest is stamped now at every run."""
    ports_file = PAIR_DIR / "ports"
    if ports_file.exists():
        primary_port, standby_port = map(int, ports_file.read_text().split())
        pair = ReplicaPair.__new__(ReplicaPair)
        pair.base_dir = PAIR_DIR
        pair.primary = Server(data_dir=PAIR_DIR / "primary", port=primary_port, log_file=PAIR_DIR / "primary.log")
        pair.standby = Server(data_dir=PAIR_DIR / "standby", port=standby_port, log_file=PAIR_DIR / "standby.log")
        for server in (pair.primary, pair.standby):
            try:
                server.connect().close()
            except psycopg.OperationalError:
                server.start()
        say(f"reusing the replica pair in {PAIR_DIR}")
    else:
        pair = ReplicaPair.create(PAIR_DIR)
        ports_file.write_text(f"{pair.primary.port} {pair.standby.port}")
        say(f"replica pair: primary :{pair.primary.port}, standby :{pair.standby.port}")
    database = data_db(rows)
    with pair.primary.connect() as conn:
        conn.autocommit = True
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone():
            conn.execute(f"CREATE DATABASE {database}")
    with pair.primary.connect(database) as conn:
        conn.autocommit = True
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [READER]).fetchone():
            conn.execute(f"CREATE ROLE {READER} LOGIN PASSWORD '{READER_PASSWORD}'")
        conn.execute("CREATE SCHEMA IF NOT EXISTS r")
        conn.execute(f"GRANT USAGE ON SCHEMA r TO {READER}")
        conn.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA r GRANT SELECT ON TABLES TO {READER}")
        existing = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'r'").fetchone()[0]
        started = time.monotonic()
        fill = (
            f"EXECUTE format('INSERT INTO r.%I SELECT g, now() - (g - 1) * interval ''1 minute''"
            f" FROM generate_series(1, {rows}) g', name);"
            if rows
            else ""
        )
        for first in range(existing + 1, tables + 1, DDL_CHUNK):
            last = min(tables, first + DDL_CHUNK - 1)
            conn.execute(
                f"""
                DO $$ DECLARE name text; BEGIN
                  FOR i IN {first}..{last} LOOP
                    name := 't' || lpad(i::text, 6, '0');
                    EXECUTE format('CREATE TABLE IF NOT EXISTS r.%I (id bigint, created_at timestamptz)', name);
                    {fill}
                  END LOOP;
                END $$
                """
            )
            if (last // DDL_CHUNK) % 10 == 0:
                say(f"  {last:,} tables")
        if existing < tables:
            say(f"created {tables - existing:,} tables in {time.monotonic() - started:.0f} s")
        if rows and existing:
            started = time.monotonic()
            for first in range(1, tables + 1, DDL_CHUNK):
                last = min(tables, first + DDL_CHUNK - 1)
                conn.execute(
                    f"""
                    DO $$ BEGIN
                      FOR i IN {first}..{last} LOOP
                        EXECUTE format('UPDATE r.%I SET created_at = now() WHERE id = 1', 't' || lpad(i::text, 6, '0'));
                      END LOOP;
                    END $$
                    """
                )
            say(f"newest row of {tables:,} tables stamped now in {time.monotonic() - started:.0f} s")
    pair.wait_for_replay(timeout=3600)
    say("standby caught up")
    return pair


def setup_pulse(
    pair: ReplicaPair, *, tables: int, rows: int, interval: int, lift_limits: bool, share: float | None
) -> None:
    from cryptography.fernet import Fernet

    os.environ.update(
        DJANGO_SETTINGS_MODULE="pulse_project.settings",
        PULSE_DATABASE_URL="postgres://{user}@{host}:{port}/".format(**PULSE_SERVER) + BENCH_DB,
        PULSE_DEBUG="off",
        PULSE_CONNECTION_ALLOW_LOCAL="on",
        PULSE_SPOOL_DIR=str(ROOT / "var" / "rehearsal-spool"),
    )
    os.environ.setdefault("PULSE_SECRET_KEY", secrets.token_urlsafe(50))
    os.environ.setdefault("PULSE_ENCRYPTION_KEY", Fernet.generate_key().decode())
    with psycopg.connect(**PULSE_SERVER, dbname="postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {BENCH_DB}")
    import django

    django.setup()
    from django.contrib.auth.models import Group
    from django.core.management import call_command
    from django.db import connection as db

    from connections.models import Connection
    from monitors.models import MonitoredTable

    call_command("migrate", verbosity=0)
    limits = (
        {"max_queries_per_hour": 10_000_000, "max_queries_per_second": 100_000, "max_concurrent_queries": 32}
        if lift_limits
        else {}
    )
    if share is not None:
        limits["replica_time_share_percent"] = share
    connection = Connection(
        name="rehearsal",
        team=Group.objects.create(name="rehearsal"),
        host="127.0.0.1",
        port=pair.standby.port,
        database=data_db(rows),
        username=READER,
        sslmode="disable",
        **limits,
    )
    connection.set_password(READER_PASSWORD)
    connection.save()
    MonitoredTable.objects.bulk_create(
        [
            MonitoredTable(
                connection=connection,
                schema_name="r",
                table_name=f"t{i:06d}",
                timestamp_column="created_at",
                check_interval_seconds=interval,
            )
            for i in range(1, tables + 1)
        ],
        batch_size=5000,
    )
    with db.cursor() as cursor:
        # First checks due evenly over the first interval, from 20 s from now (time for the daemons to start).
        cursor.execute(
            "UPDATE monitors_monitoredtable SET next_check_at = now() + interval '20 seconds'"
            " + (id %% %s) * (%s * interval '1 second' / %s)",
            [tables, interval, tables],
        )
        cursor.execute(
            """
            CREATE TABLE rehearsal_lateness (table_id bigint, due timestamptz, checked timestamptz);
            CREATE TABLE rehearsal_held (table_id bigint PRIMARY KEY, due timestamptz, times int);
            CREATE FUNCTION rehearsal_lateness_note() RETURNS trigger LANGUAGE plpgsql AS $$
            DECLARE first_due timestamptz;
            BEGIN
              IF NEW.last_error LIKE 'held back%%' THEN
                -- Held back by the time share: not a check; its lateness runs on from the due time it missed.
                INSERT INTO rehearsal_held VALUES (NEW.id, OLD.next_check_at, 1)
                  ON CONFLICT (table_id) DO UPDATE SET times = rehearsal_held.times + 1;
              ELSE
                DELETE FROM rehearsal_held WHERE table_id = NEW.id RETURNING due INTO first_due;
                INSERT INTO rehearsal_lateness VALUES (NEW.id, COALESCE(first_due, OLD.next_check_at), NEW.last_checked_at);
              END IF;
              RETURN NEW;
            END $$;
            CREATE TRIGGER rehearsal_lateness AFTER UPDATE OF last_checked_at ON monitors_monitoredtable
              FOR EACH ROW WHEN (NEW.last_checked_at IS DISTINCT FROM OLD.last_checked_at)
              EXECUTE FUNCTION rehearsal_lateness_note();
            """
        )
        # The statistics autovacuum would have gathered on a live deployment (the claims' plans rely on them);
        # on a fresh database under load it may not get there within the run.
        cursor.execute("ANALYZE monitors_monitoredtable")
    say(
        f"Pulse: {tables:,} {f'tables of {rows} rows' if rows else 'empty tables'} at {interval} s on connection"
        f" 'rehearsal' ({'lifted limits' if lift_limits else 'default settings'}; time share"
        f" {share if share is not None else 'default'})"
    )


def counters() -> dict:
    from django.db import connection as db

    with db.cursor() as cursor:
        cursor.execute(
            "SELECT tup_inserted, pg_database_size(current_database()) FROM pg_stat_database"
            " WHERE datname = current_database()"
        )
        inserted, size = cursor.fetchone()
        cursor.execute(
            "SELECT coalesce(sum(n_tup_ins), 0) FROM pg_stat_user_tables"
            " WHERE relname IN ('rehearsal_lateness', 'rehearsal_held')"
        )
        lateness_rows = int(cursor.fetchone()[0])
        cursor.execute(
            "SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0) FROM pg_inherits"
            " WHERE inhparent = 'monitors_checkresult'::regclass"
        )
        results_size = int(cursor.fetchone()[0])
    return {"at": time.time(), "inserted": inserted - lateness_rows, "size": size, "results_size": results_size}


def rss(pid: int) -> tuple[float, float]:
    fields = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (independent of how busy the shared machine is)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", type=int, default=100_000)
    parser.add_argument("--interval", type=int, default=300)
    parser.add_argument("--minutes", type=float, default=11)
    parser.add_argument(
        "--rows", type=int, default=0, help="rows per table, the newest fresh (default 0: empty tables, all failing)"
    )
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--lift-limits", action="store_true")
    parser.add_argument(
        "--share",
        type=float,
        default=None,
        help="the connection's replica time share in percent (default: the field's)",
    )
    parser.add_argument("--keep", action="store_true", help="leave the replica pair running in var/rehearsal-pg")
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    say(f"commit {commit.strip()}; {os.cpu_count()} cores; load {os.getloadavg()}")
    with psycopg.connect(**PULSE_SERVER, dbname="postgres", autocommit=True) as conn:
        autovacuum = conn.execute("SHOW autovacuum").fetchone()[0]
    say(
        f"Pulse's server: autovacuum {autovacuum}"
        + (
            " (PostgreSQL's default is on: without it Pulse's tables bloat and their statistics go stale during the"
            " run, which a live deployment does not see)"
            if autovacuum != "on"
            else ""
        )
    )
    pair = replica(args.tables, rows=args.rows)
    daemons = []
    try:
        setup_pulse(
            pair,
            tables=args.tables,
            rows=args.rows,
            interval=args.interval,
            lift_limits=args.lift_limits,
            share=args.share,
        )
        from django.db import connection as db

        logs = [open(ROOT / "var" / f"rehearsal-runchecks-{n}.log", "w") for n in range(args.processes)]  # noqa: SIM115
        daemons = [
            subprocess.Popen(
                [sys.executable, "manage.py", "runchecks"], cwd=ROOT, env=os.environ.copy(), stdout=log, stderr=log
            )
            for log in logs
        ]
        say(f"{args.processes} runchecks daemons: pids {[d.pid for d in daemons]}")
        started_at = time.time()
        end = time.monotonic() + args.minutes * 60
        window_start = None
        first_pass = None
        loads = []
        peak = {d.pid: (0.0, 0.0) for d in daemons}
        while time.monotonic() < end:
            time.sleep(15)
            loads.append(os.getloadavg()[0])
            for daemon in daemons:
                if daemon.poll() is not None:
                    raise SystemExit(f"runchecks {daemon.pid} exited with {daemon.returncode}")
                peak[daemon.pid] = rss(daemon.pid)
            with db.cursor() as cursor:
                cursor.execute("SELECT count(*), count(DISTINCT table_id) FROM rehearsal_lateness")
                checks, distinct = cursor.fetchone()
            if first_pass is None and distinct >= args.tables:
                first_pass = {"at": time.time(), "cpu": sum(cpu_seconds(d.pid) for d in daemons), "checks": checks}
            say(
                f"  {checks:,} table checks recorded ({distinct:,} tables); RSS MB {[round(v[0]) for v in peak.values()]};"
                f" load {loads[-1]:.1f}"
            )
            if window_start is None and time.monotonic() >= end - args.interval:
                window_start = counters()
                window_start["cpu"] = sum(cpu_seconds(d.pid) for d in daemons)
                say("  measurement window starts (the last interval)")
        window_end = counters()
        window_end["cpu"] = sum(cpu_seconds(d.pid) for d in daemons)
        seconds = window_end["at"] - window_start["at"]
        with db.cursor() as cursor:
            cursor.execute(
                "SELECT extract(epoch FROM checked - due) FROM rehearsal_lateness"
                " WHERE checked >= to_timestamp(%s) AND due IS NOT NULL",
                [window_start["at"]],
            )
            lateness = [float(v) for (v,) in cursor.fetchall()]
            cursor.execute(
                "SELECT count(*), coalesce(sum(duration_ms), 0) FROM monitors_checkresult"
                " WHERE started_at >= to_timestamp(%s)",
                [window_start["at"]],
            )
            results, duration_ms = cursor.fetchone()
            cursor.execute(
                "SELECT count(DISTINCT (table_id, started_at)) FROM monitors_checkresult"
                " WHERE started_at >= to_timestamp(%s) AND status = 'skipped' AND details->>'reason' = 'time_share'",
                [window_start["at"]],
            )
            held_back = cursor.fetchone()[0]
            cursor.execute("SELECT count(*) FROM rehearsal_held")
            held_now = cursor.fetchone()[0]
            cursor.execute(
                "SELECT count(*) FROM monitors_monitoredtable WHERE next_check_at < now() - interval '5 seconds'"
            )
            overdue_now = cursor.fetchone()[0]
        with db.cursor() as cursor:
            cursor.execute(
                "SELECT extract(epoch FROM min(first)), extract(epoch FROM max(first)) FROM"
                " (SELECT min(checked) AS first FROM rehearsal_lateness GROUP BY table_id) t"
            )
            first_check, last_first_check = (float(v) if v is not None else None for v in cursor.fetchone())
        rate = len(lateness) / seconds
        growth_day = (window_end["size"] - window_start["size"]) / seconds * 86400
        results_growth_day = (window_end["results_size"] - window_start["results_size"]) / seconds * 86400
        say("")
        say(
            f"window: last {seconds:.0f} s of {args.minutes:g} min; {len(lateness):,} table checks, {results:,} results"
        )
        say(
            f"tables checked per second: {rate:,.0f} (needed for {args.tables:,} tables at {args.interval} s: "
            f"{args.tables / args.interval:,.0f})"
        )
        say(
            f"lateness due -> checked: p50 {percentile(lateness, 0.5):.1f} s, p99 {percentile(lateness, 0.99):.1f} s,"
            f" max {max(lateness, default=float('nan')):.1f} s; overdue by > 5 s at the end: {overdue_now:,} tables"
        )
        say(
            f"held back by the replica time share in the window: {held_back:,} table runs (not counted as checks;"
            f" their lateness runs on from the due time they missed); held back and not yet checked: {held_now:,}"
        )
        say(
            f"Pulse DB inserts/s: {(window_end['inserted'] - window_start['inserted']) / seconds:,.0f}"
            f" ({results / seconds:,.0f} results/s)"
        )
        say(
            f"Pulse DB growth: {growth_day / 1e9:,.1f} GB/day (whole database); check results (heap + indexes):"
            f" {results_growth_day / 1e9:,.1f} GB/day = {results_growth_day / args.tables / 1e3:,.1f} kB per table"
            f" per day, {(window_end['results_size'] - window_start['results_size']) / max(results, 1):,.0f} bytes"
            " per result"
        )
        say(
            f"replica time (sum of check durations): {duration_ms / 1000 / seconds:.2f} backend-seconds per second"
            f" ({duration_ms / 1000 / seconds * 100:.0f}% of one backend)"
        )
        cpu = window_end["cpu"] - window_start["cpu"]
        say(
            f"runchecks CPU: {cpu:.1f} s over the window ({cpu / seconds:.2f} cores),"
            f" {cpu / max(len(lateness), 1) * 1000:.2f} ms per table check; load average {os.getloadavg()}"
        )
        if first_pass is None:
            say(f"first pass: not over after {args.minutes:g} min (some of the {args.tables:,} tables never checked)")
        else:
            length = last_first_check - first_check
            say(
                f"first pass: every table checked once from t+{first_check - started_at:.0f} s to"
                f" t+{last_first_check - started_at:.0f} s after the daemons started: {length:.0f} s,"
                f" {args.tables / max(length, 1):,.0f} tables/s; daemons' CPU until then"
                f" {first_pass['cpu'] / first_pass['checks'] * 1000:.2f} ms per table check"
                f" ({first_pass['checks']:,} checks, seen at t+{first_pass['at'] - started_at:.0f} s)"
            )
        say(f"1-minute load average during the run: {min(loads):.1f}–{max(loads):.1f}")
        for daemon in daemons:
            now_mb, peak_mb = rss(daemon.pid)
            say(f"runchecks pid {daemon.pid}: RSS {now_mb:.0f} MB, peak {peak_mb:.0f} MB")
    finally:
        for daemon in daemons:
            daemon.send_signal(signal.SIGTERM)
        for daemon in daemons:
            try:
                daemon.wait(timeout=120)
            except subprocess.TimeoutExpired:
                daemon.kill()
        try:
            from django.db import connections

            connections.close_all()
        except Exception:  # Django may not be set up
            pass
        if not args.keep:
            pair.stop()
            shutil.rmtree(PAIR_DIR, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
