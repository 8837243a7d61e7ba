"""The claim of due work, including its race branches."""

import threading
import uuid
from datetime import datetime, timedelta

import psycopg
import pytest
from django.db import InterfaceError, OperationalError, close_old_connections
from django.db import connection as pulse_db
from django.utils import timezone

from monitors.batch import batch_run
from monitors.claims import LeaseKeeper, lease_release, leases_renew, tables_claim_due
from monitors.models import CheckResult, MonitoredTable
from monitors.recording import results_ignore

LEASE = timedelta(minutes=1)


@pytest.fixture
def tables(make_connection):
    shop = make_connection()
    return [MonitoredTable.objects.create(connection=shop, table_name=f"t{i}") for i in range(6)]


@pytest.mark.django_db
def test_it_claims_only_due_active_unleased_tables(tables):
    now = timezone.now()
    due, future, inactive, leased, *_ = tables
    MonitoredTable.objects.filter(pk=due.pk).update(next_check_at=now - timedelta(seconds=1))
    MonitoredTable.objects.filter(pk=future.pk).update(next_check_at=now + timedelta(minutes=5))
    MonitoredTable.objects.filter(pk=inactive.pk).update(is_active=False)
    MonitoredTable.objects.filter(pk=leased.pk).update(lease_expires_at=now + LEASE)
    claimed = {t.id for t in tables_claim_due(now=now, lease=LEASE, limit=100).tables}
    assert due.id in claimed
    assert not claimed & {future.id, inactive.id, leased.id}
    assert tables_claim_due(now=now, lease=LEASE, limit=100).tables == []  # all leased now


@pytest.mark.django_db
def test_it_skips_connections_in_backoff(tables):
    now = timezone.now()
    tables[0].connection.__class__.objects.update(backoff_until=now + timedelta(minutes=1))
    assert tables_claim_due(now=now, lease=LEASE, limit=100).tables == []
    assert len(tables_claim_due(now=now + timedelta(minutes=2), lease=LEASE, limit=100).tables) == 6


@pytest.mark.django_db
def test_an_expired_lease_can_be_taken_over(tables):
    now = timezone.now()
    first = tables_claim_due(now=now, lease=LEASE, limit=100)
    assert len(first.tables) == 6
    assert tables_claim_due(now=now + LEASE / 2, lease=LEASE, limit=100).tables == []
    second = tables_claim_due(now=now + LEASE * 2, lease=LEASE, limit=100)
    assert len(second.tables) == 6 and second.token != first.token


@pytest.mark.django_db
def test_a_worker_whose_lease_was_taken_over_keeps_its_results_but_not_the_table(tables):
    """The race branch: the slow first claimer finishes after another process took its tables.

    What it read from the replica is history and is kept; the table's state and alerts are its new owner's."""
    now = timezone.now()
    table = tables[0]
    first = tables_claim_due(now=now, lease=LEASE, limit=1, table_ids=[table.id])
    second = tables_claim_due(now=now + LEASE * 2, lease=LEASE, limit=1, table_ids=[table.id])
    assert first.tables and second.tables
    late = batch_run(connection=table.connection, claim=first, tables=first.tables, on_recorded=results_ignore)
    assert [r.kind for r in late] == ["replication_lag"]  # alerts react to connection-level results only
    assert set(CheckResult.objects.filter(table=table).values_list("kind", flat=True)) == {"schema_change", "volume"}
    table.refresh_from_db()
    assert table.lease_token == second.token and table.last_checked_at is None  # left to its owner
    on_time = batch_run(connection=table.connection, claim=second, tables=second.tables, on_recorded=results_ignore)
    assert {r.kind for r in on_time} >= {"schema_change", "volume"}
    assert CheckResult.objects.filter(table=table, kind="volume").count() == 2
    table.refresh_from_db()
    assert table.lease_token is None and table.last_checked_at is not None


@pytest.mark.django_db
def test_a_late_batch_does_not_regress_a_newer_check(tables):
    """A batch recorded after its lease expired, once the table was checked again since, adds history only."""
    now = timezone.now()
    table = tables[0]
    first = tables_claim_due(now=now, lease=LEASE, limit=1, table_ids=[table.id])
    MonitoredTable.objects.filter(pk=table.pk).update(
        lease_token=None, lease_expires_at=None, last_checked_at=now + LEASE, status="failing"
    )
    batch_run(connection=table.connection, claim=first, tables=first.tables, on_recorded=results_ignore)
    table.refresh_from_db()
    assert table.status == "failing" and table.last_checked_at == now + LEASE
    assert CheckResult.objects.filter(table=table, kind="volume").exists()


@pytest.mark.django_db
def test_a_late_batch_sets_the_state_of_a_table_nobody_checked_since(tables):
    now = timezone.now()
    table = tables[0]
    first = tables_claim_due(now=now, lease=LEASE, limit=1, table_ids=[table.id])
    MonitoredTable.objects.filter(pk=table.pk).update(lease_expires_at=now - LEASE)  # expired, not taken
    MonitoredTable.objects.filter(pk=table.pk).update(lease_token=None)
    results = batch_run(connection=table.connection, claim=first, tables=first.tables, on_recorded=results_ignore)
    assert {r.kind for r in results} >= {"schema_change", "volume"}
    table.refresh_from_db()
    assert table.last_checked_at is not None and table.next_check_at > now


@pytest.mark.django_db
def test_a_claim_holds_tables_of_one_connection(tables, make_connection):
    other = make_connection(name="other-replica")
    theirs = [MonitoredTable.objects.create(connection=other, table_name=f"o{i}") for i in range(3)]
    now = timezone.now()
    first = tables_claim_due(now=now, lease=LEASE, limit=100)
    second = tables_claim_due(now=now, lease=LEASE, limit=100)
    assert {t.connection_id for t in first.tables} == {tables[0].connection_id}
    assert {t.id for t in second.tables} == {t.id for t in theirs}


@pytest.mark.django_db
def test_a_claim_skips_busy_connections_and_tables_this_pass_walked_past(tables, make_connection):
    other = make_connection(name="other-replica")
    theirs = MonitoredTable.objects.create(connection=other, table_name="o1")
    now = timezone.now()
    claim = tables_claim_due(
        now=now,
        lease=LEASE,
        limit=100,
        exclude_connections=[tables[0].connection_id],
    )
    assert [t.id for t in claim.tables] == [theirs.id]
    walked = {tables[0].connection_id: tables[1].id, other.id: theirs.id}  # this pass took these already
    forced = tables_claim_due(now=now, lease=LEASE, limit=100, force=True, walked=walked)
    assert {t.id for t in forced.tables} == {t.id for t in tables[2:]}


@pytest.mark.django_db
def test_renewal_extends_only_leases_still_held(tables):
    now = timezone.now()
    mine = tables_claim_due(now=now, lease=LEASE, limit=1, table_ids=[tables[0].id])
    taken = tables_claim_due(now=now, lease=LEASE, limit=1, table_ids=[tables[1].id])
    MonitoredTable.objects.filter(pk=tables[1].pk).update(lease_token=uuid.uuid4())  # another process's now
    assert leases_renew(tokens=[mine.token, taken.token], lease=timedelta(hours=1)) == 1
    renewed = MonitoredTable.objects.get(pk=tables[0].pk).lease_expires_at
    assert renewed > now + timedelta(minutes=30)
    assert MonitoredTable.objects.get(pk=tables[1].pk).lease_expires_at < now + timedelta(minutes=30)


@pytest.mark.django_db(transaction=True)
def test_renewal_skips_a_row_locked_by_a_recording_instead_of_waiting_for_it(tables):
    """A renewal that waited on rows a recording transaction holds could deadlock with it (lost batch)."""
    now = timezone.now()
    claim = tables_claim_due(now=now, lease=LEASE, limit=2, table_ids=[tables[0].id, tables[1].id])
    db = pulse_db.settings_dict
    with psycopg.connect(host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"]) as recording:
        recording.execute("SELECT id FROM monitors_monitoredtable WHERE id = %s FOR UPDATE", [tables[0].id])
        with pulse_db.cursor() as cursor:
            cursor.execute("SET lock_timeout = '5s'")  # waiting would fail the test instead of hanging it
        try:
            assert leases_renew(tokens=[claim.token], lease=timedelta(hours=1)) == 1
        finally:
            with pulse_db.cursor() as cursor:
                cursor.execute("RESET lock_timeout")
    expires = dict(
        MonitoredTable.objects.filter(pk__in=[tables[0].pk, tables[1].pk]).values_list("pk", "lease_expires_at")
    )
    assert expires[tables[1].pk] > now + timedelta(minutes=30)
    assert expires[tables[0].pk] < now + timedelta(minutes=30)


@pytest.mark.django_db
def test_the_keeper_stops_renewing_a_batch_past_its_time_limit(tables):
    now = timezone.now()
    claim = tables_claim_due(now=now, lease=LEASE, limit=1, table_ids=[tables[0].id])
    keeper = LeaseKeeper(lease=timedelta(hours=1))
    try:
        keeper.hold(claim.token, seconds=-1)  # its time limit has passed
        assert keeper.renew() == 0
        keeper.hold(claim.token, seconds=600)
        assert keeper.renew() == 1
        keeper.drop(claim.token)
        assert keeper.renew() == 0
    finally:
        keeper.stop()


@pytest.mark.django_db
def test_released_tables_keep_their_due_time(tables):
    now = timezone.now()
    claim = tables_claim_due(now=now, lease=LEASE, limit=2)
    assert lease_release(table_ids=[t.id for t in claim.tables], token=claim.token) == 2
    again = tables_claim_due(now=now, lease=LEASE, limit=100)
    assert {t.id for t in claim.tables} <= {t.id for t in again.tables}


@pytest.mark.django_db(transaction=True)
def test_concurrent_claimers_never_get_the_same_table(tables):
    """SKIP LOCKED: claimers in separate database sessions split the due tables between them."""
    now = timezone.now()
    claimed: list[list[int]] = []
    barrier = threading.Barrier(3)

    def claimer():
        barrier.wait()
        try:
            for _ in range(6):
                claimed.append([t.id for t in tables_claim_due(now=now, lease=LEASE, limit=1).tables])
        finally:
            pulse_db.close()

    threads = [threading.Thread(target=claimer) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [i for batch in claimed for i in batch]
    assert sorted(ids) == sorted(t.id for t in tables)


@pytest.mark.django_db
def test_claims_take_the_most_overdue_connection_and_its_tables_in_due_order_never_checked_first(
    tables, make_connection
):
    now = timezone.now()
    other = make_connection(name="other-replica")
    hour_ago = now - timedelta(hours=1)
    behind = MonitoredTable.objects.create(connection=other, table_name="behind", next_check_at=hour_ago)
    MonitoredTable.objects.create(connection=other, table_name="not-yet", next_check_at=now + timedelta(minutes=1))
    never, late, later, soon, *rest = tables  # never: next_check_at NULL, never checked
    for table, minutes in ((late, -30), (later, -2), (soon, 5), *((t, 10) for t in rest)):
        MonitoredTable.objects.filter(pk=table.pk).update(next_check_at=now + timedelta(minutes=minutes))
    # Never checked sorts before an hour overdue, so its connection goes first, with its next most overdue table.
    assert [t.id for t in tables_claim_due(now=now, lease=LEASE, limit=2).tables] == [never.id, late.id]
    assert [t.id for t in tables_claim_due(now=now, lease=LEASE, limit=2).tables] == [behind.id]  # 1 h > 2 min
    assert [t.id for t in tables_claim_due(now=now, lease=LEASE, limit=2).tables] == [later.id]
    assert tables_claim_due(now=now, lease=LEASE, limit=2).tables == []  # the rest is not due


@pytest.mark.django_db
def test_claimed_tables_equal_the_rows_the_orm_loads_field_by_field(tables):
    """The claim builds its tables from its own RETURNING: every field (json, uuid, times, floats) must come out as
    the ORM loads it, including fields left at their defaults."""
    now = timezone.now()
    MonitoredTable.objects.filter(pk=tables[0].pk).update(
        timestamp_column="created_at",
        schema_reference=[{"name": "id", "type": "bigint"}],
        plan_costs={"volume": {"cost": 12.5, "at": "2026-11-30T00:00:00+00:00"}},
        update_times=["2026-11-30T00:00:00+00:00", "2026-11-29T23:00:00+00:00"],
        baseline_since=now - timedelta(days=3),
        sensitivity=4.25,
        sensitivity_preset=MonitoredTable.SensitivityPreset.HIGH,
        status=MonitoredTable.Status.FAILING,
        last_error="the replica said no",
        volume_series="rows:created_at:3600",
        managed_by="pulse.yml",
    )
    claim = tables_claim_due(now=now, lease=LEASE, limit=100)
    assert [t.id for t in claim.tables] == sorted(t.id for t in tables)
    loaded = {t.id: t for t in MonitoredTable.objects.filter(id__in=[t.id for t in tables])}
    for table in claim.tables:
        expected = loaded[table.id]
        assert table.lease_token == claim.token
        for model_field in MonitoredTable._meta.concrete_fields:
            ours, theirs = getattr(table, model_field.attname), getattr(expected, model_field.attname)
            assert (ours, type(ours)) == (theirs, type(theirs)), model_field.name
            if isinstance(ours, datetime):  # read in binary: the same zone object as Django's text loader gives
                assert ours.tzinfo is theirs.tzinfo, model_field.name
        assert table._state.adding is False and table._state.db == expected._state.db
        assert table.connection is claim.tables[0].connection and table.connection == expected.connection
    first = next(t for t in claim.tables if t.id == tables[0].id)
    assert first.schema_reference == [{"name": "id", "type": "bigint"}]
    assert first.plan_costs["volume"]["cost"] == 12.5


@pytest.mark.django_db(transaction=True)
def test_a_claim_on_a_connection_the_database_dropped_raises_djangos_error_and_the_next_claim_reconnects(tables):
    """The claim reads through a raw psycopg cursor: its errors must still be Django's, and mark the connection, so
    the runner's handling (a warning, then `close_old_connections`) replaces the dead connection."""
    pulse_db.ensure_connection()
    pid = pulse_db.connection.info.backend_pid
    with psycopg.connect(pulse_db.connection.info.dsn, password=pulse_db.settings_dict["PASSWORD"] or None) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
    with pytest.raises((OperationalError, InterfaceError)):
        tables_claim_due(now=timezone.now(), lease=LEASE, limit=100)
    close_old_connections()
    claim = tables_claim_due(now=timezone.now(), lease=LEASE, limit=100)
    assert sorted(t.id for t in claim.tables) == sorted(t.id for t in tables)
    assert pulse_db.connection.info.backend_pid != pid
