"""monitors.runner, heartbeat and results: a pass of the runner in-process, and the housekeeping it relies on."""

from datetime import timedelta

import pytest
from django.utils import timezone

from monitors.checks import Status
from monitors.heartbeat import heartbeat_beat, heartbeats_prune
from monitors.models import CheckResult, MonitoredTable, SchedulerHeartbeat
from monitors.results import results_prune
from monitors.runner import CheckRunner

pytestmark = pytest.mark.django_db


@pytest.fixture
def tables(make_connection):
    shop = make_connection()
    return [
        MonitoredTable.objects.create(connection=shop, table_name="orders", timestamp_column="created_at"),
        MonitoredTable.objects.create(connection=shop, table_name="stale_events", timestamp_column="happened_at"),
    ]


class Recorder:
    def __init__(self):
        self.results = []

    def __call__(self, *, connection, results):
        self.results += results


def test_runner_cycle_summarises_and_hands_every_result_over(tables):
    lines, handler = [], Recorder()
    summary = CheckRunner(on_recorded=handler, workers=1, report=lines.append).cycle()
    assert summary.tables == 2 and summary.statuses[Status.FAIL] == 1 and summary.statuses["pass"] == 6
    assert lines == [summary.line()]
    assert "7 results: 6 passed, 1 failed, 0 errors, 0 skipped" in lines[0]
    assert len(handler.results) == 7  # the checked results; backfilled history is not handed over
    assert CheckResult.objects.filter(id__in=[r.id for r in handler.results]).count() == 7


def test_heartbeat_and_pruning(tables):
    now = timezone.now()
    heartbeat_beat(worker="w1", started_at=now)
    heartbeat_beat(worker="w1", started_at=now)
    assert SchedulerHeartbeat.objects.count() == 1
    gone_at = now - timedelta(days=2)
    SchedulerHeartbeat.objects.create(worker="gone", beat_at=gone_at, started_at=gone_at)
    assert heartbeats_prune(now=now) == 1
    assert list(SchedulerHeartbeat.objects.values_list("worker", flat=True)) == ["w1"]
    CheckRunner(on_recorded=Recorder(), workers=1).cycle()
    old = CheckResult.objects.first()
    CheckResult.objects.filter(pk=old.pk).update(started_at=now - timedelta(days=91))
    assert results_prune(now=now) == 1
    assert not CheckResult.objects.filter(pk=old.pk).exists()


def test_a_forced_pass_checks_every_table_of_every_connection_once(make_connection):
    """Tables of two connections with interleaved ids, small batches: each is checked exactly once."""
    shop, other = make_connection(), make_connection(name="other-replica")
    tables = [
        MonitoredTable.objects.create(connection=connection, table_name=name)
        for name in ("orders", "customers", "empty_events")
        for connection in (shop, other)
    ]
    MonitoredTable.objects.update(next_check_at=timezone.now() + timedelta(hours=1))  # none due: forced only
    handler = Recorder()
    summary = CheckRunner(on_recorded=handler, workers=1, batch_size=2).cycle(force=True)
    assert summary.tables == len(tables)
    checked = [r.table_id for r in handler.results if r.kind == "schema_change"]
    assert sorted(checked) == sorted(t.id for t in tables)
