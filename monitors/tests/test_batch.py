"""monitors.batch: one batch of a connection's tables against the real replica pair, and what it hands over."""

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from connections import guardrails
from connections.models import QueryAllowance
from monitors.batch import batch_run
from monitors.claims import tables_claim_due
from monitors.models import CheckResult, MonitoredTable

pytestmark = pytest.mark.django_db


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, *, connection, results):
        self.calls.append((connection, list(results)))


def run_batch(*tables, handler=None):
    handler = handler or Recorder()
    claim = tables_claim_due(
        now=timezone.now(), lease=timedelta(minutes=1), limit=100, force=True, table_ids=[t.id for t in tables]
    )
    assert {t.id for t in claim.tables} == {t.id for t in tables}
    return batch_run(connection=claim.tables[0].connection, claim=claim, tables=claim.tables, on_recorded=handler)


def test_a_batch_hands_its_recorded_results_to_the_handler(make_connection):
    shop = make_connection()
    table = MonitoredTable.objects.create(connection=shop, table_name="orders", timestamp_column="created_at")
    handler = Recorder()
    results = run_batch(table, handler=handler)
    assert handler.calls == [(shop, results)]
    assert {r.kind for r in results} == {"schema_change", "volume", "freshness", "replication_lag"}
    assert CheckResult.objects.filter(id__in=[r.id for r in results]).count() == 4


def test_a_replica_that_is_down_gives_error_results_and_a_failed_contact(make_connection):
    down = make_connection(name="down", port=1)
    table = MonitoredTable.objects.create(connection=down, table_name="orders")
    results = run_batch(table)
    assert {r.kind for r in results} == {"schema_change", "volume"}
    assert all(r.status == "error" and "cannot connect" in r.message for r in results)
    down.refresh_from_db()
    assert down.status == "error" and down.consecutive_failures == 1 and down.lag_checked_at is None


def test_the_primary_gets_no_checks(make_connection, primary_settings):
    primary = make_connection(name="primary", port=primary_settings["port"])
    table = MonitoredTable.objects.create(connection=primary, table_name="orders", timestamp_column="created_at")
    results = run_batch(table)
    assert {r.status for r in results} == {"error"}
    assert all(r.queries_used == 0 and "not a read replica" in r.message for r in results)
    primary.refresh_from_db()
    assert primary.status == "not_replica"


def test_the_lag_check_is_claimed_by_one_batch_per_interval(make_connection):
    shop = make_connection()
    orders = MonitoredTable.objects.create(connection=shop, table_name="orders")
    customers = MonitoredTable.objects.create(connection=shop, table_name="customers")
    first = run_batch(orders)
    second = run_batch(customers)
    assert [r.kind for r in first if r.table_id is None] == ["replication_lag"]
    assert [r.kind for r in second if r.table_id is None] == []
    shop.refresh_from_db()
    assert shop.lag_checked_at is not None
    lag = CheckResult.objects.get(kind="replication_lag")
    assert lag.status == "pass" and lag.expected_upper == shop.replication_lag_threshold_seconds


def test_a_session_lost_mid_table_errors_the_rest_of_the_batch(make_connection, replica_pair, monkeypatch):
    """The replica session is terminated (by a superuser on the standby) when the volume check starts; each
    table reads its own (as when the batch's combined statements failed)."""
    from monitors import batch
    from monitors.checks import volume

    shop = make_connection()
    orders = MonitoredTable.objects.create(connection=shop, table_name="orders")
    customers = MonitoredTable.objects.create(connection=shop, table_name="customers")
    real_run = volume.run
    monkeypatch.setattr(batch, "_read_together", lambda contexts: None)

    def terminated_first(ctx, check=None):
        pid = ctx.runner.session.info.backend_pid
        with replica_pair.standby.connect() as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        return real_run(ctx, check)

    monkeypatch.setattr(volume, "run", terminated_first)
    results = run_batch(orders, customers)
    by_table = {(r.table_id, r.kind): r for r in results if r.table_id}
    assert by_table[(orders.id, "schema_change")].status == "pass"  # checked before the session was lost
    lost = [r for key, r in by_table.items() if key != (orders.id, "schema_change")]
    assert len(lost) == 3 and all(r.status == "error" and "connection lost" in r.message for r in lost)
    shop.refresh_from_db()
    assert shop.status == "error" and "connection lost" in shop.last_error


def test_a_session_lost_in_the_batch_statements_errors_every_table(make_connection, replica_pair, monkeypatch):
    """The replica session is terminated just before the batch's catalog statement: nothing is read, every
    result is an error, and the contact failed."""
    from monitors import batch

    shop = make_connection()
    orders = MonitoredTable.objects.create(connection=shop, table_name="orders", timestamp_column="created_at")
    customers = MonitoredTable.objects.create(connection=shop, table_name="customers")
    real_read = batch._read_together

    def terminated_first(contexts):
        with replica_pair.standby.connect() as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (contexts[0].runner.session.info.backend_pid,))
        return real_read(contexts)

    monkeypatch.setattr(batch, "_read_together", terminated_first)
    results = [r for r in run_batch(orders, customers) if r.table_id]
    assert len(results) == 5 and all(r.status == "error" and "connection lost" in r.message for r in results)
    shop.refresh_from_db()
    assert shop.status == "error" and "connection lost" in shop.last_error


def test_a_batch_held_back_by_the_time_share_is_skipped_and_due_when_the_share_allows(make_connection):
    # 0.1% of one backend refills 1 ms of server time per second: 60 ms of debt is a minute's wait.
    shop = make_connection(replica_time_share_percent=0.1, replica_time_burst_seconds=1)
    table = MonitoredTable.objects.create(
        connection=shop, table_name="orders", timestamp_column="created_at", check_interval_seconds=3600
    )
    guardrails.time_share_charge(connection=shop, spent_ms=1060)
    results = run_batch(table)
    assert {r.status for r in results} == {"skipped"}
    assert all(r.details["reason"] == "time_share" and "runs again at" in r.message for r in results)
    assert all(r.queries_used == 0 for r in results)
    retry_at = datetime.fromisoformat(results[0].details["retry_at"])
    assert timezone.now() < retry_at < timezone.now() + timedelta(minutes=2)
    table.refresh_from_db()
    assert table.next_check_at == retry_at  # not an hour later: held back, nothing lost

    QueryAllowance.objects.filter(connection=shop).update(time_balance_ms=1000)  # the share has refilled
    results = run_batch(table)
    assert "skipped" not in {r.status for r in results}
    table.refresh_from_db()
    assert table.next_check_at > timezone.now() + timedelta(minutes=50)


def test_tables_after_the_share_ran_out_mid_batch_are_held_back(make_connection):
    shop = make_connection(replica_time_share_percent=0.1, replica_time_burst_seconds=0.1)
    first, second = (
        MonitoredTable.objects.create(connection=shop, table_name=name, timestamp_column="created_at")
        for name in ("orders", "stale_events")
    )
    # The first table's checks cost more than the 100 ms burst (a session's start-up alone costs some);
    # the bucket then is in debt and the second table is held back.
    QueryAllowance.objects.update_or_create(
        connection=shop,
        defaults={
            "window_start": timezone.now(),
            "next_query_at": timezone.now(),
            "time_balance_ms": 0.001,
            "time_updated_at": timezone.now() + timedelta(hours=1),
        },
    )
    results = run_batch(first, second)
    by_table = {t.id: {r.status for r in results if r.table_id == t.id} for t in (first, second)}
    assert "skipped" not in by_table[first.id]
    assert by_table[second.id] == {"skipped"}
    held = [r for r in results if r.table_id == second.id]
    assert all(r.details["reason"] == "time_share" for r in held)


def test_a_replica_that_cannot_be_reached_is_not_charged_replica_time(make_connection, closed_port):
    down = make_connection(name="down", port=closed_port)
    table = MonitoredTable.objects.create(connection=down, table_name="orders")
    results = run_batch(table)
    assert {r.status for r in results} == {"error"}
    assert QueryAllowance.objects.get(connection=down).time_hour_ms == 0  # read at the start, nothing charged
