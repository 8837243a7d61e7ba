"""The notifier: claiming and sending due notifications, retries, restarts, reminders."""

import threading
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.db import connection as pulse_db
from django.utils import timezone

from alerts import delivery
from alerts.delivery import notification_deliver, notifications_claim_due, notifications_send_due
from alerts.models import Alert, AlertEvent, Notification
from alerts.outbox import notification_test, notifications_for_event
from alerts.transports import base

pytestmark = pytest.mark.django_db

SECRET = "whsec-test-0123456789abcdef"


@pytest.fixture
def acme(db):
    return Group.objects.create(name="acme")


@pytest.fixture
def alert(make_alert, acme):
    return make_alert(acme)


@pytest.fixture
def hook(make_channel, acme, receiver):
    return make_channel(acme, "webhook", receiver.url + "/hook", name="hook", secret=SECRET)


def open_event(alert, at=None):
    event = AlertEvent.objects.create(alert=alert, kind="opened", at=at or timezone.now(), message=alert.message)
    return event, notifications_for_event(event=event)


def notified_events(alert):
    return list(AlertEvent.objects.filter(alert=alert, kind="notified").values_list("message", flat=True))


def test_it_sends_and_records_a_notified_event_that_notifies_nobody(alert, hook, receiver):
    _, [notification] = open_event(alert)
    now = timezone.now()

    counts = notifications_send_due(now=now)

    assert counts == {"claimed": 1, "sent": 1}
    notification.refresh_from_db()
    assert notification.status == "sent"
    assert notification.tries == 1
    assert now <= notification.sent_at < now + timedelta(seconds=5)
    assert notification.claimed_until is None
    assert notified_events(alert) == ["sent to hook"]
    assert Notification.objects.count() == 1  # the notified event wrote no notification
    assert len(receiver.requests) == 1
    assert notifications_send_due(now=now + timedelta(minutes=5)) == {"claimed": 0}
    assert len(receiver.requests) == 1


def test_it_retries_on_500_then_sends(alert, hook, receiver):
    _, [notification] = open_event(alert)
    receiver.script(500, 200)
    now = timezone.now()

    assert notifications_send_due(now=now) == {"claimed": 1, "retrying": 1}
    notification.refresh_from_db()
    assert notification.status == "pending"
    assert notification.tries == 1
    assert "HTTP 500" in notification.last_error
    assert now + timedelta(seconds=30) <= notification.next_try_at < now + timedelta(seconds=35)
    assert notified_events(alert) == []

    assert notifications_send_due(now=now + timedelta(seconds=20)) == {"claimed": 0}  # not due yet
    assert len(receiver.requests) == 1

    assert notifications_send_due(now=now + timedelta(seconds=36)) == {"claimed": 1, "sent": 1}
    notification.refresh_from_db()
    assert notification.status == "sent"
    assert notification.tries == 2
    assert len(receiver.requests) == 2
    assert notified_events(alert) == ["sent to hook"]
    # Both tries carried the same delivery id, so a receiver can deduplicate.
    assert {r.json()["delivery"] for r in receiver.requests} == {notification.id}


def test_it_treats_429_as_transient(alert, hook, receiver):
    _, [notification] = open_event(alert)
    receiver.script(429)
    notifications_send_due(now=timezone.now())
    notification.refresh_from_db()
    assert notification.status == "pending"
    assert notification.tries == 1
    hook.refresh_from_db()
    assert hook.last_error == ""


def test_it_fails_at_once_on_404_and_shows_the_error_on_the_channel(alert, hook, receiver):
    _, [notification] = open_event(alert)
    receiver.script(404)
    now = timezone.now()

    assert notifications_send_due(now=now) == {"claimed": 1, "failed": 1}

    notification.refresh_from_db()
    assert notification.status == "failed"
    assert notification.tries == 1
    assert "HTTP 404" in notification.last_error
    hook.refresh_from_db()
    assert "HTTP 404" in hook.last_error
    assert hook.last_error_at >= now
    assert notified_events(alert) == []
    assert notifications_send_due(now=now + timedelta(hours=1)) == {"claimed": 0}
    assert len(receiver.requests) == 1


def test_it_fails_after_three_tries(alert, hook, receiver):
    _, [notification] = open_event(alert)
    receiver.script(500, 503, 502, 200)
    now = timezone.now()

    notifications_send_due(now=now)
    notification.refresh_from_db()
    assert (notification.status, notification.tries) == ("pending", 1)
    second_at = notification.next_try_at

    notifications_send_due(now=second_at)
    notification.refresh_from_db()
    assert (notification.status, notification.tries) == ("pending", 2)
    assert second_at + timedelta(minutes=2) <= notification.next_try_at < second_at + timedelta(minutes=2, seconds=5)

    notifications_send_due(now=notification.next_try_at)
    notification.refresh_from_db()
    assert (notification.status, notification.tries) == ("failed", 3)
    assert "HTTP 502" in notification.last_error
    hook.refresh_from_db()
    assert "HTTP 502" in hook.last_error

    assert notifications_send_due(now=now + timedelta(hours=1)) == {"claimed": 0}
    assert len(receiver.requests) == 3


def test_a_success_clears_the_channels_last_error(alert, hook, receiver):
    hook.last_error = "webhook: receiver answered HTTP 404"
    hook.last_error_at = timezone.now()
    hook.save()
    open_event(alert)
    notifications_send_due(now=timezone.now())
    hook.refresh_from_db()
    assert hook.last_error == ""
    assert hook.last_error_at is None


def test_a_receiver_that_is_down_keeps_its_rows_pending_and_the_rest_still_go_out(
    make_channel, closed_port, acme, alert, receiver
):
    down = make_channel(acme, "webhook", f"http://127.0.0.1:{closed_port}/hook", name="down", secret=SECRET)
    make_channel(acme, "slack", receiver.url + "/services/T/B/X", name="slack")
    make_channel(acme, "apprise", f"json://127.0.0.1:{receiver.port}/apprise", name="apprise")
    open_event(alert)
    open_event(alert)  # two events: two rows per channel
    now = timezone.now()

    counts = notifications_send_due(now=now)

    assert counts == {"claimed": 6, "sent": 4, "retrying": 1, "deferred": 1}
    assert len(receiver.requests) == 4
    rows = Notification.objects.filter(channel=down).order_by("id")
    assert [(n.status, n.tries) for n in rows] == [("pending", 1), ("pending", 0)]
    assert "could not connect" in rows[0].last_error
    assert all(n.claimed_until is None for n in rows)
    assert set(Notification.objects.exclude(channel=down).values_list("status", flat=True)) == {"sent"}
    assert sorted(notified_events(alert)) == ["sent to apprise"] * 2 + ["sent to slack"] * 2

    # The deferred row is tried at the next run, without waiting for a backoff.
    assert notifications_send_due(now=now + timedelta(seconds=5)) == {"claimed": 1, "retrying": 1}


def test_nothing_is_lost_across_a_restart(alert, hook, receiver):
    open_event(alert)
    notification_test(channel=hook)
    now = timezone.now()

    claimed = notifications_claim_due(now=now, limit=50)
    assert len(claimed) == 2
    # ... and the process dies here, before sending anything.

    assert notifications_send_due(now=now + timedelta(seconds=30)) == {"claimed": 0}  # still leased
    assert receiver.requests == []
    assert set(Notification.objects.values_list("status", flat=True)) == {"pending"}

    assert notifications_send_due(now=now + timedelta(seconds=61)) == {"claimed": 2, "sent": 2}
    assert notifications_send_due(now=now + timedelta(seconds=200)) == {"claimed": 0}
    assert sorted(r.json()["delivery"] for r in receiver.requests) == sorted(n.id for n in claimed)
    assert notified_events(alert) == ["sent to hook"]  # the test notification has no alert


def test_a_process_whose_claim_was_taken_over_does_not_send_again(alert, hook, receiver):
    open_event(alert)
    now = timezone.now()
    [stale] = notifications_claim_due(now=now, limit=10)
    # The lease expires; another process claims and sends the row.
    assert notifications_send_due(now=now + timedelta(seconds=61)) == {"claimed": 1, "sent": 1}

    # The first process wakes up and tries to send what it had claimed.
    assert notification_deliver(notification=stale, clock=lambda: now + timedelta(seconds=62)) == "skipped"

    assert len(receiver.requests) == 1
    assert notified_events(alert) == ["sent to hook"]


def test_it_claims_at_most_limit_rows_oldest_first(alert, hook, receiver):
    for _ in range(5):
        notification_test(channel=hook)
    ids = sorted(Notification.objects.values_list("id", flat=True))
    now = timezone.now()
    claimed = notifications_claim_due(now=now, limit=3)
    assert [n.id for n in claimed] == ids[:3]
    assert all(n.claimed_until == now + delivery.CLAIM_LEASE for n in claimed)
    # A second claimer gets only what is not leased.
    assert [n.id for n in notifications_claim_due(now=now, limit=10)] == ids[3:]
    assert notifications_claim_due(now=now, limit=10) == []


def test_a_channel_deactivated_before_sending_gets_nothing(alert, hook, receiver):
    _, [notification] = open_event(alert)
    hook.is_active = False
    hook.save()
    assert notifications_send_due(now=timezone.now()) == {"claimed": 1, "dropped": 1}
    notification.refresh_from_db()
    assert notification.status == "failed"
    assert receiver.requests == []
    hook.refresh_from_db()
    assert hook.last_error == ""
    # A test notification still goes out, so a channel can be tried before it is switched on.
    notification_test(channel=hook)
    assert notifications_send_due(now=timezone.now()) == {"claimed": 1, "sent": 1}


def test_a_slow_channel_costs_one_timeout_per_run(make_channel, alert, acme, receiver, monkeypatch):
    monkeypatch.setattr(base, "TIMEOUT_SECONDS", 0.3)
    slow = make_channel(acme, "webhook", receiver.url + "/slow", name="slow", secret=SECRET)
    for _ in range(3):
        notification_test(channel=slow)
    receiver.script((200, 1.0))
    counts = notifications_send_due(now=timezone.now())
    assert counts == {"claimed": 3, "retrying": 1, "deferred": 2}


# --- several processes at once (real transactions) -------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_notifiers_send_each_notification_exactly_once(make_channel, receiver):
    acme = Group.objects.create(name="acme")
    hooks = [
        make_channel(acme, "webhook", receiver.url + f"/hook{i}", name=f"hook{i}", secret=SECRET) for i in range(3)
    ]
    for _ in range(10):
        for hook in hooks:
            notification_test(channel=hook)
    now = timezone.now()
    errors = []

    def work():
        try:
            while notifications_send_due(now=now, limit=4).get("claimed"):
                pass
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            pulse_db.close()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    deliveries = [r.json()["delivery"] for r in receiver.requests]
    assert len(deliveries) == 30
    assert len(set(deliveries)) == 30
    assert set(Notification.objects.values_list("status", flat=True)) == {"sent"}


@pytest.mark.django_db(transaction=True)
def test_the_outbox_run_writes_reminders_and_sends(make_channel, make_alert, receiver):
    acme = Group.objects.create(name="acme")
    alert = make_alert(acme)
    make_channel(
        acme,
        "webhook",
        receiver.url + "/hook",
        name="hook",
        secret=SECRET,
        reminder_interval_minutes=5,
        remind_earlier_alerts=True,  # the alert opened before the channel
    )

    delivery.outbox_run(now=timezone.now())

    assert [r.json()["event"] for r in receiver.requests] == ["reminded"]
    assert Alert.objects.get(pk=alert.pk).events.filter(kind="notified").count() == 1
