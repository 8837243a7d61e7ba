"""monitors.recording: a batch's results, table state and the `on_recorded` hand-off, in one transaction."""

import uuid
from datetime import timedelta

import pytest
from django.db import connection as pulse_db
from django.utils import timezone

from monitors import spool
from monitors.checks import Outcome, Status
from monitors.models import CheckResult, MonitoredTable
from monitors.recording import Bookkeeping, TableRun, bookkeeping_dump, results_record, spool_flush


class Recorder:
    """An `on_recorded` handler that notes each call, and what Pulse's database showed it at that moment."""

    def __init__(self, fail: bool = False):
        self.calls = []
        self.fail = fail

    def __call__(self, *, connection, results):
        ids = [r.id for r in results]
        self.calls.append(
            {
                "connection": connection,
                "results": list(results),
                "in_transaction": pulse_db.in_atomic_block,
                "stored": CheckResult.objects.filter(id__in=ids).count(),
            }
        )
        if self.fail:
            raise RuntimeError("the handler broke")


@pytest.fixture
def orders(make_connection):
    return MonitoredTable.objects.create(connection=make_connection(), table_name="orders")


def leased(table) -> uuid.UUID:
    token = uuid.uuid4()
    MonitoredTable.objects.filter(pk=table.pk).update(
        lease_token=token, lease_expires_at=timezone.now() + timedelta(minutes=1)
    )
    table.refresh_from_db()
    return token


def record(table, token, handler, *, status=Status.PASS):
    run = TableRun(
        table=table,
        outcomes=[
            Outcome(kind="schema_change", status=Status.PASS, message="3 columns", details={"columns": [["id"]]}),
            Outcome(kind="row_count", status=status, observed_value=5, message="5 rows"),
        ],
    )
    lag = Outcome(kind="replication_lag", status=Status.PASS, observed_value=0.2, message="caught up")
    return results_record(
        connection=table.connection,
        token=token,
        runs=[run],
        connection_outcomes=[lag],
        started_at=timezone.now(),
        on_recorded=handler,
    )


@pytest.mark.django_db(transaction=True)
def test_the_handler_is_called_once_inside_the_transaction_with_the_recorded_results(orders):
    handler = Recorder()
    results = record(orders, leased(orders), handler)
    assert len(handler.calls) == 1
    call = handler.calls[0]
    assert call["connection"] == orders.connection and call["results"] == results
    assert {(r.kind, r.table_id) for r in results} == {
        ("schema_change", orders.id),
        ("row_count", orders.id),
        ("replication_lag", None),
    }
    assert call["in_transaction"] and call["stored"] == 3  # the rows exist, not yet committed
    assert not pulse_db.in_atomic_block


@pytest.mark.django_db(transaction=True)
def test_a_handler_that_raises_rolls_the_whole_batch_back(orders):
    token = leased(orders)
    with pytest.raises(RuntimeError, match="the handler broke"):
        record(orders, token, Recorder(fail=True))
    assert not CheckResult.objects.exists()
    orders.refresh_from_db()
    assert orders.lease_token == token and orders.last_checked_at is None and orders.status == "unknown"


@pytest.mark.django_db
def test_results_of_a_lost_lease_are_history_and_not_handed_over(orders):
    leased(orders)  # another process holds the table now
    handler = Recorder()
    results = record(orders, uuid.uuid4(), handler)
    assert [r.kind for r in handler.calls[0]["results"]] == ["replication_lag"] == [r.kind for r in results]
    kept = set(CheckResult.objects.filter(table=orders).values_list("kind", flat=True))
    assert kept == {"schema_change", "row_count"}
    orders.refresh_from_db()
    assert orders.last_checked_at is None  # left to its owner


@pytest.mark.django_db
def test_statuses_are_stored_as_their_values(orders):
    record(orders, leased(orders), Recorder(), status=Status.FAIL)
    with pulse_db.cursor() as cursor:
        cursor.execute("SELECT kind, status FROM monitors_checkresult WHERE table_id = %s ORDER BY kind", [orders.id])
        assert cursor.fetchall() == [("row_count", "fail"), ("schema_change", "pass")]
    orders.refresh_from_db()
    assert orders.status == "failing"


@pytest.mark.django_db
def test_a_spooled_batch_is_handed_to_the_handler_when_flushed(orders, settings, tmp_path):
    settings.PULSE_SPOOL_DIR = tmp_path / "spool"
    book = Bookkeeping(
        connection=orders.connection,
        token=leased(orders),
        started_at=timezone.now(),
        runs=[TableRun(table=orders, outcomes=[Outcome(kind="row_count", status=Status.PASS, observed_value=5)])],
        contact_status="ok",
    )
    spool.spool_put(bookkeeping_dump(book), name=f"batch-{book.token}")
    handler = Recorder()
    assert spool_flush(on_recorded=handler) == 1
    assert len(handler.calls) == 1
    assert [(r.kind, r.status, r.table_id) for r in handler.calls[0]["results"]] == [("row_count", "pass", orders.id)]
