"""Faults injected while a batch is in flight, with real processes and real clusters.

A batch is held in flight by a control event: an ACCESS EXCLUSIVE lock on `orders` taken on the
primary blocks the standby's reads of it, so a daemon has checked the other tables of its batch (the
results obtained before the fault) and waits on `orders`. Pulse's own database is then restarted or
stopped — on a throwaway server holding a copy of the test database, never the shared one.
"""

import shutil
import signal
from datetime import datetime

import pytest
from django.utils import timezone

from conftest import SAMPLE_DB
from monitors.models import CheckResult, MonitoredTable
from pulse_project.pgcluster import standalone_server
from pulse_project.testing.daemons import (
    TableLock,
    pulse_database_clone,
    pulse_sessions_waiting_on_a_lock,
    query,
    start_runchecks,
    stop,
    wait_for,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
# Checked in this order within one batch (claims order tables by id): orders, blocked, comes last.
TABLES = ["customers", "stale_events", "empty_events", "orders"]


@pytest.fixture
def shop_tables(make_connection):
    shop = make_connection(statement_timeout_ms=60_000)  # lock_timeout 30 s: the lock holds the batch
    return [MonitoredTable.objects.create(connection=shop, table_name=t, check_interval_seconds=10) for t in TABLES]


@pytest.fixture
def pulse_server():
    server = standalone_server()
    yield server
    server.stop(mode="immediate")
    shutil.rmtree(server.data_dir.parent, ignore_errors=True)


@pytest.fixture
def orders_lock(replica_pair):
    lock = TableLock(replica_pair, SAMPLE_DB, "orders")
    yield lock
    lock.release()


def results_by_table(url: str, since: datetime | None = None) -> dict[int, list[datetime]]:
    rows = query(
        url,
        "SELECT table_id, started_at FROM monitors_checkresult WHERE table_id IS NOT NULL AND kind = 'volume'"
        " AND details->>'backfill' IS NULL AND (%s::timestamptz IS NULL OR started_at > %s::timestamptz)",
        (since, since),
    )
    found: dict[int, list[datetime]] = {}
    for table_id, started_at in rows:
        found.setdefault(table_id, []).append(started_at)
    return found


def blocked_batch_recorded(url: str, tables) -> datetime | None:
    """When every table has a result from one batch that also checked `orders` (the held one): its start."""
    found = results_by_table(url)
    orders = tables[-1].id
    for started_at in found.get(orders, []):
        if all(started_at in found.get(t.id, []) for t in tables):
            return started_at
    return None


def every_table_checked_since(url: str, tables, since: datetime) -> bool:
    found = results_by_table(url, since)
    return all(t.id in found for t in tables)


def test_pulse_db_restarted_mid_batch_loses_no_result(shop_tables, replica_pair, pulse_server, orders_lock):
    url = pulse_database_clone(pulse_server)
    daemons = [start_runchecks("--tick", "1", "--workers", "2", database_url=url) for _ in range(2)]
    try:
        assert wait_for(lambda: pulse_sessions_waiting_on_a_lock(replica_pair.standby), timeout=60)
        pulse_server.stop(mode="fast")
        pulse_server.start()
        back = timezone.now()
        orders_lock.release()
        assert wait_for(lambda: blocked_batch_recorded(url, shop_tables), timeout=60)
        assert wait_for(lambda: every_table_checked_since(url, shop_tables, back), timeout=60)
        assert all(d.poll() is None for d in daemons)
    finally:
        outputs = [stop(d) for d in daemons]
    assert all(d.returncode == 0 for d in daemons), outputs


def test_pulse_db_down_while_a_batch_is_in_flight_spools_and_records_it(
    shop_tables, replica_pair, pulse_server, orders_lock, tmp_path
):
    url = pulse_database_clone(pulse_server)
    spool = tmp_path / "spool"
    env = {"PULSE_SPOOL_DIR": str(spool), "PULSE_RECORD_RETRY_SECONDS": "2"}
    daemons = [start_runchecks("--tick", "1", "--workers", "2", database_url=url, env=env) for _ in range(2)]
    try:
        assert wait_for(lambda: pulse_sessions_waiting_on_a_lock(replica_pair.standby), timeout=60)
        pulse_server.stop(mode="fast")
        orders_lock.release()  # the batch finishes on the replica while Pulse's database is down
        assert wait_for(lambda: any(spool.glob("*.json")), timeout=60)
        assert all(d.poll() is None for d in daemons)
        pulse_server.start()
        back = timezone.now()
        assert wait_for(lambda: blocked_batch_recorded(url, shop_tables), timeout=60)
        assert wait_for(lambda: every_table_checked_since(url, shop_tables, back), timeout=60)
        assert not any(spool.glob("*.json*"))
        assert all(d.poll() is None for d in daemons)
    finally:
        outputs = [stop(d) for d in daemons]
    assert all(d.returncode == 0 for d in daemons), outputs
    assert "spooled" in "".join(outputs)


def test_a_daemon_killed_mid_batch_has_its_tables_taken_when_its_renewed_lease_ends(
    shop_tables, replica_pair, orders_lock
):
    orders = shop_tables[-1]
    victim = start_runchecks("--tick", "1", "--workers", "1", "--lease", "10")
    survivor = None
    try:
        assert wait_for(lambda: pulse_sessions_waiting_on_a_lock(replica_pair.standby), timeout=60)
        survivor = start_runchecks("--tick", "1", "--workers", "2", "--lease", "10")
        claimed = MonitoredTable.objects.get(pk=orders.pk)
        # The real renewal path: the victim's keeper pushes its lease forward while the batch is blocked.
        assert wait_for(
            lambda: MonitoredTable.objects.get(pk=orders.pk).lease_expires_at > claimed.lease_expires_at, timeout=30
        )
        assert MonitoredTable.objects.get(pk=orders.pk).lease_token == claimed.lease_token  # still the victim's
        assert not CheckResult.objects.filter(table__in=shop_tables).exclude(details__has_key="backfill").exists()
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        killed = timezone.now()
        orders_lock.release()
        # The survivor takes every table once the victim's last renewal runs out (the lease expires).
        assert wait_for(lambda: every_table_checked_since_orm(shop_tables, killed), timeout=60)
        assert MonitoredTable.objects.get(pk=orders.pk).lease_token != claimed.lease_token
        assert survivor.poll() is None
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait(timeout=10)
        if survivor is not None:
            out = stop(survivor)
            assert survivor.returncode == 0, out


def every_table_checked_since_orm(tables, since: datetime) -> bool:
    checked = set(
        CheckResult.objects.filter(table__in=tables, kind="volume", started_at__gt=since).values_list(
            "table_id", flat=True
        )
    )
    return checked == {t.id for t in tables}
