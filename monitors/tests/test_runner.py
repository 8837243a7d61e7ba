"""monitors.runner, heartbeat and results: a pass of the runner in-process, and the housekeeping it relies on."""

from datetime import timedelta

import pytest
from django.utils import timezone

from monitors.checks import Status
from monitors.heartbeat import heartbeat_beat, heartbeats_prune
from monitors.models import CheckResult, MonitoredTable, SchedulerHeartbeat
from monitors.runner import CheckRunner, CycleSummary

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
    assert lines[0].endswith("; replication lag: shop-replica 0 s")  # the lag result, by connection
    assert summary.exit_code == 1
    assert len(handler.results) == 7  # the checked results; backfilled history is not handed over
    assert CheckResult.objects.filter(id__in=[r.id for r in handler.results]).count() == 7


def test_heartbeats_are_kept_per_worker_and_pruned(tables):
    now = timezone.now()
    heartbeat_beat(worker="w1", started_at=now)
    heartbeat_beat(worker="w1", started_at=now)
    assert SchedulerHeartbeat.objects.count() == 1
    gone_at = now - timedelta(days=2)
    SchedulerHeartbeat.objects.create(worker="gone", beat_at=gone_at, started_at=gone_at)
    assert heartbeats_prune(now=now) == 1
    assert list(SchedulerHeartbeat.objects.values_list("worker", flat=True)) == ["w1"]


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


@pytest.mark.parametrize(
    ("statuses", "code"),
    [
        ({}, 0),
        ({"pass": 3}, 0),
        ({"pass": 3, "fail": 1}, 1),
        ({"pass": 3, "skipped": 1}, 2),
        ({"fail": 2, "error": 1}, 2),  # could-not-run wins over failed
    ],
)
def test_the_exit_code_says_failed_before_passed_and_could_not_run_before_failed(statuses, code):
    summary = CycleSummary()
    summary.statuses.update(statuses)
    assert summary.exit_code == code


def test_a_lost_batch_is_a_could_not_run():
    assert CycleSummary(lost_batches=1).exit_code == 2


def test_one_error_of_a_replica_that_is_down_is_reported_once_with_its_count(make_connection, tables):
    down = make_connection(name="down", port=1)
    for name in ("orders", "customers", "page_views"):
        MonitoredTable.objects.create(connection=down, table_name=name, timestamp_column="created_at")
    lines = []
    summary = CheckRunner(on_recorded=Recorder(), workers=1, report=lines.append).cycle()
    assert summary.statuses[Status.ERROR] == 9 and summary.exit_code == 2
    assert lines == ["  down (9 checks): error — cannot connect: connection refused", summary.line()]


def test_a_pass_with_nothing_due_says_when_the_next_table_is_due(tables):
    CheckRunner(on_recorded=Recorder(), workers=1).cycle()
    soonest = timezone.now() + timedelta(minutes=7, seconds=50)
    MonitoredTable.objects.filter(pk=tables[0].pk).update(next_check_at=soonest)
    MonitoredTable.objects.filter(pk=tables[1].pk).update(next_check_at=soonest + timedelta(hours=1))
    lines = []
    summary = CheckRunner(on_recorded=Recorder(), workers=1, report=lines.append).cycle()
    assert summary.tables == 0 and summary.exit_code == 0
    local = timezone.localtime(soonest)
    assert lines == [
        f"nothing due: the next table is due in 7 min (at {local:%H:%M:%S %Z}); --all checks every active table now"
    ]
    MonitoredTable.objects.update(is_active=False)
    lines.clear()
    CheckRunner(on_recorded=Recorder(), workers=1, report=lines.append).cycle()
    assert lines == ["nothing to check: no active table on an active connection"]
