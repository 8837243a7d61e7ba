"""The quick-start demo: a real primary + standby with the shop database, registered idempotently in team "demo"."""

import os
import random
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from alerts.intake import results_intake
from alerts.models import Alert
from connections.models import Connection
from monitors.models import Check, MonitoredTable
from monitors.runner import CheckRunner
from pulse_project import demo

pytestmark = pytest.mark.django_db

EXPECTED_TABLES = {
    # table: (timestamp_column, freshness_threshold_minutes, check_interval_seconds, failure_threshold)
    "orders": ("created_at", 15, 30, 2),
    "page_views": ("viewed_at", 15, 30, 2),
    "customers": ("", 60, 60, 2),
    "inventory_snapshots": ("counted_at", 60, 30, 1),
}


@pytest.fixture
def start_demo():
    """Start demo pairs in one folder the postgres OS user can reach; stop whatever is left at the end."""
    parent = Path(tempfile.mkdtemp(prefix="pulse-demo-test-"))
    parent.chmod(0o755)
    started = []

    def start():
        started.append(demo.demo_setup(base_dir=parent / "demo-pg", report=lambda line: None))
        return started[-1]

    yield start
    for running in started:
        demo.demo_stop(demo=running, report=lambda line: None)
    shutil.rmtree(parent, ignore_errors=True)


def standby_query(connection: Connection, query: str):
    with psycopg.connect(**connection.conninfo(), connect_timeout=5) as conn:
        return conn.execute(query).fetchall()


def postmaster_pid(server) -> int:
    return int((server.data_dir / "postmaster.pid").read_text().split()[0])


def assert_registered(running: demo.Demo) -> Connection:
    connection = Connection.objects.get(team__name="demo", name="demo-replica")
    assert (connection.host, connection.port, connection.database, connection.username, connection.sslmode) == (
        "127.0.0.1",
        running.pair.standby.port,
        "shop",
        "pulse_demo",
        "disable",
    )
    assert connection.require_replica and connection.is_active
    tables = {
        t.table_name: (t.timestamp_column, t.freshness_threshold_minutes, t.check_interval_seconds, t.failure_threshold)
        for t in connection.tables.all()
    }
    assert tables == EXPECTED_TABLES
    check = Check.objects.get(table__connection=connection)
    assert (check.table.table_name, check.kind, check.min_value, check.max_value) == ("customers", "row_count", 1, None)
    return connection


def assert_standby_serves_the_shop_read_only(connection: Connection) -> None:
    assert standby_query(connection, "SELECT pg_is_in_recovery()") == [(True,)]
    visible = standby_query(
        connection, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1"
    )
    assert [name for (name,) in visible] == sorted(EXPECTED_TABLES)
    writable = standby_query(
        connection,
        "SELECT bool_or(has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')) FROM pg_class c"
        " WHERE c.relname IN ('orders', 'page_views', 'customers', 'inventory_snapshots')",
    )
    assert writable == [(False,)]


def assert_orders_fresh_and_inventory_stale(running: demo.Demo, connection: Connection) -> None:
    with running.pair.primary.connect(demo.DATABASE) as conn:
        before = conn.execute("SELECT count(*) FROM orders").fetchone()[0]
        written = demo.demo_traffic_tick(conn=conn, rng=random.Random(1))
    running.pair.wait_for_replay()
    [(orders, orders_age, stale_age)] = standby_query(
        connection,
        "SELECT (SELECT count(*) FROM orders), now() - (SELECT max(created_at) FROM orders),"
        " now() - (SELECT max(counted_at) FROM inventory_snapshots)",
    )
    assert orders == before + written["orders"]
    assert orders_age < timedelta(minutes=15)
    assert timedelta(minutes=60) < stale_age < timedelta(hours=3)


def test_setup_registers_the_standby_with_a_stale_table_and_running_it_again_follows_the_new_pair(start_demo):
    first = start_demo()
    connection = assert_registered(first)
    assert_standby_serves_the_shop_read_only(connection)
    assert_orders_fresh_and_inventory_stale(first, connection)
    ids = {name: table.id for name, table in first.registration.tables.items()}
    MonitoredTable.objects.filter(id=ids["orders"]).update(freshness_threshold_minutes=30)

    first_postmasters = [postmaster_pid(server) for server in (first.pair.primary, first.pair.standby)]
    second = start_demo()
    assert MonitoredTable.objects.get(id=ids["orders"]).freshness_threshold_minutes == 30  # edits are kept
    MonitoredTable.objects.filter(id=ids["orders"]).update(freshness_threshold_minutes=15)
    moved = assert_registered(second)
    assert moved.id == connection.id and Connection.objects.count() == 1
    assert dict(MonitoredTable.objects.values_list("table_name", "id")) == ids
    assert standby_query(moved, "SELECT pg_is_in_recovery()") == [(True,)]  # new port, new password
    for pid in first_postmasters:  # the first pair was stopped
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.django_db(transaction=True)
def test_the_first_checks_open_the_two_related_alerts_the_quick_start_announces(start_demo):
    running = start_demo()
    runner = CheckRunner(on_recorded=results_intake, workers=1)
    try:
        runner.cycle(force=True)
    finally:
        runner.stop()

    stale = running.registration.tables["inventory_snapshots"]
    alerts = {alert.kind: alert for alert in Alert.objects.filter(status="open")}
    assert set(alerts) == {"freshness", "volume"}  # as the README's quick start and the ready line say
    assert {alert.table_id for alert in alerts.values()} == {stale.id}
    freshness, volume = alerts["freshness"], alerts["volume"]
    assert "drop to zero" in volume.message
    assert volume.message.endswith(f"Related: the table is also stale (freshness alert {freshness.id}).")
    line = demo.demo_ready_line(demo=running)
    assert "expect two alerts on it" in line and "freshness" in line and "volume" in line


@pytest.mark.skipif(os.geteuid() != 0, reason="only as root do the servers run as another OS user")
def test_a_folder_the_postgres_user_cannot_reach_is_detected(tmp_path):
    hidden = tmp_path / "hidden"
    hidden.mkdir(mode=0o700)
    assert not demo.demo_dir_reachable(path=hidden / "var" / "demo-pg")
    reachable = Path(tempfile.mkdtemp(prefix="pulse-demo-test-"))
    try:
        reachable.chmod(0o755)
        assert demo.demo_dir_reachable(path=reachable / "demo-pg")
    finally:
        shutil.rmtree(reachable)
