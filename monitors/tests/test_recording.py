"""monitors.recording: a batch's results, table state and the `on_recorded` hand-off, in one transaction."""

import logging
import threading
import uuid
from datetime import timedelta

import psycopg
import pytest
from django.db import connection as pulse_db
from django.utils import timezone

from connections import guardrails
from connections.models import QueryAllowance
from monitors import spool
from monitors.checks import Outcome, Status
from monitors.models import CheckResult, MonitoredTable
from monitors.recording import (
    Bookkeeping,
    TableRun,
    batch_bookkeep,
    bookkeeping_dump,
    results_ignore,
    results_record,
    spool_flush,
)


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
def test_the_handed_over_results_are_the_stored_rows_field_by_field(orders):
    """The results handed to the lifecycle are built without the ORM's keyword path: each must equal the row
    the database holds, every concrete field, with its table and connection at hand without a query."""
    results = record(orders, leased(orders), Recorder(), status=Status.FAIL)
    fields = [f.attname for f in CheckResult._meta.concrete_fields]
    stored = {r.id: r for r in CheckResult.objects.filter(id__in=[r.id for r in results])}
    assert len(stored) == 3
    for result in results:
        row = stored[result.id]
        assert [getattr(result, name) for name in fields] == [getattr(row, name) for name in fields]
        assert not result._state.adding
        assert result.connection is orders.connection
        assert result.table is (orders if result.table_id else None)


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


@pytest.mark.django_db(transaction=True)
def test_a_recording_postgresql_rolls_back_is_retried_not_lost(orders):
    """A deadlock or lock timeout in the binary-cursor UPDATE is a raw psycopg error: it must be retried like an
    outage (once, it lost a batch of 50 tables in the memory benchmark)."""
    token = leased(orders)
    run = TableRun(
        table=orders,
        outcomes=[
            Outcome(kind="schema_change", status=Status.PASS, message="3 columns", details={"columns": [["id"]]})
        ],
    )
    book = Bookkeeping(connection=orders.connection, token=token, started_at=timezone.now(), runs=[run])
    retried = threading.Event()

    class RetryWatch(logging.Handler):
        def emit(self, record):
            if "retrying" in record.getMessage():
                retried.set()

    watch = RetryWatch()
    logging.getLogger("monitors.recording").addHandler(watch)
    outcome = {}

    def record_in_a_worker():
        try:
            with pulse_db.cursor() as cursor:
                cursor.execute("SET lock_timeout = '100ms'")  # the first try gives up on the held row at once
            outcome["results"] = batch_bookkeep(book, on_recorded=results_ignore, retry_seconds=60)
        finally:
            pulse_db.close()

    db = pulse_db.settings_dict
    try:
        with psycopg.connect(host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"]) as holder:
            holder.execute("SELECT id FROM monitors_monitoredtable WHERE id = %s FOR UPDATE", [orders.id])
            worker = threading.Thread(target=record_in_a_worker)
            worker.start()
            assert retried.wait(30), "the first try's LockNotAvailable was not retried"
        worker.join(60)  # the row is free now: the retry records the batch
    finally:
        logging.getLogger("monitors.recording").removeHandler(watch)
    assert not worker.is_alive()
    assert [r.kind for r in outcome["results"]] == ["schema_change"]
    assert CheckResult.objects.filter(table=orders, kind="schema_change").count() == 1
    orders.refresh_from_db()
    assert orders.lease_token is None and orders.last_checked_at is not None


def schema_run(table) -> TableRun:
    return TableRun(
        table=table,
        outcomes=[
            Outcome(kind="schema_change", status=Status.PASS, message="3 columns", details={"columns": [["id"]]})
        ],
    )


@pytest.mark.django_db(transaction=True)
def test_a_recording_whose_database_session_was_killed_reconnects_and_records(orders, caplog):
    """Pulse's database drops the session (a restart, a failover, an admin): the retry reconnects, nothing is lost."""
    token = leased(orders)
    book = Bookkeeping(connection=orders.connection, token=token, started_at=timezone.now(), runs=[schema_run(orders)])
    with pulse_db.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    db = pulse_db.settings_dict
    with psycopg.connect(host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"]) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone() == (True,)
    with caplog.at_level(logging.WARNING, logger="monitors.recording"):
        results = batch_bookkeep(book, on_recorded=results_ignore, retry_seconds=30)
    assert "recording a batch failed (OperationalError); retrying" in caplog.text
    assert [r.kind for r in results] == ["schema_change"]
    assert CheckResult.objects.filter(table=orders, kind="schema_change").count() == 1
    orders.refresh_from_db()
    assert orders.lease_token is None and orders.last_checked_at is not None


@pytest.mark.django_db(transaction=True)
def test_a_recording_that_cannot_reach_the_database_in_time_is_spooled_then_recorded(
    orders, settings, tmp_path, closed_port
):
    settings.PULSE_SPOOL_DIR = tmp_path / "spool"
    token = leased(orders)
    book = Bookkeeping(connection=orders.connection, token=token, started_at=timezone.now(), runs=[schema_run(orders)])
    real_port = pulse_db.settings_dict["PORT"]
    pulse_db.close()
    pulse_db.settings_dict["PORT"] = closed_port  # Pulse's database is unreachable (connection refused)
    try:
        assert batch_bookkeep(book, on_recorded=results_ignore, retry_seconds=0) == []
    finally:
        pulse_db.close()
        pulse_db.settings_dict["PORT"] = real_port
    assert spool.spool_pending() and len(list(spool.spool_dir().glob("*.json"))) == 1
    assert not CheckResult.objects.filter(table=orders).exists()  # nothing half-written
    assert spool_flush(on_recorded=results_ignore) == 1
    assert CheckResult.objects.filter(table=orders, kind="schema_change").count() == 1
    assert not spool.spool_pending()


@pytest.mark.django_db(transaction=True)
def test_the_shared_allowance_row_is_not_locked_while_a_batch_is_recorded(orders):
    """Every batch of every process refunds to its connection's one allowance row: the refund comes last in the
    recording transaction, so other batches never queue on that row behind a recording's handler."""
    guardrails.allowance_reserve(connection=orders.connection, queries=10, now=timezone.now())
    token = leased(orders)
    db = pulse_db.settings_dict
    seen = {}

    def try_the_row(*, connection, results):
        with psycopg.connect(host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"]) as other:
            other.execute("SET lock_timeout = '1s'")
            seen["row"] = other.execute(
                "SELECT queries_used FROM connections_queryallowance WHERE connection_id = %s FOR UPDATE NOWAIT",
                [connection.pk],
            ).fetchone()

    book = Bookkeeping(
        connection=orders.connection,
        token=token,
        started_at=timezone.now(),
        runs=[schema_run(orders)],
        unused_queries=4,
    )
    assert [r.kind for r in batch_bookkeep(book, on_recorded=try_the_row)] == ["schema_change"]
    assert seen["row"] == (10,)  # free while the handler ran, the refund not yet made
    assert QueryAllowance.objects.get(connection=orders.connection).queries_used == 6  # refunded with the batch


@pytest.mark.django_db
def test_the_table_state_is_written_field_by_field_from_the_runs(make_connection):
    """The batch's table states go to the server as one JSON document: every written field must come back as the
    run said, JSON nested as it was, NULL where nothing is to be kept, times to the microsecond, odd text intact."""
    shop = make_connection()
    kept = [{"name": "id", "type": "bigint"}]
    fresh, known = (
        MonitoredTable.objects.create(connection=shop, table_name="fresh", timestamp_column="created_at"),
        MonitoredTable.objects.create(
            connection=shop,
            table_name="known",
            schema_reference=kept,
            volume_series="rows:created_at:1h",
            volume_bucket_seconds=3600,
            backfilled_at=timezone.now() - timedelta(days=2),
        ),
    )
    token = uuid.uuid4()
    MonitoredTable.objects.filter(pk__in=[fresh.pk, known.pk]).update(
        lease_token=token, lease_expires_at=timezone.now() + timedelta(minutes=1)
    )
    fresh.refresh_from_db()
    known.refresh_from_db()
    started_at = timezone.now().replace(microsecond=123457)
    retry_at = started_at + timedelta(seconds=42, microseconds=1)
    runs = [
        TableRun(
            table=fresh,
            outcomes=[
                Outcome(kind="schema_change", status=Status.PASS, details={"columns": [{"name": "é\"'\\", "n": 1.25}]}),
                Outcome(
                    kind="volume",
                    status=Status.PASS,
                    observed_value=3,
                    details={"series": "rows:created_at:2h", "bucket_seconds": 7200, "backfilled": 10},
                ),
            ],
            plan_costs={"volume_bucket": {"cost": 12.5, "at": "2026-11-30T00:00:00+00:00"}, "count": {"cost": 1e-07}},
            update_times=["2026-11-30T00:00:00+00:00"],
        ),
        TableRun(
            table=known,
            outcomes=[
                Outcome(
                    kind="freshness",
                    status=Status.SKIPPED,
                    message="held back: ünïcode \"quoted\" 'single' \\ back\nslash",
                    details={"reason": "time_share", "retry_at": retry_at.isoformat()},
                )
            ],
        ),
    ]
    results_record(
        connection=shop, token=token, runs=runs, connection_outcomes=[], started_at=started_at, on_recorded=Recorder()
    )
    fresh.refresh_from_db()
    known.refresh_from_db()
    assert (fresh.status, fresh.last_error, fresh.lease_token, fresh.lease_expires_at) == ("healthy", "", None, None)
    assert fresh.last_checked_at == started_at and fresh.backfilled_at == started_at
    assert fresh.next_check_at == started_at + timedelta(seconds=fresh.check_interval_seconds)
    assert fresh.schema_reference == [{"name": "é\"'\\", "n": 1.25}]
    assert fresh.plan_costs == {
        "volume_bucket": {"cost": 12.5, "at": "2026-11-30T00:00:00+00:00"},
        "count": {"cost": 1e-07},
    }
    assert fresh.update_times == ["2026-11-30T00:00:00+00:00"]
    assert (fresh.volume_series, fresh.volume_bucket_seconds) == ("rows:created_at:2h", 7200)
    assert known.status == "unknown"  # only skipped checks: the status stays
    assert known.last_error == "held back: ünïcode \"quoted\" 'single' \\ back\nslash"
    assert known.next_check_at == retry_at  # sooner than the interval: to the microsecond
    assert known.schema_reference == kept and known.plan_costs == {} and known.update_times == []
    assert (known.volume_series, known.volume_bucket_seconds) == ("rows:created_at:1h", 3600)
    assert known.backfilled_at < started_at - timedelta(days=1)
