"""monitors.runner, heartbeat and results: a pass of the runner in-process, and the housekeeping it relies on."""

import gc
import threading
from datetime import datetime, timedelta

import pytest
from django.db import connection as pulse_db
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from connections import guardrails
from connections.guardrails.runner import QueryRunner
from connections.models import QueryAllowance
from monitors.checks import Status
from monitors.heartbeat import heartbeat_beat, heartbeats_prune
from monitors.models import CheckResult, MonitoredTable, SchedulerHeartbeat
from monitors.runner import COLLECTOR_YOUNG_THRESHOLD, CheckRunner, CycleSummary, collector_tune

pytestmark = pytest.mark.django_db

TABLE_NAMES = ("orders", "customers", "empty_events", "stale_events")


@pytest.fixture
def counted_statements(monkeypatch):
    """How many counted statements every QueryRunner sent (a spy around the real `_send`): per-table checks'
    statements and a batch's shared ones (catalog, data), which no single result's `queries_used` holds."""
    sent = {"count": 0}
    real_send = QueryRunner._send

    def send(self, cur, query, params=None, *, counted=True, user_sql=False):
        sent["count"] += counted
        return real_send(self, cur, query, params, counted=counted, user_sql=user_sql)

    monkeypatch.setattr(QueryRunner, "_send", send)
    return sent


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


def _concurrent_passes(count: int) -> None:
    """`count` runners, each as its own runchecks process would (its own session to Pulse's database),
    each running a pass over the due tables with batches of one table at the same time."""
    errors = []
    start = threading.Barrier(count)

    def one_process():
        try:
            start.wait()
            CheckRunner(on_recorded=Recorder(), workers=1, batch_size=1).cycle()
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            pulse_db.close()

    threads = [threading.Thread(target=one_process) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def _results_per_table(tables) -> dict[int, list[CheckResult]]:
    found = {t.id: [] for t in tables}
    for result in CheckResult.objects.filter(table__in=tables, details__backfill__isnull=True):
        found[result.table_id].append(result)
    return found


@pytest.mark.django_db(transaction=True)
def test_a_query_budget_running_out_under_concurrent_processes_holds_back_without_losing_or_doubling(
    make_connection,
):
    shop = make_connection(max_queries_per_hour=7)
    tables = [MonitoredTable.objects.create(connection=shop, table_name=name) for name in TABLE_NAMES]
    _concurrent_passes(2)
    allowance = QueryAllowance.objects.get(connection=shop)
    assert allowance.queries_used <= 7  # never overspent, whoever reserved
    per_table = _results_per_table(tables)
    assert all(sorted(r.kind for r in found) == ["schema_change", "volume"] for found in per_table.values())
    skipped = [r for found in per_table.values() for r in found if r.status == Status.SKIPPED]
    ran = [r for found in per_table.values() for r in found if r.status != Status.SKIPPED]
    assert skipped and ran  # the budget ran out part way
    assert all(r.details["reason"] == "budget" and "query budget of 7/h" in r.message for r in skipped)
    assert sum(r.queries_used for r in ran) <= allowance.queries_used


@pytest.mark.django_db(transaction=True)
def test_a_time_share_used_up_under_concurrent_processes_holds_every_table_back_until_it_refills(make_connection):
    shop = make_connection(replica_time_share_percent=0.1, replica_time_burst_seconds=1)
    tables = [
        MonitoredTable.objects.create(connection=shop, table_name=name, check_interval_seconds=3600)
        for name in TABLE_NAMES
    ]
    guardrails.time_share_charge(connection=shop, spent_ms=1100)  # 100 ms of debt: 100 s at 1 ms/s
    _concurrent_passes(2)
    per_table = _results_per_table(tables)
    assert all(sorted(r.kind for r in found) == ["schema_change", "volume"] for found in per_table.values())
    assert all(
        r.status == Status.SKIPPED and r.details["reason"] == "time_share" and r.queries_used == 0
        for found in per_table.values()
        for r in found
    )
    for table in tables:
        table.refresh_from_db()
        retry_at = datetime.fromisoformat(per_table[table.id][0].details["retry_at"])
        assert table.next_check_at == retry_at < timezone.now() + timedelta(minutes=3)

    QueryAllowance.objects.filter(connection=shop).update(time_balance_ms=1000)  # refilled
    MonitoredTable.objects.filter(connection=shop).update(next_check_at=timezone.now())  # retry_at reached
    CheckRunner(on_recorded=Recorder(), workers=1).cycle()
    per_table = _results_per_table(tables)
    assert all(
        {r.status for r in found if r.started_at > found[0].started_at} <= {Status.PASS, Status.FAIL}
        and len(found) == 4
        for found in per_table.values()
    )
    row = QueryAllowance.objects.get(connection=shop)
    assert row.time_hour_ms > 1100  # the checks' server time was charged on top


def test_a_daemon_pass_leaves_a_connection_held_back_by_its_time_share_after_one_batch(make_connection):
    shop = make_connection(replica_time_share_percent=0.1, replica_time_burst_seconds=1)
    tables = [MonitoredTable.objects.create(connection=shop, table_name=name) for name in TABLE_NAMES]
    guardrails.time_share_charge(connection=shop, spent_ms=1100)  # 100 s of debt at 1 ms/s
    runner = CheckRunner(on_recorded=Recorder(), workers=1, batch_size=1)
    runner.cycle(wait=False)  # a daemon tick
    held = CheckResult.objects.filter(table__in=tables)
    assert held.values("table").distinct().count() == 1  # one batch recorded as held back, not the backlog
    assert all(r.status == Status.SKIPPED and r.details["reason"] == "time_share" for r in held)
    assert MonitoredTable.objects.filter(connection=shop, next_check_at__isnull=True).count() == 3  # still due


def test_a_batch_under_query_caps_that_cannot_bind_writes_the_shared_row_twice_and_still_counts_its_queries(
    tables, counted_statements
):
    """At the default caps (their maxima) nothing is reserved or refunded: the time share's two charges (admit,
    settle) carry the batch's query count, so the hour's count stays exact with one hot-row write per charge."""
    guardrails.time_share_charge(connection=tables[0].connection, spent_ms=0)  # the row exists, as after a first use
    with CaptureQueriesContext(pulse_db) as captured:
        CheckRunner(on_recorded=Recorder(), workers=1).cycle()
    writes = [q["sql"] for q in captured.captured_queries if "connections_queryallowance" in q["sql"]]
    assert len(writes) == 2 and all("time_balance_ms" in sql for sql in writes)  # admit and settle only
    row = QueryAllowance.objects.get(connection=tables[0].connection)
    assert counted_statements["count"] >= len(tables)
    assert row.queries_used == counted_statements["count"]  # every statement, the session's recovery check included
    assert row.window_start == timezone.now().replace(minute=0, second=0, microsecond=0)


def test_a_batch_under_a_query_cap_that_binds_still_reserves_and_refunds(make_connection, counted_statements):
    shop = make_connection(max_queries_per_hour=1000)
    MonitoredTable.objects.create(connection=shop, table_name="orders", timestamp_column="created_at")
    with CaptureQueriesContext(pulse_db) as captured:
        CheckRunner(on_recorded=Recorder(), workers=1).cycle()
    writes = [q["sql"] for q in captured.captured_queries if "connections_queryallowance" in q["sql"]]
    assert sum("next_query_at" in sql for sql in writes) >= 1  # the reservation
    row = QueryAllowance.objects.get(connection=shop)
    assert row.queries_used == counted_statements["count"]  # reserved up front, the unused part given back


def test_later_daemon_ticks_leave_a_held_back_connection_alone_until_its_share_lets_it_run(make_connection):
    """Without this, every tick wrote another batch of held-back results while the share was in debt: in the
    100,000-table rehearsal at default settings, 42 held-back table runs/s, nearly all of Pulse's writes."""
    shop = make_connection(replica_time_share_percent=0.1, replica_time_burst_seconds=1)
    tables = [MonitoredTable.objects.create(connection=shop, table_name=name) for name in TABLE_NAMES]
    guardrails.time_share_charge(connection=shop, spent_ms=1100)  # 100 s of debt at 1 ms/s
    runner = CheckRunner(on_recorded=Recorder(), workers=1, batch_size=1)
    for _ in range(3):
        runner.cycle(wait=False)  # three daemon ticks, all before the share refills
    held = CheckResult.objects.filter(table__in=tables)
    assert held.values("table").distinct().count() == 1
    assert MonitoredTable.objects.filter(connection=shop, next_check_at__isnull=True).count() == 3  # still due
    retry_at = datetime.fromisoformat(held.first().details["retry_at"])
    assert runner._held_until[shop.pk] == retry_at + timedelta(seconds=1)  # the named moment, plus a first pause
    runner._held_until[shop.pk] = timezone.now()  # that moment has come
    runner.cycle(wait=False)
    assert held.values("table").distinct().count() == 2  # claimed again (and held back again: still in debt)
    latest = held.order_by("-started_at").first()
    retry_at = datetime.fromisoformat(latest.details["retry_at"])
    assert runner._held_until[shop.pk] == retry_at + timedelta(seconds=2)  # held back twice in a row: twice as long


def test_the_pause_after_held_back_batches_is_capped_and_ends_with_a_batch_that_runs(make_connection):
    shop = make_connection(replica_time_share_percent=0.1, replica_time_burst_seconds=1)
    tables = [MonitoredTable.objects.create(connection=shop, table_name=name) for name in TABLE_NAMES]
    guardrails.time_share_charge(connection=shop, spent_ms=1100)  # 100 s of debt at 1 ms/s
    runner = CheckRunner(on_recorded=Recorder(), workers=1, batch_size=1)
    runner._held_streak[shop.pk] = 40  # many held-back batches in a row before this one
    runner.cycle(wait=False)
    latest = CheckResult.objects.filter(table__in=tables).order_by("-started_at").first()
    retry_at = datetime.fromisoformat(latest.details["retry_at"])
    assert runner._held_until[shop.pk] == retry_at + timedelta(seconds=30)
    QueryAllowance.objects.filter(connection=shop).update(time_balance_ms=1000)  # refilled
    runner._held_until[shop.pk] = timezone.now()
    runner.cycle(wait=False)
    assert shop.pk not in runner._held_streak  # a batch ran: the next held-back batch pauses 1 s again


@pytest.fixture
def collector_thresholds():
    """The garbage collector's thresholds, restored after the test (they are the process's)."""
    saved = gc.get_threshold()
    gc.set_threshold(700, 7, 9)
    yield
    gc.set_threshold(*saved)


@pytest.mark.django_db(False)
def test_tuning_the_collector_spaces_its_young_collections_and_keeps_the_older_generations(collector_thresholds):
    collector_tune()
    assert gc.get_threshold() == (COLLECTOR_YOUNG_THRESHOLD, 7, 9)
    assert gc.isenabled()
