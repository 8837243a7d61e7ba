"""Blocks per table on the standby of a runchecks DAEMON's steady sweeps (kept, warm sessions) next to
`runchecks --once --all`, and the first pass's replica time, blocks and statements per table (before/after).

Usage: .venv/bin/python benchmarks/warm_sweeps.py [--tables 200] [--rows 50000] [--sweeps 4] [--before DIR]

Throwaway servers as in soda_side_by_side.py (whose setup it reuses): a Pulse database
`pulse_bench_warm_<pid>` on 127.0.0.1:5432 and a primary + hot standby pair, --tables tables
`bench.tNNNN (id bigint, created_at timestamptz, payload text)` of --rows rows with an index on created_at
(twice as many with --before), one Connection at defaults except the replica time share, lifted to 100 % (burst an
hour) so that nothing is held back: these are blocks and replica time, not throughput.

1. First pass: `runchecks --once --all` over tables never checked: blocks, replica time charged to the share and
   statements (Pulse's own count), per table. With --before DIR (a checkout of older code, e.g.
   `git archive <commit> | tar -x -C DIR`), the same over a second set of identical tables with that code first.
2. `runchecks --once --all`, three steady runs: a new session per pass, blocks per table.
3. `runchecks` as a daemon (--tick 1): every table made due, one sweep at a time, --sweeps sweeps; blocks per
   table per sweep (read 11 s after the sweep: a kept backend flushes its statistics within 10 s of going idle),
   and the standby's Pulse backends (pids) after each sweep: the first sweep opens the session, the next reuse it.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("PULSE_BENCH_TAG", "warm")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import soda_side_by_side as side
from runchecks_throughput import code_version, phase, say

ROOT = side.ROOT
STATS_FLUSH_SECONDS = 11.0


def pulse_backends(pair) -> list[int]:
    with pair.standby.connect() as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'pulse' AND datname = %s ORDER BY pid",
            (side.DATA_DB,),
        ).fetchall()
    return [pid for (pid,) in rows]


def statements(connection) -> int:
    from django.db.models import Sum

    from connections.models import QueryAllowance

    used = QueryAllowance.objects.filter(connection=connection).aggregate(total=Sum("queries_used"))["total"]
    return used or 0


def lifted(connection):
    connection.replica_time_share_percent, connection.replica_time_burst_seconds = 100, 3600
    connection.save(update_fields=["replica_time_share_percent", "replica_time_burst_seconds"])
    return connection


def only_active(active, *others) -> None:
    active.is_active = True
    active.save(update_fields=["is_active"])
    for other in others:
        other.is_active = False
        other.save(update_fields=["is_active"])


def first_pass(pair, connection, *, tables: int, code: Path, overhead: int, label: str) -> None:
    cmd = [sys.executable, str(code / "manage.py"), "runchecks", "--once", "--all"]
    sent, charged = statements(connection), side.charged_ms()
    seconds, blocks, exit_code, output = side.measured(pair, cmd, cwd=code, overhead=overhead)
    ms = side.charged_ms() - charged
    say(
        f"  {label}: {blocks / tables:.1f} blocks/table, {ms / tables:.2f} ms replica time/table, "
        f"{(statements(connection) - sent) / tables:.2f} statements/table ({seconds:.2f} s process, exit {exit_code})"
    )
    say("\n".join("    " + line.strip() for line in output.splitlines()[-3:]))


def sweep(pair, connection, *, tables: int, timeout: float = 600.0) -> float:
    """Make every table of `connection` due and wait until the daemon has checked them all; seconds taken."""
    from django.utils import timezone

    from monitors.models import MonitoredTable

    marker = timezone.now()
    MonitoredTable.objects.filter(connection=connection).update(next_check_at=marker)
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        left = MonitoredTable.objects.filter(connection=connection, next_check_at__lte=marker).count()
        if not left:
            return time.monotonic() - started
        time.sleep(0.25)
    raise RuntimeError(f"the daemon did not check {tables} tables within {timeout:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", type=int, default=200)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--sweeps", type=int, default=4)
    parser.add_argument("--before", type=Path, default=None, help="a checkout of older code for the first pass")
    args = parser.parse_args()
    say("Pulse: a daemon's warm sweeps next to --once, and the first pass")
    say(f"command: {shlex.join([os.path.relpath(sys.executable, ROOT), *sys.argv])}")
    say(f"Pulse code: {code_version()}; nproc {os.cpu_count()}; load {os.getloadavg()[0]:.2f}")
    pair = None
    daemon = None
    try:
        phase("setup")
        side.setup_django()
        from pulse_project.pgcluster import ReplicaPair

        pair = ReplicaPair.create()
        sets = 2 if args.before else 1
        side.create_data(pair, tables=args.tables * sets, rows=args.rows, sizes=[], size_tables=0, throughput_tables=0)
        names = [f"t{i:04d}" for i in range(1, args.tables * sets + 1)]
        after, _ = side.register(pair, name="standby", schema="bench", tables=names[: args.tables])
        lifted(after)
        before = None
        if args.before:
            before, _ = side.register(pair, name="standby-before", schema="bench", tables=names[args.tables :])
            lifted(before)
        overhead = side.standby_blocks(pair)
        overhead = side.standby_blocks(pair) - overhead
        say(f"  reading the counters costs {overhead} blocks (subtracted); time share lifted to 100 %")

        phase("first pass: runchecks --once --all over tables never checked")
        if before is not None:
            only_active(before, after)
            first_pass(pair, before, tables=args.tables, code=args.before.resolve(), overhead=overhead, label="before")
            only_active(after, before)
        first_pass(pair, after, tables=args.tables, code=ROOT, overhead=overhead, label="after")

        phase("runchecks --once --all, steady (a new session each pass)")
        cmd = [sys.executable, str(ROOT / "manage.py"), "runchecks", "--once", "--all"]
        once = []
        for run in range(1, 4):
            seconds, blocks, exit_code, _ = side.measured(pair, cmd, cwd=ROOT, overhead=overhead)
            once.append(blocks / args.tables)
            say(f"  --once run {run}: {once[-1]:.1f} blocks/table ({seconds:.2f} s process, exit {exit_code})")
        say(f"  median {statistics.median(once):.1f} blocks/table")

        phase(f"runchecks daemon (--tick 1), {args.sweeps} sweeps of every table made due")
        log = Path(os.environ.get("TMPDIR", "/tmp")) / f"warm_sweeps_daemon_{os.getpid()}.log"
        say(f"  daemon's output: {log}")
        daemon = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "runchecks", "--tick", "1"],
            cwd=ROOT,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
        )
        warm = []
        for number in range(1, args.sweeps + 1):
            time.sleep(STATS_FLUSH_SECONDS)
            start_blocks = side.standby_blocks(pair)
            seconds = sweep(pair, after, tables=args.tables)
            time.sleep(STATS_FLUSH_SECONDS)
            blocks = side.standby_blocks(pair) - start_blocks - overhead
            pids = pulse_backends(pair)
            say(
                f"  sweep {number}: {blocks / args.tables:.1f} blocks/table, {seconds:.1f} s; "
                f"Pulse backends on the standby after it: {pids}"
            )
            if number > 1:
                warm.append(blocks / args.tables)
        if warm:
            say(
                f"  daemon's warm sweeps: median {statistics.median(warm):.1f} blocks/table "
                f"(--once: {statistics.median(once):.1f}; load {os.getloadavg()[0]:.2f})"
            )
        return 0
    finally:
        if daemon is not None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=60)
            except subprocess.TimeoutExpired:
                daemon.kill()
        if pair is not None:
            pair.stop()
        from django.db import connections

        connections.close_all()
        import psycopg

        with psycopg.connect(**side.PULSE_SERVER, dbname="postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {side.BENCH_DB} WITH (FORCE)")


if __name__ == "__main__":
    sys.exit(main())
