"""Measure how `runchecks` recovers from faults injected while a batch is in flight.

Usage: .venv/bin/python benchmarks/fault_recovery.py [--tables 20] [--outage 30] [--tick 5]

Everything runs on throwaway servers: Pulse's own database on a server of its own (so it can be
restarted and stopped) and a primary + hot standby pair, all from `pulse_project.pgcluster`. Two
`runchecks` daemons with default options (4 workers, 15 s lease, --tick 5 unless told) check --tables
tables of one connection every 10 s. A batch is held in flight by a control event: an ACCESS EXCLUSIVE
lock on the last table, taken on the primary, blocks the standby's reads of it; the other tables of the
batch have been checked (results obtained before the fault) when the fault is injected.

1. Pulse's database restarted (`pg_ctl restart -m fast`) mid-batch, then the lock released.
2. Pulse's database down for --outage seconds (a real outage) with the batch in flight; the lock is
   released a second into the outage, so the batch finishes on the replica while the database is away.
3. One daemon SIGKILLed mid-batch (it alone claimed the batch; the other daemon was started after).
4. The hot standby stopped for 10 s, then started (for comparison: a replica fault, not Pulse's).

For each: seconds from the database being back (or the kill) until every table has a result started
after it; whether every result of the held batch is recorded; whether every daemon is still running.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from pulse_project.pgcluster import ReplicaPair, standalone_server  # noqa: E402

READER, READER_PASSWORD, DB = "pulse_reader", "bench-reader-pw", "shop"


LOGS = ROOT / "var" / "fault_recovery"


def start_daemon(url: str, tick: float, spool: Path) -> subprocess.Popen:
    """A runchecks daemon; its output goes to var/fault_recovery/<pid>.log (a pipe nobody reads would fill)."""
    LOGS.mkdir(parents=True, exist_ok=True)
    log = open(LOGS / f"daemon-{time.time_ns()}.log", "w")  # noqa: SIM115 (closed with the process)
    env = {
        **os.environ,
        "PULSE_DATABASE_URL": url,
        "PULSE_CONNECTION_ALLOW_LOCAL": "on",
        "PULSE_SPOOL_DIR": str(spool),
        "PYTHONUNBUFFERED": "1",
    }
    return subprocess.Popen(
        [sys.executable, "manage.py", "runchecks", "--tick", str(tick)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def wait_for(condition, timeout: float, interval: float = 0.1) -> float | None:
    """Seconds until `condition()` held, or None after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if condition():
                return time.monotonic() - started
        except psycopg.OperationalError:
            pass
        time.sleep(interval)
    return None


class Bench:
    def __init__(self, *, tables: int, tick: float):
        self.pair = ReplicaPair.create()
        self.pulse = standalone_server()
        self.url = f"postgres://postgres@127.0.0.1:{self.pulse.port}/pulse"
        self.spool = Path(self.pulse.data_dir.parent) / "spool"
        self.tick = tick
        self.names = [f"t{n:02d}" for n in range(tables)]
        try:
            self._load_replica()
            self._load_pulse()
        except BaseException:
            self.stop()
            raise

    def _load_replica(self) -> None:
        with self.pair.primary.connect() as conn:
            conn.execute(f"CREATE DATABASE {DB}")
        with self.pair.primary.connect(DB) as conn:
            conn.execute(f"CREATE ROLE {READER} LOGIN PASSWORD '{READER_PASSWORD}'")
            for name in self.names:
                conn.execute(f"CREATE TABLE {name} (id int, created_at timestamptz DEFAULT now())")
                conn.execute(f"INSERT INTO {name} (id) SELECT generate_series(1, 100)")
                conn.execute(f"GRANT SELECT ON {name} TO {READER}")
        self.pair.wait_for_replay()

    def _load_pulse(self) -> None:
        with self.pulse.connect() as conn:
            conn.execute("CREATE DATABASE pulse")
        os.environ["DJANGO_SETTINGS_MODULE"] = "pulse_project.settings"
        os.environ["PULSE_DATABASE_URL"] = self.url
        os.environ["PULSE_CONNECTION_ALLOW_LOCAL"] = "on"
        import django

        django.setup()
        from django.contrib.auth.models import Group
        from django.core.management import call_command

        from connections.models import Connection
        from monitors.models import MonitoredTable

        call_command("migrate", verbosity=0)
        connection = Connection(
            name="bench",
            team=Group.objects.create(name="bench"),
            host="127.0.0.1",
            port=self.pair.standby.port,
            database=DB,
            username=READER,
            sslmode="disable",
            statement_timeout_ms=60_000,  # lock_timeout 30 s: the lock holds the batch until released
        )
        connection.set_password(READER_PASSWORD)
        connection.save()
        self.table_ids = [
            MonitoredTable.objects.create(connection=connection, table_name=n, check_interval_seconds=10).id
            for n in self.names
        ]
        from django.db import connection as pulse_db

        pulse_db.close()

    def rows(self, sql: str, params=()) -> list[tuple]:
        with psycopg.connect(self.url, connect_timeout=2, autocommit=True) as conn:
            return conn.execute(sql, params).fetchall()

    def checked_since(self, since: datetime) -> set[int]:
        return {
            r[0]
            for r in self.rows(
                "SELECT DISTINCT table_id FROM monitors_checkresult WHERE kind = 'volume' AND started_at > %s"
                " AND details->>'backfill' IS NULL",
                [since],
            )
        }

    def passed_since(self, since: datetime) -> set[int]:
        return {
            r[0]
            for r in self.rows(
                "SELECT DISTINCT table_id FROM monitors_checkresult WHERE kind = 'volume' AND status = 'pass'"
                " AND started_at > %s",
                [since],
            )
        }

    def held_batch_recorded(self, started: datetime) -> bool:
        """Every table has a result from the batch that also checked the held table, started after `started`."""
        held = self.table_ids[-1]
        for (at,) in self.rows(
            "SELECT started_at FROM monitors_checkresult WHERE table_id = %s AND kind = 'volume' AND started_at > %s",
            [held, started],
        ):
            tables = {
                r[0]
                for r in self.rows("SELECT DISTINCT table_id FROM monitors_checkresult WHERE started_at = %s", [at])
            }
            if set(self.table_ids) <= tables:
                return True
        return False

    def blocked(self) -> bool:
        with self.pair.standby.connect() as conn:
            return bool(
                conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pulse' AND wait_event_type = 'Lock'"
                ).fetchone()[0]
            )

    def lock(self) -> psycopg.Connection:
        holder = psycopg.connect(**self.pair.primary.dsn(dbname=DB))
        holder.execute(f"LOCK TABLE {self.names[-1]} IN ACCESS EXCLUSIVE MODE")
        self._flush_wal()
        return holder

    def release(self, holder: psycopg.Connection) -> None:
        holder.rollback()
        holder.close()
        self._flush_wal()

    def _flush_wal(self) -> None:
        with self.pair.primary.connect() as conn:
            conn.execute("SELECT pg_current_xact_id()")

    def steady(self) -> None:
        assert wait_for(lambda: self.checked_since(datetime(2000, 1, 1, tzinfo=UTC)) >= set(self.table_ids), 120)

    def stop(self) -> None:
        self.pair.stop()
        self.pulse.stop(mode="immediate")
        shutil.rmtree(self.pulse.data_dir.parent, ignore_errors=True)


def now() -> datetime:
    return datetime.now(UTC)


def report(name: str, back: float | None, recorded: bool, daemons) -> None:
    alive = all(d.poll() is None for d in daemons)
    figure = "not within 120 s" if back is None else f"{back:.1f} s"
    print(
        f"{name}: every table checked again {figure} after; held batch recorded: {recorded}; daemons running: {alive}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, default=20)
    parser.add_argument("--outage", type=float, default=30.0)
    parser.add_argument("--tick", type=float, default=5.0)
    args = parser.parse_args()
    bench = Bench(tables=args.tables, tick=args.tick)
    daemons = []
    try:
        daemons = [start_daemon(bench.url, args.tick, bench.spool) for _ in range(2)]
        bench.steady()

        # 1. Pulse's database restarted mid-batch.
        started = now()
        holder = bench.lock()
        assert wait_for(bench.blocked, 60)
        bench.pulse.stop(mode="fast")
        bench.pulse.start()
        back = now()
        bench.release(holder)
        took = wait_for(lambda: bench.checked_since(back) >= set(bench.table_ids), 120)
        report("Pulse's DB restarted mid-batch", took, bench.held_batch_recorded(started), daemons)

        # 2. Pulse's database down for --outage seconds with a batch in flight.
        started = now()
        holder = bench.lock()
        assert wait_for(bench.blocked, 60)
        bench.pulse.stop(mode="fast")
        time.sleep(1)
        bench.release(holder)
        time.sleep(max(0.0, args.outage - 1))
        bench.pulse.start()
        back = now()
        took = wait_for(lambda: bench.checked_since(back) >= set(bench.table_ids), 120)
        spooled = any(bench.spool.glob("*.json*"))
        report(f"Pulse's DB down {args.outage:g} s mid-batch", took, bench.held_batch_recorded(started), daemons)
        print(f"  spool empty afterwards: {not spooled}")

        # 3. A daemon SIGKILLed mid-batch.
        for daemon in daemons:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=120)
        holder = bench.lock()
        victim = start_daemon(bench.url, args.tick, bench.spool)
        rows = bench.rows("UPDATE monitors_monitoredtable SET next_check_at = now() RETURNING id")
        assert len(rows) == len(bench.table_ids)
        assert wait_for(bench.blocked, 60)
        survivor = start_daemon(bench.url, args.tick, bench.spool)
        time.sleep(6)  # the survivor is up and ticking; the victim has renewed its lease at least once
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        killed = now()
        bench.release(holder)
        took = wait_for(lambda: bench.checked_since(killed) >= set(bench.table_ids), 120)
        daemons = [survivor]
        report("A daemon SIGKILLed mid-batch", took, True, daemons)

        # 4. The replica down for 10 s (not a Pulse fault: errors while it is away, then passes again).
        bench.pair.standby.stop(mode="fast")
        time.sleep(10)
        bench.pair.standby.start()
        back = now()
        took = wait_for(lambda: bench.passed_since(back) >= set(bench.table_ids), 120)
        report("The replica down 10 s", took, True, daemons)
    finally:
        for daemon in daemons:
            if daemon.poll() is None:
                daemon.send_signal(signal.SIGTERM)
                daemon.wait(timeout=120)
        bench.stop()
        print(f"daemon logs: {LOGS}")


if __name__ == "__main__":
    main()
