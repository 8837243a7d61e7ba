"""The hand-off from recording to the alert lifecycle: a failing lifecycle keeps the results and is replayed."""

import logging
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from alerts import lifecycle
from alerts.intake import BACKLOG_BASE_BACKOFF, lifecycle_backlog_run_due, results_intake
from alerts.models import Alert, LifecycleBacklog
from monitors.checks import Outcome
from monitors.models import CheckResult, MonitoredTable
from monitors.recording import TableRun, results_record

pytestmark = pytest.mark.django_db


@pytest.fixture
def orders(make_connection):
    return MonitoredTable.objects.create(connection=make_connection(), table_name="orders", failure_threshold=2)


@pytest.fixture
def runs(orders):
    """record(status): one freshness run of public.orders, a minute after the previous one, through intake."""
    clock = {"now": timezone.now() - timedelta(hours=1)}

    def record(status):
        clock["now"] += timedelta(minutes=1)
        token = uuid.uuid4()
        MonitoredTable.objects.filter(pk=orders.pk).update(lease_token=token)
        message = "stale" if status == "fail" else "fresh"
        return results_record(
            connection=orders.connection,
            token=token,
            runs=[TableRun(table=orders, outcomes=[Outcome(kind="freshness", status=status, message=message)])],
            connection_outcomes=[],
            started_at=clock["now"],
            on_recorded=results_intake,
        )

    return record


@pytest.fixture
def broken_lifecycle(monkeypatch):
    """While active, the alert lifecycle raises (a bug, or a database error inside it)."""

    def boom(**kwargs):
        Alert.objects.create(  # a partial write the savepoint must undo
            connection=kwargs["connection"],
            kind="connection_error",
            opened_at=timezone.now(),
            last_seen_at=timezone.now(),
        )
        raise RuntimeError("lifecycle bug")

    monkeypatch.setattr(lifecycle, "results_process", boom)
    return monkeypatch


def raise_bug(**kwargs):
    raise RuntimeError("lifecycle bug")


def freshness_alerts(table):
    return Alert.objects.filter(table=table, kind="freshness")


def test_a_failing_lifecycle_keeps_the_results_logs_and_queues_the_batch(orders, runs, broken_lifecycle, caplog):
    caplog.set_level(logging.ERROR, logger="alerts.intake")
    runs("fail")
    runs("fail")

    assert CheckResult.objects.filter(table=orders, kind="freshness", status="fail").count() == 2
    assert not Alert.objects.exists()  # the partial write was rolled back with the savepoint
    rows = list(LifecycleBacklog.objects.order_by("id"))
    assert len(rows) == 2
    ids = list(CheckResult.objects.filter(table=orders).order_by("started_at").values_list("id", flat=True))
    assert [row.result_ids for row in rows] == [[ids[0]], [ids[1]]]
    assert {row.error for row in rows} == {"RuntimeError"}
    assert all(row.tries == 0 and row.connection_id == orders.connection_id for row in rows)
    failures = [r for r in caplog.records if r.name == "alerts.intake"]
    assert len(failures) == 2 and all(r.exc_info and r.exc_info[0] is RuntimeError for r in failures)


def test_the_backlog_opens_the_alert_later(orders, runs, broken_lifecycle):
    runs("fail")
    runs("fail")
    broken_lifecycle.undo()

    assert lifecycle_backlog_run_due(now=timezone.now()) == 2

    alert = freshness_alerts(orders).get()
    assert alert.status == Alert.Status.OPEN and alert.consecutive_failures == 2
    assert list(alert.events.values_list("kind", flat=True)) == ["opened"]
    assert not LifecycleBacklog.objects.exists()
    assert lifecycle_backlog_run_due(now=timezone.now()) == 0
    assert freshness_alerts(orders).count() == 1


def test_an_older_replay_does_not_reopen_after_a_newer_pass(orders, runs, monkeypatch):
    runs("fail")
    runs("fail")
    alert = freshness_alerts(orders).get()
    runs("pass")
    alert.refresh_from_db()
    assert alert.status == Alert.Status.RESOLVED
    real = lifecycle.results_process
    monkeypatch.setattr(lifecycle, "results_process", raise_bug)
    runs("fail")
    monkeypatch.setattr(lifecycle, "results_process", real)
    runs("pass")

    assert lifecycle_backlog_run_due(now=timezone.now()) == 1

    alert.refresh_from_db()
    assert alert.status == Alert.Status.RESOLVED
    assert list(alert.events.values_list("kind", flat=True)) == ["opened", "resolved"]
    assert not LifecycleBacklog.objects.exists()


def test_an_older_replay_does_not_resolve_against_a_newer_failure(orders, runs, monkeypatch):
    runs("fail")
    runs("fail")
    alert = freshness_alerts(orders).get()
    real = lifecycle.results_process
    monkeypatch.setattr(lifecycle, "results_process", raise_bug)
    runs("pass")
    monkeypatch.setattr(lifecycle, "results_process", real)
    runs("fail")

    assert lifecycle_backlog_run_due(now=timezone.now()) == 1

    alert.refresh_from_db()
    assert alert.status == Alert.Status.OPEN
    assert list(alert.events.values_list("kind", flat=True)) == ["opened"]
    assert not LifecycleBacklog.objects.exists()


def test_a_replay_that_fails_again_backs_off_and_is_not_due_before(orders, runs, broken_lifecycle, caplog):
    runs("fail")
    now = timezone.now()

    assert lifecycle_backlog_run_due(now=now) == 0

    row = LifecycleBacklog.objects.get()
    assert row.tries == 1 and row.next_try_at == now + BACKLOG_BASE_BACKOFF * 2
    assert "replaying the alert lifecycle" in caplog.text
    assert lifecycle_backlog_run_due(now=row.next_try_at - timedelta(seconds=1)) == 0
    assert LifecycleBacklog.objects.get().tries == 1
    broken_lifecycle.undo()
    assert lifecycle_backlog_run_due(now=row.next_try_at) == 1
    assert not LifecycleBacklog.objects.exists()


def test_a_rebaseline_through_alerts_resolves_the_open_volume_alert(orders):
    alert = Alert.objects.create(
        connection=orders.connection,
        table=orders,
        kind="volume",
        opened_at=timezone.now(),
        last_seen_at=timezone.now(),
    )
    since = timezone.now() - timedelta(days=1)

    lifecycle.table_rebaseline_accept(table=orders, since=since)

    alert.refresh_from_db()
    orders.refresh_from_db()
    assert alert.status == Alert.Status.RESOLVED
    assert orders.baseline_since == since and orders.backfilled_at is None
