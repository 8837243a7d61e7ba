"""Measure `runchecks` throughput, its distance from a bare-psycopg floor, check cost vs table size, and memory.

Usage: .venv/bin/python benchmarks/runchecks_throughput.py [--tables 1000] [--workers 4]
                                                           [--big-rows 10000000] [--runs 3] [--debug]

Everything runs against throwaway servers: a fresh Pulse database `pulse_bench` on 127.0.0.1:5432
(migrated here, dropped at the end) and a primary + hot standby pair from `pulse_project.pgcluster`.
Pulse runs with production settings (PULSE_DEBUG=off, throwaway keys) unless --debug.

1. On the primary: N tables `bench.tNNNN (id bigint, created_at timestamptz, payload text)`, 300 rows
   each (one every 30 s, newest at load time), an index on created_at; one `bench.big` table
   (--big-rows, one row per second back from now) and one `bench.small` table (10,000 rows, same shape
   and rate, so both have 3,600 rows in the last hour); `VACUUM (ANALYZE)` of the database (the steady
   state autovacuum would reach); a login role with a password and SELECT grants; then wait for the
   standby to replay it all.
2. Pulse: one Connection to the standby (budget and rate at the fields' maxima so they never throttle;
   max_concurrent_queries = --workers) and N MonitoredTable rows with timestamp_column.
3. Pulse throughput: `call_command("runchecks", "--once", "--all", "--workers", W)`, timed, CheckResult
   rows counted after every run. The first run also sends the cost-guard EXPLAINs (then cached per table
   for a day) and any one-off first-run work; it is reported on its own. --runs steady-state runs follow.
4. Raw floor: the replica statements of one steady-state Pulse run are captured (an extra, untimed run
   with QueryRunner.fetch wrapped), then replayed by a bare psycopg loop: W threads, one session per
   captured batch (50 tables) with Pulse's session options, each statement as Pulse sends it (a single
   read-only statement, or inside BEGIN READ ONLY … COMMIT where Pulse asks for one), same rows fetched. So the floor sends exactly Pulse's steady-state queries (no EXPLAINs:
   Pulse's steady state sends none either) and nothing else. Floor and Pulse runs alternate, so load
   drift on a shared machine hits both alike; raw/Pulse is taken per pair.
5. Check cost vs table size: 20 runs of
   `CheckRunner(on_recorded=results_intake, workers=1).cycle(force=True, table_ids=[id])` per table
   after one warm-up run; median CheckResult.duration_ms per kind (whole ms) and the same interval
   measured with perf_counter around each check module's run() (microseconds).
3c. Tables with history, at an hour boundary: 14 days of hourly volume history per table are written into
   Pulse's database (copies of each table's oldest backfilled result, one per hour back to 14 days, at the level
   of the hour the first run judged ±3%, so verdicts pass as in a steady state), so no
   table is learning; before each timed run the verdicts of the bucket under test are deleted (untimed), so
   every run is the first of its hour, as the first run after an hour boundary is, and judges every table
   with `baselines.evaluate` (counted and timed around the call). `--history-only` runs setup, the first
   run and this phase only (short).
6. Peak memory: `manage.py runchecks --once --all` in a child process over 10,000 registered tables
   (10 connections to the same standby, each with the same 1,000 tables), peak RSS from GNU time.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import pstats
import queue
import re
import resource
import secrets
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from contextlib import nullcontext
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

from pulse_project.pgcluster import ReplicaPair  # noqa: E402

BENCH_DB = os.environ.get("PULSE_BENCH_DB", "pulse_bench")  # another name lets two runs share the server
PULSE_SERVER = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
DATA_DB = "benchdata"
READER = "pulse_bench_reader"
READER_PASSWORD = "bench-" + secrets.token_hex(8)
SCHEMA = "bench"
ROWS_PER_TABLE = 300
ROW_SPACING = "30 seconds"
SMALL_ROWS = 10_000
BATCH = 200  # runchecks' default --batch-size
TIME_BIN = "/usr/bin/time"  # GNU time, for the child's peak RSS
SIZE_RUNS = 20
DDL_CHUNK = 200  # tables per transaction (stays well inside the lock table)

TARGET_TABLES_PER_S = 1000
TARGET_RAW_RATIO = 3.0
TARGET_SIZE_RATIO = 2.0
TARGET_RSS_MB = 200

# --- output helpers ------------------------------------------------------------------------------------------

T0 = time.monotonic()


def say(line: str = "") -> None:
    print(line, flush=True)


def profile_print(profiler, *, top: int) -> None:
    """A cProfile's top functions, by cumulative time and by own time."""
    stats = pstats.Stats(profiler)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)


def phase(title: str) -> None:
    say()
    say(f"== {title}  [t+{time.monotonic() - T0:.0f}s]")


def machine_info(pair: ReplicaPair) -> dict:
    cpu = "unknown"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    with pair.standby.connect() as conn:
        replica_version = conn.execute("SHOW server_version").fetchone()[0]
    with psycopg.connect(**PULSE_SERVER, dbname=BENCH_DB) as conn:
        pulse_version = conn.execute("SHOW server_version").fetchone()[0]
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "ram": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "python": platform.python_version(),
        "postgres_replica": replica_version,
        "postgres_pulse": pulse_version,
        "kernel": platform.release(),
        "load average at start": load_average(),
        "Pulse code": code_version(),
    }


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) + " (1, 5, 15 min)"


def code_version() -> str:
    """HEAD and whether the working tree has uncommitted changes (read-only git calls)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git)"
    return f"{head}" + (f" + {len(dirty)} modified tracked files" if dirty else " (clean)")


# --- 1. data on the primary -----------------------------------------------------------------------------------


def table_names(count: int) -> list[str]:
    width = max(4, len(str(count)))
    return [f"t{i:0{width}d}" for i in range(1, count + 1)]


def create_source_data(pair: ReplicaPair, *, tables: int, big_rows: int) -> None:
    width = max(4, len(str(tables)))
    with pair.primary.connect() as conn:
        conn.execute(f"CREATE DATABASE {DATA_DB}")
    with pair.primary.connect(DATA_DB) as conn:
        conn.execute(f"CREATE ROLE {READER} LOGIN PASSWORD '{READER_PASSWORD}'")
        conn.execute(f"CREATE SCHEMA {SCHEMA}")
        conn.execute(f"GRANT USAGE ON SCHEMA {SCHEMA} TO {READER}")
        conn.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {SCHEMA} GRANT SELECT ON TABLES TO {READER}")
        started = time.monotonic()
        for first in range(1, tables + 1, DDL_CHUNK):
            last = min(tables, first + DDL_CHUNK - 1)
            conn.execute(
                f"""
                DO $$
                DECLARE name text;
                BEGIN
                  FOR i IN {first}..{last} LOOP
                    name := 't' || lpad(i::text, {width}, '0');
                    EXECUTE format('CREATE TABLE {SCHEMA}.%I (id bigint, created_at timestamptz, payload text)', name);
                    EXECUTE format('INSERT INTO {SCHEMA}.%I SELECT g, now() - g * interval ''{ROW_SPACING}'','
                                   ' ''payload '' || g FROM generate_series(1, {ROWS_PER_TABLE}) g', name);
                    EXECUTE format('CREATE INDEX ON {SCHEMA}.%I (created_at)', name);
                  END LOOP;
                END $$
                """
            )
        say(f"  {tables:,} tables x {ROWS_PER_TABLE} rows + index: {time.monotonic() - started:.1f}s")
        started = time.monotonic()
        for name, rows in (("small", SMALL_ROWS), ("big", big_rows)):
            conn.execute(f"CREATE TABLE {SCHEMA}.{name} (id bigint, created_at timestamptz, payload text)")
            conn.execute(
                f"INSERT INTO {SCHEMA}.{name} SELECT g, now() - g * interval '1 second', 'payload ' || g"
                f" FROM generate_series(1, {rows}) g"
            )
            conn.execute(f"CREATE INDEX ON {SCHEMA}.{name} (created_at)")
        say(
            f"  bench.big ({big_rows:,} rows) and bench.small ({SMALL_ROWS:,} rows) + index: "
            f"{time.monotonic() - started:.1f}s"
        )
        started = time.monotonic()
        conn.execute("VACUUM (ANALYZE)")
        say(f"  VACUUM (ANALYZE) of {DATA_DB}: {time.monotonic() - started:.1f}s")
    started = time.monotonic()
    pair.wait_for_replay(timeout=1800)
    say(f"  standby caught up: {time.monotonic() - started:.1f}s")


# --- 2. Pulse objects --------------------------------------------------------------------------------------------


def register(pair: ReplicaPair, *, name: str, team, workers: int, tables: list[str]):
    from connections.models import Connection
    from monitors.models import MonitoredTable

    connection = Connection(
        name=name,
        team=team,
        host="127.0.0.1",
        port=pair.standby.port,
        database=DATA_DB,
        username=READER,
        sslmode="disable",
        max_queries_per_hour=10_000_000,  # the field's maximum
        max_queries_per_second=100_000,  # the field's maximum: 10 us spacing
        max_concurrent_queries=workers,
    )
    connection.set_password(READER_PASSWORD)
    connection.save()
    MonitoredTable.objects.bulk_create(
        [
            MonitoredTable(connection=connection, schema_name=SCHEMA, table_name=t, timestamp_column="created_at")
            for t in tables
        ],
        batch_size=2000,
    )
    return connection


# --- 3. Pulse throughput -------------------------------------------------------------------------------------------


def last_result_id() -> int:
    from monitors.models import CheckResult

    return CheckResult.objects.order_by("-id").values_list("id", flat=True).first() or 0


def process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def pulse_run(*, workers: int, expected_tables: int, batch_size: int | None = None) -> dict:
    from django.core.management import call_command

    from monitors.models import CheckResult

    before = last_result_id()
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    out = io.StringIO()
    cpu = process_cpu()
    started = time.perf_counter()
    try:
        extra = ["--batch-size", str(batch_size)] if batch_size else []
        call_command("runchecks", "--once", "--all", "--workers", str(workers), *extra, stdout=out)
    finally:
        elapsed = time.perf_counter() - started
        cpu = process_cpu() - cpu
        for sig, handler in handlers.items():  # runchecks installs its own; give Ctrl-C back to us
            signal.signal(sig, handler)
    by_kind = Counter()
    statuses = Counter()
    backfilled = 0
    queries = 0
    for kind, status, details, used in CheckResult.objects.filter(id__gt=before).values_list(
        "kind", "status", "details", "queries_used"
    ):
        if (details or {}).get("backfill"):
            backfilled += 1
            continue
        by_kind[kind] += 1
        statuses[status] += 1
        queries += used
    table_results = sum(n for k, n in by_kind.items() if k != "replication_lag")
    return {
        "seconds": elapsed,
        "cpu": cpu,
        "tables_per_s": expected_tables / elapsed,
        "table_results": table_results,
        "expected_results": expected_tables * 3,
        "lag_results": by_kind["replication_lag"],
        "backfilled": backfilled,
        "statuses": dict(statuses),
        "queries": queries,
        "line": out.getvalue().strip(),
    }


class BenchmarkAborted(Exception):
    pass


def require_complete(r: dict) -> None:
    """A run that did not record every result measures nothing: stop rather than print a flattering rate."""
    if r["table_results"] != r["expected_results"]:
        raise BenchmarkAborted(
            f"runchecks recorded {r['table_results']:,} table results, expected {r['expected_results']:,} "
            f"(runchecks said: {r['line']!r}); see the log above"
        )


def show_pulse_run(label: str, r: dict, tables: int) -> None:
    ok = "OK" if r["table_results"] == r["expected_results"] else "MISMATCH"
    extra = f" + {r['backfilled']:,} backfilled history rows" if r["backfilled"] else ""
    say(
        f"  {label}: {r['seconds']:.2f}s = {r['tables_per_s']:,.0f} tables/s, process CPU "
        f"{r['cpu'] / tables * 1e6:,.0f} us/table; results {r['table_results']:,} (expected "
        f"{r['expected_results']:,}: {ok}) + {r['lag_results']} replication_lag{extra}; statuses {r['statuses']}; "
        f"replica queries {r['queries']:,}"
    )


# --- 3c. tables with 14 days of history, judged at an hour boundary ---------------------------------------------

HISTORY_DAYS = 14


def seed_history(*, connection_id: int) -> int:
    """14 days of hourly volume results per table of the connection, copied from its oldest backfilled result."""
    from django.db import connection as pulse_db

    with pulse_db.cursor() as cursor:
        cursor.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'monitors_checkresult'"
            " AND column_name NOT IN ('id', 'bucket_start', 'started_at', 'observed_value') ORDER BY ordinal_position"
        )
        columns = [name for (name,) in cursor.fetchall()]
        copied = ", ".join(f"t.{name}" for name in columns)
        cursor.execute(
            f"""
            INSERT INTO monitors_checkresult ({", ".join(columns)}, bucket_start, started_at, observed_value)
            SELECT {copied}, t.bucket_start - h * interval '1 hour', t.started_at - h * interval '1 hour',
                   round(t.level * (0.97 + 0.06 * random()))
            FROM (
                SELECT DISTINCT ON (b.table_id) b.*, judged.observed_value AS level
                FROM monitors_checkresult b
                CROSS JOIN LATERAL (
                    SELECT j.observed_value FROM monitors_checkresult j
                    WHERE j.table_id = b.table_id AND j.kind = 'volume' AND NOT j.details ? 'backfill'
                    ORDER BY j.id DESC LIMIT 1
                ) judged
                WHERE b.connection_id = %s AND b.kind = 'volume' AND b.details ? 'backfill'
                ORDER BY b.table_id, b.bucket_start
            ) t
            CROSS JOIN generate_series(1, {HISTORY_DAYS * 24}) h
            WHERE t.bucket_start - h * interval '1 hour' > now() - interval '{HISTORY_DAYS} days'
            """,
            [connection_id],
        )
        return cursor.rowcount


def forget_current_verdicts(*, connection_id: int) -> int:
    """Delete the judged volume results of the recent buckets: the next run is the first of its hour."""
    from django.db import connection as pulse_db

    with pulse_db.cursor() as cursor:
        cursor.execute(
            "DELETE FROM monitors_checkresult WHERE connection_id = %s AND kind = 'volume'"
            " AND NOT details ? 'backfill' AND bucket_start > now() - interval '3 hours'",
            [connection_id],
        )
        return cursor.rowcount


class EvaluateMeter:
    """Counts and times `baselines.evaluate` calls (the verdict of a table with history) while installed."""

    def __init__(self):
        self.calls = 0
        self.seconds = 0.0
        self.learning = 0

    def __enter__(self):
        from monitors import anomalies

        self.real = anomalies.baselines.evaluate

        def timed(**kwargs):
            started = time.perf_counter()
            try:
                verdict = self.real(**kwargs)
            finally:
                self.seconds += time.perf_counter() - started
                self.calls += 1
            self.learning += bool(getattr(verdict, "learning", False))
            return verdict

        anomalies.baselines.evaluate = timed
        return self

    def __exit__(self, *exc):
        from monitors import anomalies

        anomalies.baselines.evaluate = self.real


def history_runs(*, connection, workers: int, tables: int, runs: int) -> dict:
    from monitors.models import CheckResult

    started = time.monotonic()
    seeded = seed_history(connection_id=connection.pk)
    say(
        f"  seeded {seeded:,} hourly volume results ({seeded / tables:,.0f} per table, {HISTORY_DAYS} days) in "
        f"{time.monotonic() - started:.1f}s"
    )
    say(
        f"  limits lifted for this phase as for the others: budget max_queries_per_hour="
        f"{connection.max_queries_per_hour:,}, rate max_queries_per_second={connection.max_queries_per_second:,.0f}"
        f" (the fields' maxima), concurrency max_concurrent_queries={connection.max_concurrent_queries}"
        f" (= --workers {workers})"
    )
    results = []
    for i in range(runs):
        forgotten = forget_current_verdicts(connection_id=connection.pk)
        before = last_result_id()
        with EvaluateMeter() as meter:
            r = pulse_run(workers=workers, expected_tables=tables)
        judged = CheckResult.objects.filter(id__gt=before, kind="volume", details__judged=True).exclude(
            details__has_key="repeats_verdict_of"
        )
        not_learning = judged.filter(details__learning=False).count()
        r.update(
            evaluate_calls=meter.calls,
            evaluate_ms=meter.seconds / max(1, meter.calls) * 1000,
            evaluated_tables=judged.count(),
            not_learning=not_learning,
        )
        show_pulse_run(f"history run {i + 1} (first of its hour: {forgotten:,} earlier verdicts removed)", r, tables)
        say(
            f"      baselines.evaluate: {meter.calls:,} calls, {r['evaluate_ms']:.2f} ms each on average "
            f"({meter.seconds:.2f}s in all); {judged.count():,} tables judged afresh, {not_learning:,} of them "
            f"out of learning (a baseline, not the cold start)"
        )
        require_complete(r)
        if not_learning != tables:
            raise BenchmarkAborted(f"only {not_learning:,} of {tables:,} tables were judged against a baseline")
        results.append(r)
    return {
        "median": statistics.median(r["tables_per_s"] for r in results),
        "best": max(r["tables_per_s"] for r in results),
        "evaluate_ms": statistics.median(r["evaluate_ms"] for r in results),
        "cpu": statistics.median(r["cpu"] / tables * 1e6 for r in results),
    }


# --- 4. raw floor -----------------------------------------------------------------------------------------------------


def capture_statements(*, workers: int) -> list[list[tuple[str, tuple | None, int]]]:
    """Run runchecks once more with QueryRunner.fetch wrapped; the replica statements of each session, in order."""
    from connections import guardrails

    original = guardrails.QueryRunner.fetch
    sessions: dict[int, list] = defaultdict(list)
    lock = threading.Lock()

    def recording_fetch(self, query, params=None, *, rows=1):
        text = query.as_string(self.session) if isinstance(query, sql.Composable) else query
        with lock:
            sessions[id(self)].append((text, tuple(params) if params is not None else None, rows, False))
        return original(self, query, params, rows=rows)

    guardrails.QueryRunner.fetch = recording_fetch
    try:
        pulse_run(workers=workers, expected_tables=0)
    finally:
        guardrails.QueryRunner.fetch = original
    return list(sessions.values())


def raw_floor(*, conninfo: dict, options: str, batches: list, workers: int) -> tuple[float, int, float]:
    """Replay captured batches from bare psycopg threads; (seconds, statements, process CPU seconds)."""
    work: queue.SimpleQueue = queue.SimpleQueue()
    for batch in batches:
        work.put(batch)
    failures: list[BaseException] = []

    def worker() -> None:
        try:
            while True:
                try:
                    batch = work.get_nowait()
                except queue.Empty:
                    return
                conn = psycopg.connect(**conninfo, application_name="pulse", connect_timeout=5, options=options)
                conn.autocommit = True  # like Pulse: single read-only statements, BEGIN READ ONLY only when asked
                conn.read_only = True
                try:
                    for text, params, rows, explicit in batch:
                        with conn.transaction() if explicit else nullcontext(), conn.cursor() as cur:
                            cur.execute(text, params)
                            if cur.description:
                                cur.fetchmany(rows)
                finally:
                    conn.close()
        except BaseException as exc:  # surface it in the main thread
            failures.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    cpu = process_cpu()
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    cpu = process_cpu() - cpu
    if failures:
        raise failures[0]
    return elapsed, sum(len(b) for b in batches), cpu


def describe_capture(batches: list) -> list[str]:
    """The distinct statements of the capture, with how often each was sent."""
    shapes = Counter()
    for batch in batches:
        for text, *_ in batch:
            shape = re.sub(r'"t\d+"', '"tNNNN"', " ".join(text.split()))
            shapes[shape] += 1
    return [f"{n:>6,} x {shape[:150]}{'...' if len(shape) > 150 else ''}" for shape, n in shapes.most_common()]


# --- 5. cost vs size --------------------------------------------------------------------------------------------------


def size_runs(table_id: int, runs: int) -> tuple[dict, dict]:
    """Median CheckResult.duration_ms per kind, and median perf_counter microseconds per kind."""
    from alerts.intake import results_intake
    from monitors import checks
    from monitors.models import CheckResult
    from monitors.runner import CheckRunner

    precise: dict[str, list[float]] = defaultdict(list)
    originals = {kind: module.run for kind, module in checks.BUILT_IN.items()}

    def timed(kind, run):
        def wrapper(ctx, check=None):
            started = time.perf_counter()
            try:
                return run(ctx, check)
            finally:
                precise[kind].append((time.perf_counter() - started) * 1e6)

        return wrapper

    runner = CheckRunner(on_recorded=results_intake, workers=1, verbosity=0)  # the real path, alerts included
    try:
        runner.cycle(force=True, table_ids=[table_id])  # warm-up: first run sends the EXPLAINs for the cost guard
        before = last_result_id()
        for kind, module in checks.BUILT_IN.items():
            module.run = timed(kind, originals[kind])
        for _ in range(runs):
            runner.cycle(force=True, table_ids=[table_id])
    finally:
        for kind, module in checks.BUILT_IN.items():
            module.run = originals[kind]
        runner.stop()
    recorded: dict[str, list[int]] = defaultdict(list)
    statuses = Counter()
    for kind, status, ms, details in CheckResult.objects.filter(id__gt=before, table_id=table_id).values_list(
        "kind", "status", "duration_ms", "details"
    ):
        if (details or {}).get("backfill"):
            continue
        recorded[kind].append(ms)
        statuses[status] += 1
    counts = {k: len(v) for k, v in recorded.items()}
    if set(recorded) != set(checks.BUILT_IN) or any(len(v) != runs for v in [*recorded.values(), *precise.values()]):
        raise BenchmarkAborted(f"table {table_id}: expected {runs} results of each built-in kind, got {counts}")
    return (
        {k: statistics.median(v) for k, v in recorded.items()},
        {k: statistics.median(v) for k, v in precise.items()},
        dict(statuses),
    )


# --- 6. memory ------------------------------------------------------------------------------------------------------


def child_runchecks(args: list[str]) -> tuple[float, float, int, str]:
    """Run manage.py runchecks in a child process; (seconds, peak RSS MiB, exit code, output).

    Peak RSS comes from GNU time (/usr/bin/time -v), which forks from its own small process: wait4() on a
    child spawned straight from this (large) process would report this process's RSS too, because Linux
    carries the pre-exec memory high-water mark (with vfork, the parent's) into the child's ru_maxrss.
    """
    cmd = [TIME_BIN, "-v", sys.executable, str(ROOT / "manage.py"), "runchecks", *args]
    with tempfile.TemporaryFile() as out, tempfile.NamedTemporaryFile("r") as timing:
        cmd[1:1] = ["-o", timing.name]
        started = time.perf_counter()
        code = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=os.environ.copy()).returncode
        elapsed = time.perf_counter() - started
        out.seek(0)
        text = out.read().decode(errors="replace").strip()
        report = timing.read()
    found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", report)
    if not found:
        raise RuntimeError(f"no peak RSS in GNU time's report: {report!r}")
    return elapsed, int(found.group(1)) / 1024, code, text


# --- main ----------------------------------------------------------------------------------------------------------


def setup_django(debug: bool) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "pulse_project.settings"
    os.environ["PULSE_DATABASE_URL"] = "postgres://{user}@{host}:{port}/".format(**PULSE_SERVER) + BENCH_DB
    os.environ["PULSE_DEBUG"] = "on" if debug else "off"
    os.environ["PULSE_CONNECTION_ALLOW_LOCAL"] = "on"  # the benchmark's replica pair listens on 127.0.0.1
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
    try:
        from django.db import connections

        connections.close_all()
    except Exception:  # Django may not be set up yet
        pass
    with psycopg.connect(**PULSE_SERVER, dbname="postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--big-rows", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=3, help="steady-state runchecks runs (after the first)")
    parser.add_argument("--memory-tables", type=int, default=10_000, help="registered tables for the RSS run")
    parser.add_argument("--debug", action="store_true", help="run Pulse with PULSE_DEBUG=on (default: off)")
    parser.add_argument(
        "--history-only", action="store_true", help="only the first run and phase 3c (tables with 14 days of history)"
    )
    args = parser.parse_args()
    tables, workers = args.tables, args.workers

    say("runchecks throughput benchmark")
    say(f"command: {shlex.join([os.path.relpath(sys.executable, ROOT), *sys.argv])}")
    pair = None
    summary: list[tuple[str, str, str, str]] = []
    try:
        phase("setup: Pulse database and replica pair")
        setup_django(args.debug)
        from django.conf import settings
        from django.contrib.auth.models import Group

        from monitors.models import MonitoredTable

        pair = ReplicaPair.create()
        info = machine_info(pair)
        for key, value in info.items():
            say(f"  {key}: {value}")
        say(f"  Pulse settings: DEBUG={settings.DEBUG}, CONN_MAX_AGE={settings.DATABASES['default']['CONN_MAX_AGE']}")

        phase("1. source data on the primary")
        create_source_data(pair, tables=tables, big_rows=args.big_rows)

        phase("2. register the connection and tables in Pulse")
        team = Group.objects.create(name="bench")
        names = table_names(tables)
        connection = register(pair, name="bench-replica-01", team=team, workers=workers, tables=names)
        say(
            f"  connection {connection.pk}: max_queries_per_hour={connection.max_queries_per_hour:,}, "
            f"max_queries_per_second={connection.max_queries_per_second:,.0f} (both the fields' maxima: budget "
            f"and rate never throttle here), max_concurrent_queries={connection.max_concurrent_queries}, "
            f"statement_timeout_ms={connection.statement_timeout_ms}"
        )
        say(
            f"  {MonitoredTable.objects.filter(connection=connection).count():,} monitored tables with timestamp_column"
        )

        phase(f"3+4. Pulse (runchecks --once --all --workers {workers}) and raw floor over {tables:,} tables")
        first = pulse_run(workers=workers, expected_tables=tables)
        show_pulse_run("Pulse run 1 (first: cost-guard EXPLAINs, first-run work)", first, tables)
        say(f"      runchecks said: {first['line']}")
        require_complete(first)
        if args.history_only:
            phase(f"3c. tables with {HISTORY_DAYS} days of history, each run the first of its hour")
            history = history_runs(connection=connection, workers=workers, tables=tables, runs=args.runs)
            phase("summary")
            say(
                f"  Pulse, {tables:,} tables with {HISTORY_DAYS} days of history, every volume verdict from "
                f"baselines.evaluate, {workers} workers: median {history['median']:,.0f}, best {history['best']:,.0f}"
                f" tables/s; evaluate {history['evaluate_ms']:.2f} ms per table; process CPU "
                f"{history['cpu']:,.0f} us/table"
            )
            say(f"  Pulse first run (EXPLAINs, first-run work): {first['tables_per_s']:,.0f} tables/s")
            say(f"  load average at end: {load_average()}")
            say(f"  total benchmark time {time.monotonic() - T0:.0f}s")
            return 0
        from connections import replica

        options = replica.session_options(statement_timeout_ms=connection.statement_timeout_ms)
        captured = capture_statements(workers=workers)
        statements = sum(len(b) for b in captured)
        say(
            f"  captured one steady-state run for the floor (untimed): {len(captured)} sessions, {statements:,} "
            f"statements = {statements / tables:.2f} per table:"
        )
        for line in describe_capture(captured):
            say(f"      {line}")
        conninfo = {
            "host": "127.0.0.1",
            "port": pair.standby.port,
            "dbname": DATA_DB,
            "user": READER,
            "password": READER_PASSWORD,
            "sslmode": "disable",
        }
        steady, raw_rates, raw_cpu, ratios = [], [], [], []
        for i in range(args.runs):
            r = pulse_run(workers=workers, expected_tables=tables)
            show_pulse_run(f"Pulse run {i + 2} (steady state)", r, tables)
            require_complete(r)
            steady.append(r)
            seconds, sent, cpu = raw_floor(conninfo=conninfo, options=options, batches=captured, workers=workers)
            raw_rates.append(tables / seconds)
            raw_cpu.append(cpu / tables * 1e6)
            ratios.append(raw_rates[-1] / r["tables_per_s"])
            say(
                f"  raw floor {i + 1}: {seconds:.2f}s = {tables / seconds:,.0f} tables/s, process CPU "
                f"{cpu / tables * 1e6:,.0f} us/table ({sent:,} statements); raw/Pulse {ratios[-1]:.2f}x"
            )
        rates = [r["tables_per_s"] for r in steady]
        best, median = max(rates), statistics.median(rates)
        raw_median, ratio = statistics.median(raw_rates), statistics.median(ratios)
        pulse_cpu = statistics.median(r["cpu"] / tables * 1e6 for r in steady)
        all_recorded = all(r["table_results"] == r["expected_results"] for r in [first, *steady])
        say(
            f"  Pulse steady state: best {best:,.0f} tables/s, median {median:,.0f} tables/s "
            f"({median * 3:,.0f} check results/s), process CPU {pulse_cpu:,.0f} us/table; every run recorded "
            f"all results: {all_recorded}"
        )
        say(
            f"  raw floor: best {max(raw_rates):,.0f}, median {raw_median:,.0f} tables/s, process CPU "
            f"{statistics.median(raw_cpu):,.0f} us/table; raw/Pulse median of pairs {ratio:.2f}x"
        )

        phase("3b. session reuse: one replica session per table (--batch-size 1) vs per batch of 200 (default)")
        single = pulse_run(workers=workers, expected_tables=tables, batch_size=1)
        require_complete(single)
        reuse_gain = median / single["tables_per_s"]
        say(
            f"  --batch-size 1: {single['tables_per_s']:,.0f} tables/s, process CPU "
            f"{single['cpu'] / tables * 1e6:,.0f} us/table; default batch of 200: {median:,.0f} tables/s "
            f"= {reuse_gain:.1f}x faster with sessions reused per batch"
        )

        phase(f"3c. tables with {HISTORY_DAYS} days of history, each run the first of its hour")
        history = history_runs(connection=connection, workers=workers, tables=tables, runs=args.runs)

        phase(f"5. check cost vs table size: {SIZE_RUNS} runs each after a warm-up")
        big = register(pair, name="bench-size", team=team, workers=1, tables=["big", "small"])
        size_tables = {t.table_name: t for t in MonitoredTable.objects.filter(connection=big)}
        from monitors.models import CheckResult

        recorded, precise = {}, {}
        for name in ("small", "big"):
            recorded[name], precise[name], statuses = size_runs(size_tables[name].pk, SIZE_RUNS)
            latest = (
                CheckResult.objects.filter(table=size_tables[name], kind="volume")
                .order_by("-id")
                .values("details")
                .first()
            )
            seen = (latest or {}).get("details") or {}
            say(
                f"  bench.{name}: statuses of the {SIZE_RUNS} runs {statuses}; volume saw "
                f"{seen.get('total_rows', 0):,.0f} rows ({seen.get('method', '?')})"
            )
        say(f"  {'kind':<14} {'small ms':>9} {'big ms':>8} {'small us':>10} {'big us':>10} {'big/small':>10}")
        size_ratios = {}
        for kind in ("schema_change", "volume", "freshness"):
            r = precise["big"][kind] / precise["small"][kind]
            size_ratios[kind] = r
            say(
                f"  {kind:<14} {recorded['small'][kind]:>9} {recorded['big'][kind]:>8} "
                f"{precise['small'][kind]:>10,.0f} {precise['big'][kind]:>10,.0f} {r:>9.2f}x"
            )
        total_small = sum(precise["small"].values())
        total_big = sum(precise["big"].values())
        say(f"  all three checks: small {total_small:,.0f} us, big {total_big:,.0f} us: {total_big / total_small:.2f}x")
        say(
            "  (the target is judged per table: on a small table the volume scan also reads the newest timestamp,"
            " so its freshness check sends no query and the per-kind split shifts)"
        )
        big.is_active = False  # keep the memory run at exactly --memory-tables tables
        big.save(update_fields=["is_active"])

        phase(f"6. peak memory: runchecks --once --all --workers {workers} in a child process")
        per_connection = tables
        connections_needed = max(1, -(-args.memory_tables // per_connection))
        for i in range(2, connections_needed + 1):
            register(pair, name=f"bench-replica-{i:02d}", team=team, workers=workers, tables=names)
        registered = MonitoredTable.objects.filter(is_active=True, connection__is_active=True).count()
        say(
            f"  {registered:,} active monitored tables: {connections_needed} connections to the same standby, "
            f"each with the same {per_connection:,} tables"
        )
        child_runs = []
        fresh = registered - per_connection
        for label in (f"first ({fresh:,} tables on their first run)", "second (steady state)"):
            before = last_result_id()
            seconds, rss, code, output = child_runchecks(["--once", "--all", "--workers", str(workers)])
            new_rows = CheckResult.objects.filter(id__gt=before, table__isnull=False)
            backfill_rows = new_rows.filter(details__has_key="backfill").count()
            recorded_rows = new_rows.count() - backfill_rows
            child_runs.append({"seconds": seconds, "rss": rss, "rate": registered / seconds})
            say(
                f"  {label}: exit {code}; {seconds:.1f}s wall (process start to exit) = {registered / seconds:,.0f} "
                f"tables/s; {recorded_rows:,} table results (expected {registered * 3:,})"
                + (f" + {backfill_rows:,} backfilled history rows" if backfill_rows else "")
                + f"; peak RSS {rss:,.0f} MiB"
            )
            for line in output.splitlines()[-60:]:
                say(f"      | {line}")
            if code not in (0, 1) or recorded_rows != registered * 3:  # 1: some check failed, a valid run
                raise BenchmarkAborted(f"child runchecks exited {code} with {recorded_rows:,} table results")
        rss_mb = max(r["rss"] for r in child_runs)
        _, idle_rss, _, _ = child_runchecks(["--once", "--workers", str(workers)])  # nothing due: fixed overhead
        say(f"  for reference, runchecks --once with nothing due: peak RSS {idle_rss:,.0f} MiB")

        phase("summary")
        summary = [
            ("machine", f"{info['nproc']} CPUs ({info['cpu']}), {info['ram']} RAM", "", ""),
            (
                f"Pulse throughput, {tables:,} tables, {workers} workers (steady state)",
                f"best {best:,.0f} / median {median:,.0f} tables/s",
                f">= {TARGET_TABLES_PER_S:,}/s",
                verdict(median >= TARGET_TABLES_PER_S),
            ),
            ("Pulse first run (EXPLAINs, first-run work)", f"{first['tables_per_s']:,.0f} tables/s", "", ""),
            (
                f"Pulse, {HISTORY_DAYS} days of history, first run of the hour",
                f"best {history['best']:,.0f} / median {history['median']:,.0f} tables/s "
                f"(evaluate {history['evaluate_ms']:.2f} ms/table)",
                f">= {TARGET_TABLES_PER_S:,}/s",
                verdict(history["median"] >= TARGET_TABLES_PER_S),
            ),
            (
                "session per table (--batch-size 1) vs per batch of 200",
                f"{single['tables_per_s']:,.0f} vs {median:,.0f} tables/s ({reuse_gain:.1f}x)",
                "",
                "",
            ),
            (
                f"child runchecks over {registered:,} tables (first / steady)",
                " / ".join(f"{r['rate']:,.0f}" for r in child_runs) + " tables/s incl. process start",
                "",
                "",
            ),
            (
                "results recorded",
                f"{3 * tables:,} per run, all runs: {all_recorded}",
                "= 3 per table",
                verdict(all_recorded),
            ),
            (
                "raw psycopg floor (same statements)",
                f"best {max(raw_rates):,.0f} / median {raw_median:,.0f} tables/s",
                "",
                "",
            ),
            (
                "raw / Pulse (median of alternating pairs)",
                f"{ratio:.2f}x",
                f"<= {TARGET_RAW_RATIO:g}x",
                verdict(ratio <= TARGET_RAW_RATIO),
            ),
            (
                "Python CPU per table, Pulse / raw",
                f"{pulse_cpu:,.0f} / {statistics.median(raw_cpu):,.0f} us",
                "",
                "",
            ),
            (
                f"check time per table, {args.big_rows:,} vs {SMALL_ROWS:,} rows",
                f"{total_big / total_small:.2f}x (" + ", ".join(f"{k} {v:.2f}x" for k, v in size_ratios.items()) + ")",
                f"<= {TARGET_SIZE_RATIO:g}x",
                verdict(total_big / total_small <= TARGET_SIZE_RATIO),
            ),
            (
                f"peak RSS, runchecks --once --all over {registered:,} tables",
                f"{rss_mb:,.0f} MiB (nothing due: {idle_rss:,.0f} MiB)",
                f"< {TARGET_RSS_MB} MB",
                verdict(rss_mb * 1.048576 < TARGET_RSS_MB),
            ),
        ]
        width = max(len(row[0]) for row in summary)
        vwidth = max(len(row[1]) for row in summary)
        for label, value, target, met in summary:
            say(f"  {label:<{width}}  {value:<{vwidth}}  {target:<10} {met}")
        say(f"  load average at end: {load_average()}")
        say(f"  total benchmark time {time.monotonic() - T0:.0f}s")
        return 0
    except BenchmarkAborted as exc:
        say(f"ABORTED: {exc}")
        return 1
    finally:
        phase("cleanup")
        if pair is not None:
            pair.stop()
            say("  replica pair stopped")
        drop_bench_db()
        say(f"  database {BENCH_DB} dropped")


if __name__ == "__main__":
    sys.exit(main())
