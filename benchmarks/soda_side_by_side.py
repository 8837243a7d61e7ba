"""Pulse and Soda Core side by side on one hot standby: whole-process wall time and blocks the standby touches.

Usage: .venv/bin/python benchmarks/soda_side_by_side.py [--tables 200] [--rows 50000] [--runs 3]
                                                        [--soda /work/soda-venv/bin/soda] [--sizes 10000,...]
                                                        [--size-tables 2]

Everything runs against throwaway servers: a Pulse database `pulse_bench_<PULSE_BENCH_TAG or soda>_<pid>` on 127.0.0.1:5432
(migrated here, dropped at the end) and a primary + hot standby pair from `pulse_project.pgcluster`.

1. On the primary: --tables tables `bench.tNNNN (id bigint, created_at timestamptz, payload text)` of --rows
   rows each (one a minute back from now), an index on created_at; for the size series, --size-tables tables
   `sizes.s<rows>_<n>` per size in --sizes (one row a second back from now, same index); VACUUM (ANALYZE);
   a login role with SELECT grants; the standby catches up.
2. Pulse: one Connection to the standby with DEFAULT settings (nothing but host, port, database, user,
   password, sslmode=disable) and a MonitoredTable per table with timestamp_column = created_at.
3. Wall time, whole process (start-up included), alternating Pulse and Soda runs:
   Pulse `manage.py runchecks --once --all` (production settings: PULSE_DEBUG=off) — the first run (cost-guard
   EXPLAINs and the one-off history backfill) is reported on its own, then --runs steady-state runs;
   Soda Core `soda scan` with `row_count > 0` and `freshness(created_at) < 1d` for every table, --runs runs.
   Medians of the runs. Both with bytecode cached (PYTHONDONTWRITEBYTECODE unset; a warm-up run first).
4. Blocks the standby touched per run: blks_hit + blks_read of the data database in the standby's
   pg_stat_database, read before and after each run (after the process has exited and its statistics are
   flushed), minus what the reading itself adds (measured with no run in between).
5. Size series: Pulse steady-state runs over each size's tables alone (`--table ID ...`), blocks per table.
6. Throughput (--throughput-tables, small tables `many.mNNNNN` of 300 rows on a connection of their own, at
   defaults): tables per second of `runchecks --once --all --workers 4` from its summary line (results recorded),
   then two `runchecks --once --workers 4` processes at once over the same tables made due.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from runchecks_throughput import code_version, phase, say  # noqa: E402  (this directory: the output helpers)

from pulse_project.pgcluster import ReplicaPair  # noqa: E402

# One per run (two runs never drop each other's); PULSE_BENCH_TAG names who runs it on a shared server.
BENCH_DB = f"pulse_bench_{os.environ.get('PULSE_BENCH_TAG', 'soda')}_{os.getpid()}"
PULSE_SERVER = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
DATA_DB = "benchdata"
READER = "bench_reader"
READER_PASSWORD = "bench-" + secrets.token_hex(8)


def create_data(
    pair: ReplicaPair, *, tables: int, rows: int, sizes: list[int], size_tables: int, throughput_tables: int
) -> None:
    with pair.primary.connect() as conn:
        conn.execute(f"CREATE DATABASE {DATA_DB}")
    with pair.primary.connect(DATA_DB) as conn:
        conn.execute(f"CREATE ROLE {READER} LOGIN PASSWORD '{READER_PASSWORD}'")
        for schema in ("bench", "sizes"):
            conn.execute(f"CREATE SCHEMA {schema}")
            conn.execute(f"GRANT USAGE ON SCHEMA {schema} TO {READER}")
            conn.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT SELECT ON TABLES TO {READER}")
        started = time.monotonic()
        conn.execute(
            f"""
            DO $$
            BEGIN
              FOR i IN 1..{tables} LOOP
                EXECUTE format('CREATE TABLE bench.%I (id bigint, created_at timestamptz, payload text)',
                               't' || lpad(i::text, 4, '0'));
                EXECUTE format('INSERT INTO bench.%I SELECT g, now() - g * interval ''1 minute'','
                               ' ''payload '' || g FROM generate_series(1, {rows}) g', 't' || lpad(i::text, 4, '0'));
                EXECUTE format('CREATE INDEX ON bench.%I (created_at)', 't' || lpad(i::text, 4, '0'));
              END LOOP;
            END $$
            """
        )
        say(f"  {tables} tables x {rows:,} rows + index: {time.monotonic() - started:.0f}s")
        for size in sizes:
            started = time.monotonic()
            for n in range(1, size_tables + 1):
                name = f"s{size}_{n}"
                conn.execute(f"CREATE TABLE sizes.{name} (id bigint, created_at timestamptz, payload text)")
                conn.execute(
                    f"INSERT INTO sizes.{name} SELECT g, now() - g * interval '1 second', 'payload ' || g"
                    f" FROM generate_series(1, {size}) g"
                )
                conn.execute(f"CREATE INDEX ON sizes.{name} (created_at)")
            say(f"  {size_tables} tables x {size:,} rows + index: {time.monotonic() - started:.0f}s")
        started = time.monotonic()
        conn.execute("CREATE SCHEMA many")
        conn.execute(f"GRANT USAGE ON SCHEMA many TO {READER}")
        conn.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA many GRANT SELECT ON TABLES TO {READER}")
        for first in range(1, throughput_tables + 1, 500):
            conn.execute(
                f"""
                DO $$
                BEGIN
                  FOR i IN {first}..{min(throughput_tables, first + 499)} LOOP
                    EXECUTE format('CREATE TABLE many.%I (id bigint, created_at timestamptz, payload text)',
                                   'm' || lpad(i::text, 5, '0'));
                    EXECUTE format('INSERT INTO many.%I SELECT g, now() - g * interval ''30 seconds'','
                                   ' ''payload '' || g FROM generate_series(1, 300) g', 'm' || lpad(i::text, 5, '0'));
                    EXECUTE format('CREATE INDEX ON many.%I (created_at)', 'm' || lpad(i::text, 5, '0'));
                  END LOOP;
                END $$
                """
            )
        say(f"  {throughput_tables} tables x 300 rows + index: {time.monotonic() - started:.0f}s")
        started = time.monotonic()
        conn.execute("VACUUM (ANALYZE)")
        say(f"  VACUUM (ANALYZE): {time.monotonic() - started:.0f}s")
    pair.wait_for_replay(timeout=3600)


def setup_django() -> None:
    from cryptography.fernet import Fernet

    os.environ["DJANGO_SETTINGS_MODULE"] = "pulse_project.settings"
    os.environ["PULSE_DATABASE_URL"] = "postgres://{user}@{host}:{port}/".format(**PULSE_SERVER) + BENCH_DB
    os.environ["PULSE_DEBUG"] = "off"
    os.environ["PULSE_CONNECTION_ALLOW_LOCAL"] = "on"
    os.environ.setdefault("PULSE_SECRET_KEY", secrets.token_urlsafe(50))
    os.environ.setdefault("PULSE_ENCRYPTION_KEY", Fernet.generate_key().decode())
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    with psycopg.connect(**PULSE_SERVER, dbname="postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {BENCH_DB}")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def register(pair: ReplicaPair, *, name: str, schema: str, tables: list[str], active: bool = True):
    from django.contrib.auth.models import Group

    from connections.models import Connection
    from monitors.models import MonitoredTable

    connection = Connection(
        name=name,
        team=Group.objects.get_or_create(name="bench")[0],
        is_active=active,
        host="127.0.0.1",
        port=pair.standby.port,
        database=DATA_DB,
        username=READER,
        sslmode="disable",
    )  # every guardrail at its default
    connection.set_password(READER_PASSWORD)
    connection.save()
    created = MonitoredTable.objects.bulk_create(
        [
            MonitoredTable(connection=connection, schema_name=schema, table_name=table, timestamp_column="created_at")
            for table in tables
        ]
    )
    return connection, {t.table_name: t.id for t in created}


def standby_blocks(pair: ReplicaPair) -> int:
    """blks_hit + blks_read of the data database on the standby, as flushed so far."""
    time.sleep(1.2)  # backends flush their statistics at exit; the reader's own at most once a second
    with pair.standby.connect() as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        return conn.execute(
            "SELECT blks_hit + blks_read FROM pg_stat_database WHERE datname = %s", (DATA_DB,)
        ).fetchone()[0]


def timed(cmd: list[str], *, cwd: Path) -> tuple[float, int, str]:
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=os.environ.copy())
    return time.perf_counter() - started, done.returncode, (done.stdout + done.stderr).strip()


def charged_ms() -> float:
    """Replica time charged to the time share of every connection this hour (Pulse's database)."""
    from django.db.models import Sum

    from connections.models import QueryAllowance

    return QueryAllowance.objects.aggregate(total=Sum("time_hour_ms"))["total"] or 0.0


def measured(pair: ReplicaPair, cmd: list[str], *, cwd: Path, overhead: int) -> tuple[float, int, int, str]:
    before, charged = standby_blocks(pair), charged_ms()
    seconds, code, output = timed(cmd, cwd=cwd)
    blocks = standby_blocks(pair) - before - overhead
    if "runchecks" in cmd:
        output += f"\n    replica time charged to the share: {charged_ms() - charged:,.0f} ms"
    return seconds, blocks, code, output


def soda_files(directory: Path, pair: ReplicaPair, tables: list[str]) -> tuple[Path, Path]:
    config = directory / "configuration.yml"
    config.write_text(
        "data_source standby:\n"
        "  type: postgres\n"
        "  host: 127.0.0.1\n"
        f"  port: {pair.standby.port}\n"
        f"  username: {READER}\n"
        f"  password: {READER_PASSWORD}\n"
        f"  database: {DATA_DB}\n"
        "  schema: bench\n"
    )
    checks = directory / "checks.yml"
    checks.write_text("".join(f"checks for {t}:\n  - row_count > 0\n  - freshness(created_at) < 1d\n" for t in tables))
    return config, checks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", type=int, default=200)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--soda", default="/work/soda-venv/bin/soda")
    parser.add_argument("--sizes", default="10000,100000,1000000,10000000")
    parser.add_argument("--size-tables", type=int, default=2)
    parser.add_argument("--throughput-tables", type=int, default=2000)
    parser.add_argument(
        "--throughput-share",
        type=float,
        default=None,
        help="replica time share (%%) of the throughput connection, burst an hour (default: the defaults)",
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    say("Pulse vs Soda Core, side by side")
    say(f"command: {shlex.join([os.path.relpath(sys.executable, ROOT), *sys.argv])}")
    say(f"Pulse code: {code_version()}; nproc {os.cpu_count()}; load {os.getloadavg()[0]:.2f}")
    soda = Path(args.soda)
    if soda.exists():
        version = subprocess.run([str(soda), "--version"], capture_output=True, text=True).stdout.strip()
        say(f"Soda: {soda} ({version})")
    else:
        say(f"Soda: not installed at {soda}; Pulse's figures only")
    pair = None
    try:
        phase("setup")
        setup_django()
        pair = ReplicaPair.create()
        create_data(
            pair,
            tables=args.tables,
            rows=args.rows,
            sizes=sizes,
            size_tables=args.size_tables,
            throughput_tables=args.throughput_tables,
        )
        names = [f"t{i:04d}" for i in range(1, args.tables + 1)]
        size_names = {size: [f"s{size}_{n}" for n in range(1, args.size_tables + 1)] for size in sizes}
        connection, _ = register(pair, name="standby", schema="bench", tables=names)
        # The size series' tables: on a connection of their own, inactive until their turn.
        sized, ids = register(
            pair, name="standby-sizes", schema="sizes", tables=[n for g in size_names.values() for n in g], active=False
        )
        many = [f"m{i:05d}" for i in range(1, args.throughput_tables + 1)]
        throughput, _ = register(pair, name="standby-many", schema="many", tables=many, active=False)
        say(
            f"  connection at defaults: replica time share {connection.replica_time_share_percent:g}% "
            f"(burst {connection.replica_time_burst_seconds:g} s), max_concurrent_queries "
            f"{connection.max_concurrent_queries}, max_queries_per_hour {connection.max_queries_per_hour:,}, "
            f"max_queries_per_second {connection.max_queries_per_second:,.0f}"
        )
        first, second = standby_blocks(pair), standby_blocks(pair)
        overhead = second - first
        say(f"  reading the counters costs {overhead} blocks (subtracted)")
        pulse = [sys.executable, str(ROOT / "manage.py"), "runchecks", "--once"]
        pulse_cmd = [*pulse, "--all"]

        phase("Pulse first run (EXPLAINs for the cost guard, one-off history backfill)")
        seconds, blocks, code, output = measured(pair, pulse_cmd, cwd=ROOT, overhead=overhead)
        say(f"  {seconds:.2f} s, {blocks:,} blocks ({blocks / args.tables:.1f}/table), exit {code}")
        say("\n".join("  " + line.strip() for line in output.splitlines()[-2:]))

        tmp = Path(tempfile.mkdtemp(prefix="soda-bench-"))
        config, checks = soda_files(tmp, pair, names)
        soda_cmd = [str(soda), "scan", "-d", "standby", "-c", str(config), str(checks)]
        if soda.exists():
            timed(soda_cmd, cwd=tmp)  # warm-up: bytecode, page cache

        phase(f"steady state: {args.runs} runs each, alternating")
        pulse_runs, soda_runs = [], []
        for run in range(1, args.runs + 1):
            seconds, blocks, code, output = measured(pair, pulse_cmd, cwd=ROOT, overhead=overhead)
            pulse_runs.append((seconds, blocks))
            say(
                f"  Pulse run {run}: {seconds:.2f} s, {blocks:,} blocks ({blocks / args.tables:.1f}/table), exit {code}"
            )
            say("\n".join("    " + line.strip() for line in output.splitlines()[-2:]))
            if soda.exists():
                seconds, blocks, code, output = measured(pair, soda_cmd, cwd=tmp, overhead=overhead)
                soda_runs.append((seconds, blocks))
                tail = [line for line in output.splitlines() if "checks" in line.lower() or "pass" in line.lower()]
                say(
                    f"  Soda run {run}: {seconds:.2f} s, {blocks:,} blocks ({blocks / args.tables:.1f}/table), exit {code}"
                )
                say("    " + (tail[-1] if tail else output[-300:]))

        phase("summary")
        pulse_s = statistics.median(s for s, _ in pulse_runs)
        pulse_b = statistics.median(b for _, b in pulse_runs)
        say(f"  Pulse: median wall {pulse_s:.2f} s, median blocks {pulse_b:,.0f} ({pulse_b / args.tables:.1f}/table)")
        if soda_runs:
            soda_s = statistics.median(s for s, _ in soda_runs)
            soda_b = statistics.median(b for _, b in soda_runs)
            say(f"  Soda:  median wall {soda_s:.2f} s, median blocks {soda_b:,.0f} ({soda_b / args.tables:.1f}/table)")
            say(f"  Pulse/Soda wall time {pulse_s / soda_s:.3f} (target <= 0.1)")
            say(f"  Pulse/Soda blocks {pulse_b / soda_b:.3f} (target <= 0.05)")

        phase("replica time per table in the steady state (the share lifted so that nothing is held back)")
        connection.replica_time_share_percent, connection.replica_time_burst_seconds = 100, 3600
        connection.save(update_fields=["replica_time_share_percent", "replica_time_burst_seconds"])
        per_table = []
        for _ in range(3):
            charged = charged_ms()
            seconds, blocks, code, output = measured(pair, pulse_cmd, cwd=ROOT, overhead=overhead)
            per_table.append((charged_ms() - charged) / args.tables)
            say(f"  {seconds:.2f} s, {blocks:,} blocks, exit {code}; {per_table[-1]:.2f} ms of replica time per table")
        median = statistics.median(per_table)
        share = median * 10_000 / 300 / 1000 * 100
        say(
            f"  median {median:.2f} ms per table: 10,000 tables every 5 minutes would use {share:.1f}% of one "
            f"backend (default share 5%)"
        )
        connection.replica_time_share_percent, connection.replica_time_burst_seconds = 5, 15
        connection.save(update_fields=["replica_time_share_percent", "replica_time_burst_seconds"])

        if sizes:
            phase("blocks per table by table size (Pulse steady state, each size's tables alone)")
            say("  (this connection's time share lifted to 100% so that no check is held back: blocks, not time)")
            say("  marginal = (blocks of a run over the size's tables - blocks of a run over one of them) per extra")
            say("  table: what a table costs beyond the session's fixed cost")
            connection.is_active, sized.is_active = False, True
            sized.replica_time_share_percent, sized.replica_time_burst_seconds = 100, 3600
            connection.save(update_fields=["is_active"])
            sized.save(update_fields=["is_active", "replica_time_share_percent", "replica_time_burst_seconds"])
            for size, group in size_names.items():
                every = [*pulse, *[a for n in group for a in ("--table", str(ids[n]))]]
                one = [*pulse, "--table", str(ids[group[0]])]
                measured(pair, every, cwd=ROOT, overhead=overhead)  # first run: EXPLAINs, backfill
                all_runs = [measured(pair, every, cwd=ROOT, overhead=overhead)[1] for _ in range(3)]
                one_runs = [measured(pair, one, cwd=ROOT, overhead=overhead)[1] for _ in range(3)]
                marginal = (statistics.median(all_runs) - statistics.median(one_runs)) / max(1, len(group) - 1)
                say(
                    f"  {size:>11,} rows: {statistics.median(all_runs):,.0f} blocks for {len(group)} tables, "
                    f"{statistics.median(one_runs):,.0f} for one; marginal {marginal:.1f} blocks/table"
                )
        if args.throughput_tables:
            lifted = args.throughput_share is not None
            phase(
                f"throughput over {args.throughput_tables:,} small tables "
                + (f"(time share {args.throughput_share:g}%, burst an hour)" if lifted else "(connection at defaults)")
            )
            from monitors.models import MonitoredTable

            if lifted:
                throughput.replica_time_share_percent = args.throughput_share
                throughput.replica_time_burst_seconds = 3600
                throughput.save(update_fields=["replica_time_share_percent", "replica_time_burst_seconds"])
            connection.is_active, throughput.is_active = False, True
            connection.save(update_fields=["is_active"])
            throughput.save(update_fields=["is_active"])
            sized.is_active = False
            sized.save(update_fields=["is_active"])
            cmd = [*pulse, "--all", "--workers", "4"]
            for run in ("first", "steady 1", "steady 2", "steady 3"):
                seconds, blocks, code, output = measured(pair, cmd, cwd=ROOT, overhead=overhead)
                cycle = float(re.search(r" in ([0-9.]+)s", output).group(1))
                say(
                    f"  one process, {run}: {args.throughput_tables / cycle:,.0f} tables/s ({cycle:.2f} s pass, "
                    f"{seconds:.2f} s process), exit {code}"
                )
                say("\n".join("    " + line.strip() for line in output.splitlines()[-2:]))
            for run in (1, 2):
                MonitoredTable.objects.filter(connection=throughput).update(next_check_at=None)
                two = [*pulse, "--workers", "4"]
                started = time.perf_counter()
                children = [
                    subprocess.Popen(two, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                    for _ in range(2)
                ]
                outputs = [child.communicate()[0] for child in children]
                wall = time.perf_counter() - started
                cycles = [float(m.group(1)) for o in outputs if (m := re.search(r" in ([0-9.]+)s", o))]
                checked = [int(m.group(1)) for o in outputs if (m := re.search(r"checked (\d+) tables", o))]
                say(
                    f"  two processes, run {run}: {sum(checked):,} tables ({checked}) in passes of "
                    f"{', '.join(f'{c:.2f}' for c in cycles)} s: {sum(checked) / max(cycles):,.0f} tables/s "
                    f"({wall:.2f} s wall for both processes)"
                )
        return 0
    finally:
        if pair is not None:
            pair.stop()
        from django.db import connections

        connections.close_all()
        with psycopg.connect(**PULSE_SERVER, dbname="postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")


if __name__ == "__main__":
    sys.exit(main())
