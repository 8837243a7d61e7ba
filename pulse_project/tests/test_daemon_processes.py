"""runchecks as real processes: sharing work, SIGKILL and leases, SIGTERM, Pulse DB and replica outages."""

import signal
from datetime import timedelta

import psycopg
import pytest
from django.db import connection as pulse_db
from django.utils import timezone

from conftest import READER, READER_PASSWORD, SAMPLE_DB
from connections.state import BREAKER_THRESHOLD
from monitors.models import Check, CheckResult, MonitoredTable, SchedulerHeartbeat
from pulse_project.testing.daemons import (
    TableLock,
    finish,
    pulse_sessions_waiting_on_a_lock,
    start_runchecks,
    stop,
    wait_for,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
SAMPLE_TABLES = ["orders", "customers", "stale_events", "empty_events"]


def test_three_processes_share_the_work_and_check_each_table_exactly_once(make_connection, replica_pair):
    """Sharing is forced by a control event, not hoped for: `orders` is locked, so each worker ends up held on a
    batch with an `orders` table (8 of them, 6 workers); only once all six are held is the lock released, so
    each of the three processes has work of its own to record."""
    tables = []
    for n in range(8):
        # lock_timeout 30 s: the lock holds the batches
        connection = make_connection(name=f"replica-{n}", max_concurrent_queries=2, statement_timeout_ms=60_000)
        tables += [MonitoredTable.objects.create(connection=connection, table_name=t) for t in SAMPLE_TABLES]
    lock = TableLock(replica_pair, SAMPLE_DB, "orders")
    try:
        processes = [start_runchecks("--once", "--workers", "2", "--batch-size", "2") for _ in range(3)]
        assert wait_for(lambda: pulse_sessions_waiting_on_a_lock(replica_pair.standby) == 6, timeout=90)
    finally:
        lock.release()
    outputs = [finish(p) for p in processes]
    assert all(p.returncode == 0 for p in processes), outputs
    for table in tables:
        kinds = list(CheckResult.objects.filter(table=table).values_list("kind", flat=True))
        assert sorted(kinds) == ["schema_change", "volume"], (table, kinds)
    checked = [
        int(line.split("checked ")[1].split()[0])
        for out in outputs
        for line in out.splitlines()
        if line.startswith("cycle:")
    ]
    assert sum(checked) == len(tables)
    assert len([n for n in checked if n > 0]) == 3, outputs  # each process recorded the batch it was held on


def test_a_killed_worker_loses_its_lease_and_another_takes_the_table(make_connection, replica_pair):
    shop = make_connection(statement_timeout_ms=20_000)
    table = MonitoredTable.objects.create(connection=shop, table_name="orders")
    Check.objects.create(table=table, kind="custom_sql", sql="SELECT 1 FROM pg_sleep(5)", min_value=0)

    def sleeping_on_replica():
        with replica_pair.standby.connect() as conn:
            return conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pulse' AND query LIKE '%pg_sleep%'"
                " AND query NOT LIKE 'EXPLAIN%'"
            ).fetchone()[0]

    victim = start_runchecks("--once", "--workers", "1", "--lease", "10")
    assert wait_for(sleeping_on_replica, timeout=30)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    assert not CheckResult.objects.filter(table=table).exists()
    leased = MonitoredTable.objects.get(pk=table.pk)
    assert leased.lease_token is not None  # the dead victim's lease stays on the table

    # The lease is moved, not raced: far ahead, another process must leave the table alone however long it
    # takes to start; then expired explicitly, the next process takes it.
    MonitoredTable.objects.filter(pk=table.pk).update(lease_expires_at=timezone.now() + timedelta(hours=1))
    during_lease = start_runchecks("--once", "--workers", "1")
    assert "checked" not in finish(during_lease)
    assert MonitoredTable.objects.get(pk=table.pk).lease_token == leased.lease_token
    assert not CheckResult.objects.filter(table=table).exists()

    MonitoredTable.objects.filter(pk=table.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    after_lease = start_runchecks("--once", "--workers", "1")
    assert "checked 1 tables" in finish(after_lease)
    assert CheckResult.objects.filter(table=table, kind="custom_sql").count() == 1
    assert CheckResult.objects.get(table=table, kind="custom_sql").status == "pass"


def test_sigterm_lets_the_check_in_flight_finish_and_be_recorded(make_connection, replica_pair):
    shop = make_connection(statement_timeout_ms=20_000)
    table = MonitoredTable.objects.create(connection=shop, table_name="orders")
    Check.objects.create(table=table, kind="custom_sql", sql="SELECT 7 FROM pg_sleep(2)", min_value=0)
    daemon = start_runchecks("--tick", "1", "--workers", "1")

    def sleeping():
        with replica_pair.standby.connect() as conn:
            return conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pulse' AND query LIKE '%pg_sleep%'"
                " AND query NOT LIKE 'EXPLAIN%'"
            ).fetchone()[0]

    assert wait_for(sleeping, timeout=30)
    out = stop(daemon)
    assert daemon.returncode == 0, out
    assert "finishing in-flight checks" in out and "runchecks stopped" in out
    assert CheckResult.objects.get(table=table, kind="custom_sql").observed_value == 7


def test_the_daemon_survives_its_database_connections_being_killed(make_connection):
    shop = make_connection()
    table = MonitoredTable.objects.create(connection=shop, table_name="orders", check_interval_seconds=10)
    daemon = start_runchecks("--tick", "1", "--workers", "2")
    try:
        assert wait_for(lambda: CheckResult.objects.filter(table=table).exists(), timeout=30)
        assert wait_for(lambda: SchedulerHeartbeat.objects.exists(), timeout=15)
        with pulse_db.cursor() as cursor:
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            assert cursor.fetchone()[0] >= 1
        before = CheckResult.objects.filter(table=table, kind="volume").count()
        MonitoredTable.objects.filter(pk=table.pk).update(next_check_at=timezone.now())
        assert wait_for(lambda: CheckResult.objects.filter(table=table, kind="volume").count() > before, timeout=40)
        beat = SchedulerHeartbeat.objects.get().beat_at
        assert wait_for(lambda: SchedulerHeartbeat.objects.get().beat_at > beat, timeout=30)
        assert daemon.poll() is None
    finally:
        out = stop(daemon)
    assert "Traceback" not in out.split("received signal")[-1]


def test_the_daemon_rides_out_a_replica_restart(make_connection, own_pair):
    shop = make_connection(port=own_pair.standby.port)
    table = MonitoredTable.objects.create(connection=shop, table_name="orders", check_interval_seconds=10)
    daemon = start_runchecks("--tick", "1", "--workers", "1")
    try:
        assert wait_for(lambda: CheckResult.objects.filter(table=table, status="pass").exists(), timeout=30)
        own_pair.standby.stop()
        MonitoredTable.objects.filter(pk=table.pk).update(next_check_at=timezone.now())
        assert wait_for(lambda: CheckResult.objects.filter(table=table, status="error").exists(), timeout=30)
        assert "cannot connect" in CheckResult.objects.filter(table=table, status="error").first().message
        own_pair.standby.start()
        # One or two failed contacts: under the breaker's threshold, so no backoff to wait for (the breaker's own
        # recovery is tested with explicit time in test_breaker_recovery.py).
        shop.refresh_from_db()
        assert shop.backoff_until is None and shop.consecutive_failures < BREAKER_THRESHOLD
        passes = CheckResult.objects.filter(table=table, status="pass").count()
        MonitoredTable.objects.filter(pk=table.pk).update(next_check_at=timezone.now())
        assert wait_for(lambda: CheckResult.objects.filter(table=table, status="pass").count() > passes, timeout=40)
        shop.refresh_from_db()
        assert shop.status == "ok" and shop.consecutive_failures == 0
        assert daemon.poll() is None
    finally:
        stop(daemon)


def test_a_promoted_replica_is_refused_from_then_on(make_connection, own_pair):
    shop = make_connection(port=own_pair.standby.port)
    table = MonitoredTable.objects.create(connection=shop, table_name="orders")
    assert "checked 1 tables" in finish(start_runchecks("--once", "--workers", "1"))
    assert set(CheckResult.objects.filter(table=table).values_list("status", flat=True)) == {"pass"}
    own_pair.standby.promote()
    with psycopg.connect(
        host="127.0.0.1", port=own_pair.standby.port, dbname=SAMPLE_DB, user=READER, password=READER_PASSWORD
    ) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] is False
    finish(start_runchecks("--once", "--all", "--workers", "1"), returncode=2)  # checks could not run
    refused = CheckResult.objects.filter(table=table).exclude(status="pass")
    assert refused.count() == 2
    assert all(r.status == "error" and "not a read replica" in r.message and r.queries_used == 0 for r in refused)
    shop.refresh_from_db()
    assert shop.status == "not_replica"


def test_several_daemons_keep_their_schedules_to_themselves(make_connection):
    """No shared job store: N processes never collide on job rows (no duplicate keys, no vanished jobs)."""
    table = MonitoredTable.objects.create(connection=make_connection(), table_name="orders", check_interval_seconds=10)
    daemons = [start_runchecks("--tick", "1", "--workers", "1") for _ in range(3)]
    try:
        assert wait_for(lambda: SchedulerHeartbeat.objects.count() == 3, timeout=60)
        assert wait_for(lambda: CheckResult.objects.filter(table=table, kind="volume").count() >= 2, timeout=60)
        assert all(d.poll() is None for d in daemons)
    finally:
        outputs = [stop(d) for d in daemons]
    assert all(d.returncode == 0 for d in daemons), outputs
    for out in outputs:
        assert "no longer exists" not in out and "duplicate key" not in out and "Traceback" not in out, out
