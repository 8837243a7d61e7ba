"""monitors.batch: one batch of a connection's tables against the real replica pair, and what it hands over."""

from datetime import timedelta

import pytest
from django.utils import timezone

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
    """The replica session is terminated (by a superuser on the standby) when the volume check starts."""
    from monitors.checks import volume

    shop = make_connection()
    orders = MonitoredTable.objects.create(connection=shop, table_name="orders")
    customers = MonitoredTable.objects.create(connection=shop, table_name="customers")
    real_run = volume.run

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
