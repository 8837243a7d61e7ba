"""Warm replica sessions kept by the daemon between batches (connections.guardrails.sessions), against the real
replica pair: reuse, a killed backend replaced, the slot held while kept, idle expiry, settings change, stop."""

import pytest
from django.db import connection as pulse_db

from connections import guardrails
from connections.guardrails.sessions import SessionKeeper, session_fingerprint
from monitors.models import Check, MonitoredTable
from monitors.runner import CheckRunner
from monitors.testing import run_batch

pytestmark = pytest.mark.django_db

IDLE_SECONDS = 120.0


class Clock:
    """The keeper's clock, moved by the test."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def keeper(clock):
    keeper = SessionKeeper(idle_seconds=IDLE_SECONDS, clock=clock)
    yield keeper
    keeper.close()


def kept_pids(keeper, connection) -> list[int]:
    return [checkout.session.info.backend_pid for checkout in keeper.kept(connection.pk)]


def standby_backends(replica_pair, pid: int) -> int:
    with replica_pair.standby.connect() as admin:
        return admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()[0]


def test_a_second_batch_runs_in_the_session_the_first_one_kept(make_connection, keeper, replica_pair):
    shop = make_connection()
    orders = MonitoredTable.objects.create(connection=shop, table_name="orders", timestamp_column="created_at")
    first = run_batch(orders, sessions=keeper)
    [pid] = kept_pids(keeper, shop)
    assert standby_backends(replica_pair, pid) == 1
    second = run_batch(orders, sessions=keeper)
    assert kept_pids(keeper, shop) == [pid]
    for results in (first, second):
        assert {r.status for r in results} == {"pass"}


def test_a_kept_session_the_replica_ended_is_replaced_and_no_result_is_lost(make_connection, keeper, replica_pair):
    shop = make_connection()
    orders = MonitoredTable.objects.create(connection=shop, table_name="orders", timestamp_column="created_at")
    run_batch(orders, sessions=keeper)
    [pid] = kept_pids(keeper, shop)
    with replica_pair.standby.connect() as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    results = run_batch(orders, sessions=keeper)
    assert {r.kind for r in results} >= {"schema_change", "volume", "freshness"}
    assert {r.status for r in results} == {"pass"}
    [replaced] = kept_pids(keeper, shop)
    assert replaced != pid
    shop.refresh_from_db()
    assert shop.status == "ok"


def test_a_kept_session_keeps_holding_its_slot(make_connection, keeper, clock):
    """With two slots and one session kept by this process, another process (a keeper of its own) gets the one
    slot left, not two; once this process lets the session go, the slot is free again."""
    shop = make_connection(max_concurrent_queries=2)
    orders = MonitoredTable.objects.create(connection=shop, table_name="orders")
    run_batch(orders, sessions=keeper)
    assert len(keeper.kept(shop.pk)) == 1
    other = SessionKeeper(idle_seconds=IDLE_SECONDS, clock=clock)
    try:
        with other.checkout(connection=shop, wait_seconds=0):
            with pytest.raises(guardrails.GuardrailStop) as busy, other.checkout(connection=shop, wait_seconds=0):
                pass
            assert busy.value.reason == "concurrency"
            keeper.close()
            with other.checkout(connection=shop, wait_seconds=0) as second:
                assert second.slot is not None
    finally:
        other.close()


def test_daemons_never_keep_every_slot_idle_so_a_lookup_still_gets_one(make_connection, clock):
    """Two daemons (two keepers, each with its own session of Pulse's database) on a connection with two slots:
    the first keeps its session, the second does not (that would leave no slot), so a save-time lookup gets the
    last slot at once; with three slots, both keep theirs and one is still free."""
    first, second = (SessionKeeper(idle_seconds=IDLE_SECONDS, clock=clock) for _ in range(2))
    try:
        for slots, second_keeps in ((2, 0), (3, 1)):
            shop = make_connection(name=f"shop {slots}", max_concurrent_queries=slots)
            orders = MonitoredTable.objects.create(connection=shop, table_name="orders")
            assert {r.status for r in run_batch(orders, sessions=first)} == {"pass"}
            assert len(first.kept(shop.pk)) == 1
            assert {r.status for r in run_batch(orders, sessions=second)} == {"pass"}
            assert len(second.kept(shop.pk)) == second_keeps
            with guardrails.replica_slot(connection=shop, wait_seconds=0):
                pass
    finally:
        first.close()
        second.close()


def test_two_workers_of_one_process_take_two_slots(make_connection, keeper):
    """One session of Pulse's database holds the process's slots: a slot it holds is never taken twice."""
    shop = make_connection(max_concurrent_queries=2)
    with (
        keeper.checkout(connection=shop, wait_seconds=0) as first,
        keeper.checkout(connection=shop, wait_seconds=0) as second,
    ):
        assert {first.slot, second.slot} == {0, 1}
        with pytest.raises(guardrails.GuardrailStop), keeper.checkout(connection=shop, wait_seconds=0):
            pass


def test_a_connection_with_one_slot_keeps_no_session(make_connection, keeper):
    """The one slot stays free for other processes and the save-time lookups."""
    shop = make_connection(max_concurrent_queries=1)
    orders = MonitoredTable.objects.create(connection=shop, table_name="orders")
    assert {r.status for r in run_batch(orders, sessions=keeper)} == {"pass"}
    assert keeper.kept(shop.pk) == []
    with guardrails.replica_slot(connection=shop, wait_seconds=0):
        pass


def test_an_idle_session_is_closed_at_the_idle_limit(make_connection, keeper, clock):
    shop = make_connection(max_concurrent_queries=2)
    orders = MonitoredTable.objects.create(connection=shop, table_name="orders")
    run_batch(orders, sessions=keeper)
    [kept] = keeper.kept(shop.pk)
    clock.now += IDLE_SECONDS - 1
    assert keeper.expire_idle() == 0
    clock.now += 1
    assert keeper.expire_idle() == 1
    assert keeper.kept() == [] and kept.session is None
    with (
        guardrails.replica_slot(connection=shop, wait_seconds=0),
        guardrails.replica_slot(connection=shop, wait_seconds=0),
    ):
        pass  # both slots are free again


def test_a_changed_connection_setting_closes_the_kept_session(make_connection, keeper):
    shop = make_connection()
    orders = MonitoredTable.objects.create(connection=shop, table_name="orders")
    run_batch(orders, sessions=keeper)
    [kept] = keeper.kept(shop.pk)
    old_pid = kept.session.info.backend_pid
    shop.statement_timeout_ms += 1234
    shop.save()
    results = run_batch(orders, sessions=keeper)
    assert {r.status for r in results} == {"pass"}
    assert kept.session is None  # closed, its slot given back
    [new] = keeper.kept(shop.pk)
    assert new.session.info.backend_pid != old_pid
    with new.session.cursor() as cur:
        cur.execute("SELECT current_setting('statement_timeout')")
        assert cur.fetchone()[0] == f"{shop.statement_timeout_ms}ms"


def test_the_fingerprint_changes_with_credentials_and_never_holds_the_password(make_connection):
    shop = make_connection()
    before = session_fingerprint(shop)
    assert session_fingerprint(shop) == before
    shop.set_password("another secret")
    assert session_fingerprint(shop) != before
    assert "another secret" not in session_fingerprint(shop)
    shop.username = "someone_else"
    assert len({before, session_fingerprint(shop)}) == 2


def test_a_batch_with_a_failed_statement_does_not_keep_its_session(make_connection, keeper):
    shop = make_connection()
    orders = MonitoredTable.objects.create(connection=shop, table_name="orders")
    Check.objects.create(table=orders, kind="custom_sql", sql="SELECT count(*) / 0 FROM orders", min_value=0)
    results = run_batch(orders, sessions=keeper)
    assert [r.status for r in results if r.kind == "custom_sql"] == ["error"]
    assert keeper.kept(shop.pk) == []


def test_a_server_that_is_not_in_recovery_keeps_no_session(make_connection, keeper, primary_settings):
    primary = make_connection(name="primary", port=primary_settings["port"])
    orders = MonitoredTable.objects.create(connection=primary, table_name="orders")
    results = run_batch(orders, sessions=keeper)
    assert {r.status for r in results} == {"error"}
    assert keeper.kept() == []


def test_the_daemon_closes_its_kept_sessions_when_it_stops(make_connection, keeper):
    shop = make_connection()
    orders = MonitoredTable.objects.create(connection=shop, table_name="orders")
    runner = CheckRunner(on_recorded=lambda **kwargs: None, workers=1, sessions=keeper)
    runner.cycle(force=True, table_ids=[orders.id])
    [kept] = keeper.kept(shop.pk)
    runner.stop()
    assert keeper.kept() == [] and kept.session is None


def slot_holders(connection) -> set[int]:
    """Backends of Pulse's database holding one of the connection's slots."""
    with pulse_db.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = %s AND objid BETWEEN %s AND %s",
            [guardrails.SLOT_LOCK_NAMESPACE, connection.pk * 64, connection.pk * 64 + 63],
        )
        return {pid for (pid,) in cursor.fetchall()}


def test_a_lost_slot_holder_closes_the_kept_sessions_and_the_next_batch_takes_a_slot_again(make_connection, keeper):
    """Pulse's database ended the keeper's session (a restart, a failover): the kept session's slot went with it,
    so it is closed instead of reused; the next batch takes a slot on a new session and loses nothing."""
    shop = make_connection()
    orders = MonitoredTable.objects.create(connection=shop, table_name="orders")
    run_batch(orders, sessions=keeper)
    [kept] = keeper.kept(shop.pk)
    [holder] = slot_holders(shop)
    with pulse_db.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [holder])
    results = run_batch(orders, sessions=keeper)
    assert {r.status for r in results} == {"pass"}
    assert kept.session is None
    [new] = keeper.kept(shop.pk)
    assert slot_holders(shop) and slot_holders(shop) != {holder}
    assert new is not kept


def test_a_session_that_has_read_many_tables_is_not_kept(make_connection, keeper, monkeypatch):
    """A backend's catalog caches grow with every table it reads: past the limit, its session is closed."""
    from connections.guardrails import sessions

    monkeypatch.setattr(sessions, "KEPT_SESSION_TABLES_MAX", 1)
    shop = make_connection()
    orders = MonitoredTable.objects.create(connection=shop, table_name="orders")
    customers = MonitoredTable.objects.create(connection=shop, table_name="customers")
    run_batch(orders, sessions=keeper)
    [kept] = keeper.kept(shop.pk)
    assert kept.tables_seen == {orders.id}
    run_batch(orders, sessions=keeper)  # the same table again: still one
    assert keeper.kept(shop.pk) == [kept]
    assert {r.status for r in run_batch(customers, sessions=keeper)} == {"pass"}
    assert keeper.kept(shop.pk) == [] and kept.session is None
