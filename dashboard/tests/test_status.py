"""dashboard/status.py: the states people read, the guardrail gauges, and the alert counts."""

from datetime import timedelta

from django.utils import timezone

from connections.guardrails.share import time_share_charge
from connections.guardrails.slots import replica_slot
from connections.models import Connection, QueryAllowance
from dashboard import status


def test_connection_states():
    now = timezone.now()

    def state(lagging=False, **fields):
        return status.connection_state(connection=Connection(**fields), lagging=lagging, now=now)

    assert state(is_active=False, status="error") == "paused"
    assert state(status="error", backoff_until=now + timedelta(minutes=1)) == "backing_off"
    assert state(status="error", backoff_until=now - timedelta(minutes=1)) == "unreachable"
    assert state(status="not_replica") == "unreachable"
    assert state(status="ok", lagging=True) == "lagging"
    assert state(status="unknown") == "unknown"
    assert state(status="ok") == "healthy"


def test_table_states():
    assert status.table_state(status="failing", snoozed=True) == "snoozed"
    assert status.table_state(status="failing", snoozed=False) == "failing"
    assert status.table_state(status="healthy", snoozed=True) == "healthy"


def test_guardrail_gauges_show_this_hours_budget_and_an_open_breaker(scene):
    connection, now = scene["connection"], scene["now"]
    QueryAllowance.objects.create(
        connection=connection, window_start=now - timedelta(minutes=10), queries_used=9500, next_query_at=now
    )
    connection.backoff_until, connection.consecutive_failures = now + timedelta(minutes=4), 3
    connection.max_queries_per_hour = 10_000  # an optional cap, set
    gauges = {gauge.name: gauge for gauge in status.guardrail_gauges(connection=connection, now=now)}
    budget = gauges["Query budget (this hour)"]
    assert (budget.value, budget.percent, budget.level) == ("9,500 of 10,000", 95, "bad")
    assert gauges["Sessions in use"].value == "0 of 2"
    assert gauges["Circuit breaker"].value == "open: backing off"
    assert "3 failed contacts in a row; next try in 4 min" in gauges["Circuit breaker"].note


def test_sessions_in_use_counts_the_held_slots(scene):
    connection = scene["connection"]
    with replica_slot(connection=connection, wait_seconds=1):
        assert status.sessions_in_use(connection=connection) == 1
        other = scene["foreign_connection"]
        assert status.sessions_in_use(connection=other) == 0  # another connection's slots are its own
    assert status.sessions_in_use(connection=connection) == 0


def test_last_hours_budget_counts_as_unused(scene):
    connection, now = scene["connection"], scene["now"]
    QueryAllowance.objects.create(
        connection=connection, window_start=now - timedelta(hours=2), queries_used=9500, next_query_at=now
    )
    gauges = {gauge.name: gauge for gauge in status.guardrail_gauges(connection=connection, now=now)}
    assert gauges["Query budget (this hour)"].value == "0 of 10,000,000"


def test_the_replica_time_share_gauge_reads_what_was_charged(scene):
    connection = scene["connection"]
    connection.replica_time_share_percent = 5
    connection.save(update_fields=["replica_time_share_percent"])
    time_share_charge(connection=connection, spent_ms=1500)
    gauges = {gauge.name: gauge for gauge in status.guardrail_gauges(connection=connection, now=timezone.now())}
    share = gauges["Replica time share (last minute)"]
    assert share.value.endswith("of 5%") and 0.4 < share.fraction <= 0.5  # 1.5 s of 60 s is 2.5% of 5%
    assert share.note.startswith("1.5 s of replica time this hour")


def test_alert_counts_text():
    assert status.AlertCounts(open=1, acknowledged=2).text == "1 open, 2 acknowledged"
    assert status.AlertCounts().text == "—"
