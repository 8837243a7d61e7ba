"""The claim of due work, including its race branches."""

import threading
from datetime import timedelta

import pytest
from django.db import connection as pulse_db
from django.utils import timezone

from monitors.claims import lease_release, tables_claim_due
from monitors.engine import batch_run
from monitors.models import CheckResult, MonitoredTable

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
def test_a_worker_whose_lease_was_taken_over_records_nothing(tables):
    """The race branch: the slow first claimer finishes after another process took its tables."""
    now = timezone.now()
    table = tables[0]
    first = tables_claim_due(now=now, lease=LEASE, limit=1, table_ids=[table.id])
    second = tables_claim_due(now=now + LEASE * 2, lease=LEASE, limit=1, table_ids=[table.id])
    assert first.tables and second.tables
    late = batch_run(connection=table.connection, claim=first, tables=first.tables)
    assert [r.kind for r in late] == ["replication_lag"]  # connection-level only: no table results
    assert not CheckResult.objects.filter(table=table).exists()
    on_time = batch_run(connection=table.connection, claim=second, tables=second.tables)
    assert {r.kind for r in on_time} >= {"schema_change", "volume"}
    assert CheckResult.objects.filter(table=table, kind="volume").count() == 1


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
