"""The local spool: batches that could not be recorded in time are written atomically and recorded later."""

import json
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from monitors import spool
from monitors.checks import Outcome
from monitors.models import CheckResult, MonitoredTable
from monitors.recording import Bookkeeping, TableRun, bookkeeping_dump, results_ignore, spool_flush

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def spool_dir(settings, tmp_path):
    settings.PULSE_SPOOL_DIR = tmp_path / "spool"
    return settings.PULSE_SPOOL_DIR


@pytest.fixture
def orders(make_connection):
    return MonitoredTable.objects.create(connection=make_connection(), table_name="orders")


def spooled_batch(table, *, started_at):
    bucket = started_at.replace(minute=0, second=0, microsecond=0)
    book = Bookkeeping(
        connection=table.connection,
        token=uuid.uuid4(),
        started_at=started_at,
        runs=[
            TableRun(
                table=table,
                outcomes=[
                    Outcome(kind="schema_change", status="pass", message="3 columns", details={"columns": [["id"]]}),
                    Outcome(
                        kind="volume",
                        status="pass",
                        observed_value=42,
                        bucket_start=bucket,
                        history=[(bucket - timedelta(hours=1), 40.0)],
                    ),
                ],
                plan_costs={"volume": {"cost": 1.0, "at": started_at.isoformat()}},
            )
        ],
        connection_outcomes=[Outcome(kind="replication_lag", status="pass", observed_value=0.5)],
        contact_status="ok",
    )
    return spool.spool_put(bookkeeping_dump(book), name=f"batch-{book.token}")


def test_a_spooled_batch_is_recorded_when_flushed_and_leaves_the_spool(orders, spool_dir):
    started_at = timezone.now() - timedelta(minutes=2)
    path = spooled_batch(orders, started_at=started_at)
    assert json.loads(path.read_text())["runs"][0]["table_id"] == orders.id
    assert not list(spool_dir.glob(".tmp-*"))  # written through a temporary file, renamed whole
    assert spool_flush(on_recorded=results_ignore) == 1
    volume = CheckResult.objects.get(table=orders, kind="volume", details__backfill__isnull=True)
    assert volume.observed_value == 42 and volume.started_at == started_at
    assert CheckResult.objects.filter(table=orders, kind="volume", details__backfill=True).count() == 1
    assert CheckResult.objects.filter(connection=orders.connection, table=None, kind="replication_lag").exists()
    orders.refresh_from_db()
    assert orders.last_checked_at == started_at and orders.schema_reference == [["id"]]
    orders.connection.refresh_from_db()
    assert orders.connection.status == "ok"
    assert not list(spool_dir.iterdir())


def test_a_spooled_batch_never_regresses_a_newer_check(orders):
    started_at = timezone.now() - timedelta(minutes=2)
    spooled_batch(orders, started_at=started_at)
    MonitoredTable.objects.filter(pk=orders.pk).update(last_checked_at=timezone.now(), status="failing")
    assert spool_flush(on_recorded=results_ignore) == 1
    orders.refresh_from_db()
    assert orders.status == "failing" and orders.last_checked_at > started_at  # state kept
    assert CheckResult.objects.filter(table=orders, kind="volume", started_at=started_at).exists()  # history kept


def test_a_spooled_batch_of_a_deleted_connection_is_dropped(orders, spool_dir):
    spooled_batch(orders, started_at=timezone.now())
    orders.connection.delete()
    assert spool_flush(on_recorded=results_ignore) == 1
    assert not CheckResult.objects.exists()
    assert not list(spool_dir.iterdir())


def test_an_unreadable_spool_file_is_moved_aside(spool_dir):
    spool_dir.mkdir(parents=True)
    (spool_dir / "broken.json").write_text("{not json")
    assert spool_flush(on_recorded=results_ignore) == 0
    assert [p.name for p in spool_dir.iterdir()] == ["broken.json.unreadable"]
