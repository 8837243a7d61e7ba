"""Alert lifecycle driven by real recorded results (recording hands them to alerts.intake.results_intake)."""

import uuid
from datetime import timedelta

import psycopg
import pytest
from django.utils import timezone

from alerts.intake import results_intake
from alerts.lifecycle import (
    _UNRESOLVED,
    UNRESOLVED,
    AlertStateError,
    _alerts_open,
    _Opening,
    _unresolved,
    alert_acknowledge,
    alert_resolve,
    alert_snooze,
    results_process,
)
from alerts.models import Alert, AlertEvent, Notification
from alerts.outbox import message_for_event
from connections.models import MaintenanceWindow
from monitors.checks import Outcome
from monitors.models import CheckResult, MonitoredTable
from monitors.recording import TableRun, results_record

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop(make_connection):
    return make_connection()


@pytest.fixture
def orders(shop):
    return MonitoredTable.objects.create(connection=shop, table_name="orders", failure_threshold=2)


class Clock:
    """Records runs a minute apart, through the same recording path as the engine."""

    def __init__(self):
        self.now = timezone.now() - timedelta(hours=1)

    def run(self, table, *outcomes, connection_outcomes=()):
        self.now += timedelta(minutes=1)
        claim_token = uuid.uuid4()
        MonitoredTable.objects.filter(pk=table.pk).update(lease_token=claim_token)
        return results_record(
            connection=table.connection,
            token=claim_token,
            runs=[TableRun(table=table, outcomes=list(outcomes))],
            connection_outcomes=list(connection_outcomes),
            started_at=self.now,
            on_recorded=results_intake,
        )


def fail(kind="freshness", message="stale"):
    return Outcome(kind=kind, status="fail", message=message, observed_value=7200, expected_upper=3600)


def ok(kind="freshness"):
    return Outcome(kind=kind, status="pass", message="fresh", observed_value=60)


def error(kind="freshness", message="cannot connect: connection refused"):
    return Outcome(kind=kind, status="error", message=message)


def alerts_of(table, kind="freshness"):
    return Alert.objects.filter(table=table, kind=kind)


def events(alert):
    """In the order written (a resolve by hand is stamped with the real time, Clock's runs an hour earlier)."""
    return list(alert.events.order_by("id").values_list("kind", flat=True))


def test_the_threshold_of_consecutive_failures_opens_one_alert(orders):
    clock = Clock()
    clock.run(orders, fail())
    assert not alerts_of(orders).exists()
    clock.run(orders, fail())
    alert = alerts_of(orders).get()
    assert (alert.status, alert.consecutive_failures, alert.severity) == ("open", 2, "warning")
    assert events(alert) == ["opened"]
    for _ in range(5):
        clock.run(orders, fail(message="still stale"))
    alert.refresh_from_db()
    assert alerts_of(orders).count() == 1
    assert alert.consecutive_failures == 7 and alert.message == "still stale"
    assert alert.last_seen_at == clock.now


def test_a_pass_in_between_restarts_the_count(orders):
    clock = Clock()
    clock.run(orders, fail())
    clock.run(orders, ok())
    clock.run(orders, fail())
    assert not alerts_of(orders).exists()


def test_recovery_resolves_automatically_and_a_quick_relapse_reopens_the_same_alert(orders):
    clock = Clock()
    clock.run(orders, fail())
    clock.run(orders, fail())
    clock.run(orders, ok())
    alert = alerts_of(orders).get()
    assert alert.status == "resolved" and alert.resolved_at == clock.now
    clock.run(orders, fail())
    clock.run(orders, fail())
    alert.refresh_from_db()
    assert alerts_of(orders).count() == 1 and alert.status == "open"
    assert events(alert) == ["opened", "resolved", "reopened"]


def test_errors_are_not_data_failures_but_open_a_connection_error_alert(orders, shop):
    clock = Clock()
    for _ in range(shop.connection_error_threshold - 1):
        clock.run(orders, error())
    assert not Alert.objects.exists()
    clock.run(orders, error())
    alert = Alert.objects.get()
    assert (alert.kind, alert.table, alert.severity) == ("connection_error", None, "critical")
    assert "could not run" in alert.message and "connection refused" in alert.message
    assert not alerts_of(orders).exists()
    clock.run(orders, ok())
    alert.refresh_from_db()
    assert alert.status == "resolved"
    shop.refresh_from_db()
    assert shop.error_streak == 0


def test_a_spent_budget_counts_as_could_not_run(orders, shop):
    clock = Clock()
    skipped = Outcome(kind="volume", status="skipped", message="query budget spent", details={"reason": "budget"})
    cost = Outcome(kind="freshness", status="skipped", message="too expensive", details={"reason": "cost"})
    for _ in range(shop.connection_error_threshold):
        clock.run(orders, cost)
    assert not Alert.objects.exists()
    for _ in range(shop.connection_error_threshold):
        clock.run(orders, skipped)
    assert Alert.objects.get().kind == "connection_error"


def test_a_lagging_replica_opens_one_lag_alert_and_holds_back_freshness(orders, shop):
    clock = Clock()
    lag = Outcome(kind="replication_lag", status="fail", message="replica is 900 s behind", observed_value=900)
    for _ in range(3):
        clock.run(orders, fail(), connection_outcomes=[lag])
    assert Alert.objects.get().kind == "replication_lag"
    assert not alerts_of(orders).exists()
    caught_up = Outcome(kind="replication_lag", status="pass", message="caught up", observed_value=0)
    clock.run(orders, fail(), connection_outcomes=[caught_up])
    assert Alert.objects.get(kind="replication_lag").status == "resolved"
    clock.run(orders, fail())
    assert alerts_of(orders).get().status == "open"


def test_a_maintenance_window_tracks_results_but_opens_no_alert(orders, shop):
    clock = Clock()
    now = timezone.now()
    MaintenanceWindow.objects.create(
        connection=shop, starts_at=now - timedelta(hours=2), ends_at=now + timedelta(hours=1)
    )
    for _ in range(4):
        clock.run(orders, fail())
    assert not Alert.objects.exists()
    assert CheckResult.objects.filter(table=orders, status="fail").count() == 4


def test_acknowledge_snooze_and_resolve_by_hand_write_events(orders, owner):
    clock = Clock()
    clock.run(orders, fail())
    clock.run(orders, fail())
    alert = alerts_of(orders).get()
    alert_acknowledge(alert=alert, user=owner)
    with pytest.raises(AlertStateError):
        alert_acknowledge(alert=alert, user=owner)
    until = timezone.now() + timedelta(hours=1)
    alert_snooze(alert=alert, until=until, user=owner)
    clock.run(orders, fail())
    alert.refresh_from_db()
    assert alert.status == "acknowledged" and alert.consecutive_failures == 3
    assert alert.snoozed_until == until
    alert_resolve(alert=alert, user=owner)
    assert events(alert) == ["opened", "acknowledged", "snoozed", "resolved"]
    assert alert.events.get(kind="acknowledged").actor == owner
    with pytest.raises(AlertStateError):
        alert_snooze(alert=alert, until=timezone.now() + timedelta(hours=1))


def test_alerts_of_one_table_name_each_other_while_both_are_open(orders):
    clock = Clock()
    zero = fail(kind="volume", message="0 rows: a drop to zero from 59–61")
    clock.run(orders, fail(), zero)
    clock.run(orders, fail(), zero)
    freshness, volume = alerts_of(orders).get(), alerts_of(orders, "volume").get()
    # Opened in this order within one run: the second names the first at once...
    assert freshness.message == "stale"
    assert (
        volume.message
        == f"0 rows: a drop to zero from 59–61. Related: the table is also stale (freshness alert {freshness.id})."
    )
    assert volume.events.get(kind="opened").message == volume.message
    # ...and from the next run on, each names the other.
    clock.run(orders, fail(), zero)
    freshness.refresh_from_db()
    assert freshness.message == f"stale. Related: its row volume is also anomalous (volume alert {volume.id})."
    # Once one resolves, the other no longer points at it.
    clock.run(orders, ok(), zero)
    volume.refresh_from_db()
    assert volume.message == "0 rows: a drop to zero from 59–61"


def subjects_to(channel):
    return list(Notification.objects.filter(channel=channel).order_by("id").values_list("subject", flat=True))


def test_resolving_a_still_failing_alert_by_hand_holds_until_the_check_recovers(
    orders, shop, owner, owner_client, make_channel
):
    channel = make_channel(shop.team, "email", "oncall@example.com")
    clock = Clock()
    clock.run(orders, fail())
    clock.run(orders, fail())
    alert = alerts_of(orders).get()

    response = owner_client.post(f"/api/alerts/{alert.id}/resolve")
    assert response.status_code == 200
    assert response.json()["status"] == "resolved" and response.json()["resolved_while_failing_at"] is not None
    alert.refresh_from_db()
    assert alert.resolved_while_failing_at == clock.now  # the failing run it was resolved on

    # The same failure goes on: no new alert, no "failing again", the resolve holds.
    for _ in range(5):
        clock.run(orders, fail(message="still stale"))
    alert.refresh_from_db()
    assert alerts_of(orders).count() == 1 and alert.status == "resolved"
    assert events(alert) == ["opened", "resolved"]
    opened, resolved = subjects_to(channel)
    assert opened.startswith("[Pulse] WARNING: Freshness failing")
    assert resolved.startswith("[Pulse] Resolved by owner, still failing: Freshness")
    body = Notification.objects.get(subject=resolved).body
    assert "alerts again only if the check fails after passing once" in body

    # It passes once (nothing to say: the alert is resolved); a failure after that alerts again.
    clock.run(orders, ok())
    clock.run(orders, fail())
    assert events(alert) == ["opened", "resolved"]
    clock.run(orders, fail())
    alert.refresh_from_db()
    assert alert.status == "open" and alert.resolved_while_failing_at is None
    assert events(alert) == ["opened", "resolved", "reopened"]
    assert subjects_to(channel)[2].startswith("[Pulse] WARNING: Freshness failing again")


def test_resolving_a_connection_error_by_hand_holds_until_checks_run_again(orders, shop):
    clock = Clock()
    for _ in range(shop.connection_error_threshold):
        clock.run(orders, error())
    alert = Alert.objects.get(kind="connection_error")
    alert_resolve(alert=alert)
    alert.refresh_from_db()
    assert alert.resolved_while_failing_at == clock.now
    assert alert.events.last().message.startswith("resolved by hand while the check still fails")
    for _ in range(shop.connection_error_threshold + 2):
        clock.run(orders, error())
    assert events(alert) == ["opened", "resolved"]

    clock.run(orders, fail())  # the check ran (a data failure): the connection recovered
    for _ in range(shop.connection_error_threshold):
        clock.run(orders, error())
    alert.refresh_from_db()
    assert alert.status == "open" and events(alert) == ["opened", "resolved", "reopened"]


def test_resolving_an_alert_whose_check_no_longer_fails_is_a_plain_resolve(orders, shop):
    clock = Clock()
    clock.run(orders, fail())
    clock.run(orders, fail())
    alert = alerts_of(orders).get()
    alert_acknowledge(alert=alert)
    clock.run(orders, error())  # the check could not run: no verdict, still failing as far as anyone knows
    CheckResult.objects.filter(table=orders, status="fail").update(status="pass")  # as if it had passed last
    alert_resolve(alert=alert)
    alert.refresh_from_db()
    assert alert.resolved_while_failing_at is None
    assert alert.events.last().message == "resolved by hand"
    clock.run(orders, fail())
    clock.run(orders, fail())
    alert.refresh_from_db()
    assert alert.status == "open" and events(alert)[-1] == "reopened"


def test_resolving_a_schema_change_accepts_the_new_schema(orders):
    clock = Clock()
    orders.schema_reference = [["id", "bigint", True]]
    orders.save()
    new_columns = [["id", "bigint", True], ["note", "text", False]]
    changed = Outcome(
        kind="schema_change",
        status="fail",
        message="schema changed: added: note (text)",
        details={"columns": new_columns},
    )
    clock.run(orders, changed)
    clock.run(orders, changed)
    alert = alerts_of(orders, "schema_change").get()
    alert_resolve(alert=alert)
    orders.refresh_from_db()
    assert orders.schema_reference == new_columns


def test_connection_level_and_table_level_alerts_coexist(orders, shop):
    now = timezone.now()
    Alert.objects.create(connection=shop, table=None, kind="connection_error", opened_at=now, last_seen_at=now)
    results_process(connection=shop, results=[])
    assert Alert.objects.count() == 1
    assert AlertEvent.objects.count() == 0


def test_a_passing_run_resets_the_error_streak_even_with_nothing_open(orders, shop):
    clock = Clock()
    for _ in range(shop.connection_error_threshold - 1):
        clock.run(orders, error())
    clock.run(orders, ok())
    shop.refresh_from_db()
    assert shop.error_streak == 0
    for _ in range(shop.connection_error_threshold - 1):
        clock.run(orders, error())
    assert not Alert.objects.exists()


def _record_batch(connection, outcome_of: dict, *, at) -> int:
    """Record one run of many tables as one batch (`outcome_of`: table -> outcome); the statements it sent."""
    sent = []
    real_execute = psycopg.Cursor.execute

    def counted(cursor, query, params=None, **kwargs):
        sent.append(query)
        return real_execute(cursor, query, params, **kwargs)

    claim_token = uuid.uuid4()
    MonitoredTable.objects.filter(pk__in=[t.pk for t in outcome_of]).update(lease_token=claim_token)
    psycopg.Cursor.execute = counted
    try:
        results_record(
            connection=connection,
            token=claim_token,
            runs=[TableRun(table=table, outcomes=[outcome]) for table, outcome in outcome_of.items()],
            connection_outcomes=[],
            started_at=at,
            on_recorded=results_intake,
        )
    finally:
        psycopg.Cursor.execute = real_execute
    return len(sent)


def test_a_batch_of_new_failures_weighs_every_table_streak_with_statements_independent_of_its_size(shop):
    """Failing streaks of a batch's tables are read together: a batch of 8 failing tables sends as many statements
    as a batch of 2 while no alert opens, and each table's alert opens at its own threshold (a pass restarts it)."""
    small = [MonitoredTable.objects.create(connection=shop, table_name=f"s{i}", failure_threshold=3) for i in range(2)]
    large = [MonitoredTable.objects.create(connection=shop, table_name=f"l{i}", failure_threshold=3) for i in range(8)]
    at = timezone.now() - timedelta(hours=1)
    counts = {}
    for run in range(2):
        at += timedelta(minutes=1)
        counts[("small", run)] = _record_batch(shop, {t: fail() for t in small}, at=at)
        # l0 passes its second run: its streak restarts.
        counts[("large", run)] = _record_batch(
            shop, {t: ok() if (t.table_name == "l0" and run == 1) else fail() for t in large}, at=at
        )
    assert counts[("small", 1)] == counts[("large", 1)]
    assert not Alert.objects.exists()
    at += timedelta(minutes=1)
    _record_batch(shop, {t: fail() for t in large}, at=at)
    opened = set(Alert.objects.filter(kind="freshness").values_list("table__table_name", flat=True))
    assert opened == {f"l{i}" for i in range(1, 8)}
    assert Alert.objects.get(table__table_name="l1").consecutive_failures == 3


def test_tables_still_failing_are_seen_again_together_and_other_tables_alerts_are_left_alone(shop):
    """A batch reads only its own tables' unresolved alerts (and the connection's): 8 tables still failing send as
    many statements as 2, each alert counts one failure more with its new message, and the open alert of a table
    outside the batch is neither read, updated nor resolved."""
    small = [MonitoredTable.objects.create(connection=shop, table_name=f"s{i}", failure_threshold=1) for i in range(2)]
    large = [MonitoredTable.objects.create(connection=shop, table_name=f"l{i}", failure_threshold=1) for i in range(8)]
    outside = MonitoredTable.objects.create(connection=shop, table_name="outside", failure_threshold=1)
    at = timezone.now() - timedelta(hours=1)
    _record_batch(shop, {t: fail() for t in [*small, *large, outside]}, at=at)
    assert Alert.objects.filter(status=Alert.Status.OPEN).count() == 11
    before = Alert.objects.get(table=outside)
    at += timedelta(minutes=1)
    two = _record_batch(shop, {t: fail(message="still stale") for t in small}, at=at)
    eight = _record_batch(shop, {t: fail(message="still stale") for t in large}, at=at)
    assert two == eight
    for table in [*small, *large]:
        alert = Alert.objects.get(table=table)
        assert (alert.consecutive_failures, alert.message, alert.last_seen_at) == (2, "still stale", at)
    after = Alert.objects.get(table=outside)
    assert (after.status, after.consecutive_failures, after.message, after.last_seen_at) == (
        before.status, before.consecutive_failures, before.message, before.last_seen_at
    )  # fmt: skip


def _tables(shop, prefix, count, threshold=2):
    return [
        MonitoredTable.objects.create(connection=shop, table_name=f"{prefix}{i}", failure_threshold=threshold)
        for i in range(count)
    ]


def _as_rendered(notification):
    """What a notification says, with its event's own rendering next to it (one event at a time)."""
    rendered = message_for_event(event=notification.event)
    return (notification.subject, notification.body, notification.payload), (
        rendered["subject"],
        rendered["body"],
        rendered["payload"],
    )


def test_a_batch_opens_its_alerts_events_and_notifications_in_statements_independent_of_its_size(shop, make_channel):
    """Tables reaching their threshold together: 8 send as many statements as 2; every alert opens with its count,
    its `opened` event and one notification per active channel, each as one event alone would render it."""
    email = make_channel(shop.team, "email", "oncall@example.com")
    hook = make_channel(shop.team, "webhook", "https://hooks.example.com/pulse", name="hook")
    make_channel(shop.team, "email", "old@example.com", name="inactive", is_active=False)
    small, large = _tables(shop, "s", 2), _tables(shop, "l", 8)
    at = timezone.now() - timedelta(hours=1)
    _record_batch(shop, {t: fail() for t in [*small, *large]}, at=at)
    assert not Alert.objects.exists()
    at += timedelta(minutes=1)
    two = _record_batch(shop, {t: fail(message="still stale") for t in small}, at=at)
    eight = _record_batch(shop, {t: fail(message="still stale") for t in large}, at=at)
    assert two == eight
    for table in [*small, *large]:
        alert = Alert.objects.get(table=table, kind="freshness")
        assert (alert.status, alert.consecutive_failures, alert.message, alert.opened_at, alert.last_seen_at) == (
            "open", 2, "still stale", at, at
        )  # fmt: skip
        [event] = alert.events.all()
        assert (event.kind, event.at, event.message) == ("opened", at, "still stale")
        notifications = list(Notification.objects.filter(event=event).order_by("id"))
        assert [n.channel for n in notifications] == [email, hook]
        for notification in notifications:
            stored, alone = _as_rendered(notification)
            assert stored == alone
            assert notification.subject.startswith("[Pulse] WARNING: Freshness failing on public.")
            assert "Observed: 2 h 0 min — expected at most 1 h 0 min" in notification.body


def test_a_batch_reopens_recently_resolved_alerts_and_holds_those_resolved_by_hand(shop, make_channel):
    """In one batch: alerts auto-resolved within the hour reopen (same alert, `reopened`, "failing again"), one
    resolved by hand while failing stays resolved, and a table with no earlier alert opens a new one."""
    channel = make_channel(shop.team, "email", "oncall@example.com")
    flapping, held, new = _tables(shop, "f", 3), _tables(shop, "h", 1), _tables(shop, "n", 1)
    at = timezone.now() - timedelta(hours=1)
    for _ in range(2):
        at += timedelta(minutes=1)
        _record_batch(shop, {t: fail() for t in [*flapping, *held]}, at=at)
    first = {t.pk: Alert.objects.get(table=t) for t in [*flapping, *held]}
    alert_resolve(alert=first[held[0].pk])
    at += timedelta(minutes=1)
    _record_batch(shop, {**{t: ok() for t in flapping}, **{t: fail() for t in [*held, *new]}}, at=at)
    for table in flapping:
        assert Alert.objects.get(table=table).status == "resolved"
    at += timedelta(minutes=1)
    _record_batch(shop, {t: fail() for t in [*flapping, *held, *new]}, at=at)
    at += timedelta(minutes=1)
    _record_batch(shop, {t: fail(message="stale again") for t in [*flapping, *held, *new]}, at=at)
    for table in flapping:
        alert = Alert.objects.get(table=table)
        assert alert.pk == first[table.pk].pk
        assert (alert.status, alert.resolved_at, alert.consecutive_failures, alert.message) == (
            "open", None, 2, "stale again"
        )  # fmt: skip
        assert events(alert) == ["opened", "resolved", "reopened"]
        reopened = Notification.objects.get(event__alert=alert, event__kind="reopened")
        assert reopened.subject.startswith("[Pulse] WARNING: Freshness failing again")
        assert _as_rendered(reopened)[0] == _as_rendered(reopened)[1]
    held_alert = Alert.objects.get(table=held[0])
    assert held_alert.status == "resolved" and events(held_alert) == ["opened", "resolved"]
    assert events(Alert.objects.get(table=new[0])) == ["opened"]
    assert Notification.objects.filter(channel=channel, event__kind="opened").count() == 5


def test_a_batch_resolves_its_recovered_alerts_together(shop, make_channel):
    """Tables passing again: 8 resolve with as many statements as 2, each with its `resolved` event and
    notification; an acknowledged alert resolves too, a snoozed one still says so."""
    channel = make_channel(shop.team, "email", "oncall@example.com")
    small, large = _tables(shop, "s", 2, threshold=1), _tables(shop, "l", 8, threshold=1)
    at = timezone.now() - timedelta(hours=1)
    _record_batch(shop, {t: fail() for t in [*small, *large]}, at=at)
    alert_acknowledge(alert=Alert.objects.get(table=large[0]))
    alert_snooze(alert=Alert.objects.get(table=large[1]), until=timezone.now() + timedelta(hours=1))
    at += timedelta(minutes=1)
    two = _record_batch(shop, {t: ok() for t in small}, at=at)
    eight = _record_batch(shop, {t: ok() for t in large}, at=at)
    assert two == eight
    for table in [*small, *large]:
        alert = Alert.objects.get(table=table)
        assert (alert.status, alert.resolved_at) == ("resolved", at)
        resolved = alert.events.get(kind="resolved")
        assert (resolved.at, resolved.message) == (at, "recovered: fresh")
        [notification] = Notification.objects.filter(channel=channel, event=resolved)
        assert notification.subject.startswith("[Pulse] Resolved: Freshness on public.")
        assert _as_rendered(notification)[0] == _as_rendered(notification)[1]


def test_alerts_another_process_opened_meanwhile_are_left_to_it(shop, caplog):
    """The batch's INSERT skips a problem whose unresolved alert appeared after the batch read its alerts, and a
    reopening refused by the unique index leaves that alert alone and reopens the others."""
    tables = _tables(shop, "t", 3)
    now = timezone.now()
    theirs = Alert.objects.create(
        connection=shop, table=tables[0], kind="freshness", opened_at=now, last_seen_at=now, message="theirs"
    )
    openings = [_Opening(table=t, kind="freshness", severity="warning", message="ours", failures=2) for t in tables]
    with caplog.at_level("INFO", logger="alerts.lifecycle"):
        opened = _alerts_open(connection=shop, openings=openings, now=now)
    assert set(opened) == {(tables[1].pk, "freshness"), (tables[2].pk, "freshness")}
    assert Alert.objects.get(pk=theirs.pk).message == "theirs" and not theirs.events.exists()
    assert f"alert for {tables[0].pk}/freshness already opened by another process" in caplog.text

    # Both of ours resolve; another process opens a new alert for tables[1]; both problems fail again at once.
    later = now + timedelta(minutes=5)
    Alert.objects.filter(pk__in=[a.pk for a in opened.values()]).update(status="resolved", resolved_at=later)
    other = Alert.objects.create(
        connection=shop, table=tables[1], kind="freshness", opened_at=later, last_seen_at=later, message="other"
    )
    again = _alerts_open(connection=shop, openings=openings[1:], now=later + timedelta(minutes=1))
    assert list(again) == [(tables[2].pk, "freshness")]
    assert again[(tables[2].pk, "freshness")].pk == opened[(tables[2].pk, "freshness")].pk
    assert Alert.objects.get(pk=opened[(tables[1].pk, "freshness")].pk).status == "resolved"
    assert Alert.objects.get(pk=other.pk).message == "other"


def test_unresolved_means_every_status_but_resolved():
    """The batch's read of unresolved alerts is written as the unresolved index's predicate (NOT resolved): the
    two must mean the same statuses."""
    assert set(UNRESOLVED) == set(Alert.Status) - {Alert.Status.RESOLVED}


def test_a_batch_reads_its_unresolved_alerts_by_the_unresolved_index_even_on_statistics_of_an_empty_table(shop):
    """A burst of new alerts before the statistics catch up (autovacuum's analyze comes later, or is off): the
    planner still reads a batch's alerts by (connection, table, kind), not every unresolved alert of the
    connection by (connection, status), and the batch gets exactly its own tables' alerts."""
    from django.db import connection as pulse_db

    with pulse_db.cursor() as cursor:
        cursor.execute("ANALYZE alerts_alert")  # statistics of an empty table
    now = timezone.now()
    tables = MonitoredTable.objects.bulk_create(
        MonitoredTable(connection=shop, table_name=f"t{i:04d}") for i in range(2000)
    )
    Alert.objects.bulk_create(
        Alert(connection=shop, table=table, kind="freshness", opened_at=now, last_seen_at=now) for table in tables
    )
    batch = {table.id: table for table in tables[-50:]}
    with pulse_db.cursor() as cursor:
        cursor.execute(f"EXPLAIN {_UNRESOLVED}", [shop.pk, list(batch)])
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "alert_one_unresolved_per_problem" in plan and "alert_connection_status" not in plan, plan
    assert {table_id for table_id, _ in _unresolved(shop, tables_by_id=batch)} == set(batch)
