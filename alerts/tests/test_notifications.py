"""Rendering messages and writing outbox rows for alert events."""

from datetime import UTC, timedelta

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from alerts.models import Alert, AlertEvent, Notification
from alerts.outbox import notification_for_channel, notification_test, notifications_for_event
from connections.models import Connection
from monitors.models import CheckResult

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme(db):
    return Group.objects.create(name="acme")


@pytest.fixture
def globex(db):
    return Group.objects.create(name="globex")


@pytest.fixture
def channels(make_channel, acme, globex):
    return {
        "email": make_channel(acme, "email", "oncall@example.com"),
        "webhook": make_channel(acme, "webhook", "https://example.com/hook", secret="s" * 32),
        "inactive": make_channel(acme, "slack", "https://hooks.slack.com/services/T/B/X", is_active=False),
        "foreign": make_channel(globex, "webhook", "https://globex.example.com/hook", secret="g" * 32),
    }


@pytest.fixture
def alert(make_alert, acme):
    return make_alert(acme)


def event(alert, kind, *, at=None, message=""):
    return AlertEvent.objects.create(alert=alert, kind=kind, at=at or timezone.now(), message=message)


def test_it_writes_one_pending_row_per_active_channel_of_the_team(alert, channels):
    before = timezone.now()
    notifications = notifications_for_event(event=event(alert, "opened"))

    assert {n.channel for n in notifications} == {channels["email"], channels["webhook"]}
    assert Notification.objects.count() == 2
    for notification in Notification.objects.all():
        assert notification.status == "pending"
        assert notification.tries == 0
        assert notification.next_try_at <= timezone.now()
        assert notification.next_try_at >= before - timedelta(seconds=1)
        assert notification.event.alert == alert
    assert not Notification.objects.filter(channel=channels["foreign"]).exists()


def test_it_writes_nothing_when_the_team_has_no_active_channel(alert, channels):
    Notification.objects.all().delete()
    channels["email"].delete()
    channels["webhook"].is_active = False
    channels["webhook"].save()
    assert notifications_for_event(event=event(alert, "opened")) == []
    assert Notification.objects.count() == 0


@pytest.mark.parametrize("kind", ["opened", "reopened", "resolved", "reminded"])
def test_it_notifies_these_events(alert, channels, kind):
    assert len(notifications_for_event(event=event(alert, kind))) == 2


@pytest.mark.parametrize("kind", ["notified", "acknowledged", "snoozed"])
def test_it_writes_nothing_for_bookkeeping_events(alert, channels, kind):
    assert notifications_for_event(event=event(alert, kind)) == []
    assert Notification.objects.count() == 0


def test_it_only_notifies_resolution_while_snoozed(alert, channels):
    now = timezone.now()
    alert.snoozed_until = now + timedelta(hours=1)
    alert.save()
    for kind in ("opened", "reopened", "reminded"):
        assert notifications_for_event(event=event(alert, kind, at=now)) == []
    assert Notification.objects.count() == 0
    assert len(notifications_for_event(event=event(alert, "resolved", at=now))) == 2

    # Once the snooze is over, everything notifies again.
    alert.snoozed_until = now - timedelta(minutes=1)
    alert.save()
    assert len(notifications_for_event(event=event(alert, "reopened", at=now))) == 2


def test_it_says_what_failed_where_against_what_since_when_with_links(alert, channels, settings):
    settings.PULSE_BASE_URL = "https://pulse.example.com/"
    notifications_for_event(event=event(alert, "opened", message=alert.message))
    notification = Notification.objects.get(channel=channels["email"])

    assert notification.subject == "[Pulse] CRITICAL: Freshness failing on public.orders on shop-replica"
    body = notification.body
    assert "Freshness check failing on public.orders on shop-replica." in body
    assert "newest created_at is 120 min old (limit 60 min)" in body
    assert "Observed: 2 h 0 min — expected at most 1 h 0 min" in body
    opened = alert.opened_at.astimezone(UTC)
    assert f"Since: {opened:%Y-%m-%d %H:%M} UTC (open for 2 h 0 min)" in body
    assert f"https://pulse.example.com/admin/alerts/alert/{alert.id}/change/" in body
    assert f"https://pulse.example.com/api/alerts/{alert.id}" in body

    payload = notification.payload
    assert payload["event"] == "opened"
    assert payload["alert"] == {
        "id": alert.id,
        "kind": "freshness",
        "severity": "critical",
        "status": "open",
        "message": alert.message,
        "opened_at": alert.opened_at.isoformat(),
        "resolved_at": None,
        "resolved_while_failing_at": None,
        "connection": {"id": alert.connection_id, "name": "shop-replica"},
        "table": {"id": alert.table_id, "schema": "public", "name": "orders"},
        "observed_value": 7200,
        "expected_lower": None,
        "expected_upper": 3600,
        "url": f"https://pulse.example.com/admin/alerts/alert/{alert.id}/change/",
        "api_url": f"https://pulse.example.com/api/alerts/{alert.id}",
    }
    # Every channel gets the same rendering.
    assert Notification.objects.get(channel=channels["webhook"]).payload == payload


def test_it_takes_values_from_the_latest_result_of_the_alerts_table_and_kind(alert, channels):
    alert.kind = "volume"
    alert.save()
    now = timezone.now()
    common = {"connection": alert.connection, "table": alert.table, "status": "fail"}
    CheckResult.objects.create(
        **common,
        kind="volume",
        observed_value=5,
        expected_lower=90,
        expected_upper=110,
        started_at=now - timedelta(minutes=10),
    )
    CheckResult.objects.create(
        **common,
        kind="volume",
        observed_value=12,
        expected_lower=100.5,
        expected_upper=2500,
        started_at=now - timedelta(minutes=2),
    )
    CheckResult.objects.create(**common, kind="row_count", observed_value=1, expected_lower=999, started_at=now)

    [notification, _] = notifications_for_event(event=event(alert, "opened"))

    assert "Observed: 12 — expected between 100 and 2,500" in notification.body  # whole rows
    assert notification.payload["alert"]["observed_value"] == 12
    assert notification.payload["alert"]["expected_lower"] == 100.5


def test_it_words_resolutions_and_reminders(alert, channels):
    alert.status = Alert.Status.RESOLVED
    alert.resolved_at = timezone.now()
    alert.save()
    [resolved, _] = notifications_for_event(event=event(alert, "resolved"))
    assert resolved.subject == "[Pulse] Resolved: Freshness on public.orders on shop-replica"
    assert "Now: 2 h 0 min — expected at most 1 h 0 min" in resolved.body
    assert "Resolved: " in resolved.body
    assert resolved.payload["alert"]["status"] == "resolved"

    [reminded, _] = notifications_for_event(event=event(alert, "reminded"))
    assert reminded.subject.startswith("[Pulse] Reminder: Freshness still failing on public.orders")


def test_it_renders_connection_alerts_without_a_table_or_values(acme, channels):
    connection = Connection.objects.create(
        team=acme, name="billing-replica", host="replica.invalid", database="billing", username="pulse"
    )
    now = timezone.now()
    alert = Alert.objects.create(
        connection=connection,
        kind="connection_error",
        message="could not connect: timeout",
        opened_at=now,
        last_seen_at=now,
    )

    [notification, _] = notifications_for_event(event=event(alert, "opened"))

    assert notification.subject == "[Pulse] WARNING: Connection error failing on billing-replica"
    assert "could not connect: timeout" in notification.body
    assert "Observed" not in notification.body
    assert notification.payload["alert"]["table"] is None
    assert notification.payload["alert"]["observed_value"] is None


def test_it_keeps_non_finite_values_out_of_the_payload(alert, channels):
    CheckResult.objects.create(
        connection=alert.connection,
        table=alert.table,
        kind="freshness",
        status="fail",
        observed_value=float("nan"),
        expected_upper=float("inf"),
        started_at=timezone.now(),
    )
    [notification, _] = notifications_for_event(event=event(alert, "opened"))
    notification.refresh_from_db()
    assert notification.payload["alert"]["observed_value"] is None
    assert notification.payload["alert"]["expected_upper"] is None


def test_it_keeps_subjects_on_one_line_and_short(make_alert, acme, channels):
    alert = make_alert(acme, connection_name="evil\nBcc: victim@example.com" + "x" * 60)
    alert.message = "m" * 5000
    alert.save()
    [notification, _] = notifications_for_event(event=event(alert, "opened"))
    assert "\n" not in notification.subject
    assert len(notification.subject) <= 150
    assert len(notification.body) < 5000

    Connection.objects.filter(pk=alert.connection_id).update(name="warehouse-" + "x" * 90)
    alert = Alert.objects.get(pk=alert.pk)
    [notification, _] = notifications_for_event(event=event(alert, "opened"))
    assert len(notification.subject) == 150 and notification.subject.endswith("...")
    assert notification.subject.isascii()  # the clip itself never forces an encoded email subject


def test_it_writes_a_reminder_for_one_channel_only(alert, channels):
    notification = notification_for_channel(event=event(alert, "reminded"), channel=channels["webhook"])
    assert notification is not None
    assert list(Notification.objects.all()) == [notification]
    assert notification_for_channel(event=event(alert, "acknowledged"), channel=channels["webhook"]) is None


def test_it_writes_a_test_notification_without_an_event(channels):
    notification = notification_test(channel=channels["email"])
    assert notification.event is None
    assert notification.status == "pending"
    assert notification.next_try_at <= timezone.now()
    assert "Test notification" in notification.subject
    assert notification.payload["event"] == "test"
    assert notification.payload["alert"] is None
