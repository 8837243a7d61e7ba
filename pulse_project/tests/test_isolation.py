"""Isolation between connections in the runchecks daemon (issue 8): one connection's slow or blocked
checks never delay another connection's checks.

Control event: an ACCESS EXCLUSIVE lock on `orders` taken on the primary blocks reads of it on the
standby, so the connection monitoring `orders` has a batch stuck in flight.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from conftest import SAMPLE_DB
from monitors.models import Check, CheckResult, MonitoredTable
from pulse_project.testing.daemons import TableLock, pulse_sessions_waiting_on_a_lock, start_runchecks, stop, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def volume_results(table) -> int:
    return CheckResult.objects.filter(table=table, kind="volume").exclude(details__has_key="backfill").count()


def test_a_blocked_connection_never_delays_another_connections_checks(make_connection, replica_pair):
    blocked = make_connection(name="blocked", statement_timeout_ms=60_000)
    orders = MonitoredTable.objects.create(connection=blocked, table_name="orders", check_interval_seconds=10)
    free = make_connection(name="free")
    customers = MonitoredTable.objects.create(connection=free, table_name="customers", check_interval_seconds=10)
    lock = TableLock(replica_pair, SAMPLE_DB, "orders")
    daemon = start_runchecks("--tick", "1", "--workers", "2")
    try:
        assert wait_for(lambda: pulse_sessions_waiting_on_a_lock(replica_pair.standby), timeout=60)
        # The free connection is checked, and checked again at its interval, while the other stays blocked.
        assert wait_for(lambda: volume_results(customers) >= 2, timeout=60)
        assert pulse_sessions_waiting_on_a_lock(replica_pair.standby) == 1
        assert volume_results(orders) == 0
        lock.release()
        assert wait_for(lambda: volume_results(orders) >= 1, timeout=60), stop(daemon)
        assert daemon.poll() is None
    finally:
        lock.release()
        out = stop(daemon)
    assert daemon.returncode == 0, out


def test_a_connection_with_every_slot_taken_gives_its_worker_back(make_connection, replica_pair):
    """Two batches of one connection with a single session slot: the second is given back at once (not
    held for 30 s waiting for the slot, then skipped), so the other worker goes on to the other connection."""
    # The time share as large as it goes: the lock wait counts as replica time, and this test is about slots.
    blocked = make_connection(
        name="blocked",
        statement_timeout_ms=60_000,
        max_concurrent_queries=1,
        replica_time_share_percent=100,
        replica_time_burst_seconds=3600,
    )
    first = MonitoredTable.objects.create(connection=blocked, table_name="orders", check_interval_seconds=10)
    second = MonitoredTable.objects.create(connection=blocked, table_name="customers", check_interval_seconds=10)
    free = make_connection(name="free")
    customers = MonitoredTable.objects.create(connection=free, table_name="customers", check_interval_seconds=10)
    lock = TableLock(replica_pair, SAMPLE_DB, "orders")
    daemon = start_runchecks("--tick", "1", "--workers", "2", "--batch-size", "1")
    try:
        assert wait_for(lambda: pulse_sessions_waiting_on_a_lock(replica_pair.standby), timeout=60)
        assert wait_for(lambda: volume_results(customers) >= 2, timeout=60)
        assert volume_results(first) + volume_results(second) == 0  # nothing skipped: given back, still due
        lock.release()
        assert wait_for(lambda: volume_results(first) >= 1 and volume_results(second) >= 1, timeout=60), stop(daemon)
        assert not CheckResult.objects.filter(table=second, status="skipped").exists()
    finally:
        lock.release()
        out = stop(daemon)
    assert daemon.returncode == 0, out


def test_a_slow_custom_check_delays_its_own_table_by_at_most_its_timeout(make_connection):
    slow = make_connection(name="slow", statement_timeout_ms=1_000)
    table = MonitoredTable.objects.create(connection=slow, table_name="orders")
    # Inserted directly, as if it had slipped past validation.
    Check.objects.create(table=table, kind="custom_sql", sql="SELECT 1 FROM pg_sleep(600)", min_value=0)
    daemon = start_runchecks("--tick", "1", "--workers", "1")
    try:
        assert wait_for(lambda: CheckResult.objects.filter(table=table, kind="custom_sql").exists(), timeout=60)
        result = CheckResult.objects.get(table=table, kind="custom_sql")
        assert result.status == "error" and "timed out after 1000 ms" in result.message
        assert volume_results(table) == 1  # the table's other checks ran and were recorded with it
    finally:
        out = stop(daemon)
    assert daemon.returncode == 0, out


def test_a_connection_with_a_backlog_does_not_take_every_worker_ahead_of_another(make_connection, replica_pair):
    """Fair lanes: the busy connection's tables are the most overdue and every one of them blocks; with two
    workers the second goes to the other connection's lane instead of to the busy connection's next table."""
    busy = make_connection(name="busy", statement_timeout_ms=60_000)
    overdue = timezone.now() - timedelta(hours=1)
    for name in ("orders", "customers"):
        MonitoredTable.objects.create(connection=busy, table_name=name, next_check_at=overdue)
    free = make_connection(name="free")
    events = MonitoredTable.objects.create(connection=free, table_name="stale_events", next_check_at=timezone.now())
    locks = [TableLock(replica_pair, SAMPLE_DB, name) for name in ("orders", "customers")]
    daemon = start_runchecks("--tick", "1", "--workers", "2", "--batch-size", "1")
    try:
        assert wait_for(lambda: volume_results(events) >= 1, timeout=60)
        assert CheckResult.objects.filter(table__connection=busy, kind="volume").count() == 0  # still blocked
    finally:
        for lock in locks:
            lock.release()
        out = stop(daemon)
    assert daemon.returncode == 0, out
