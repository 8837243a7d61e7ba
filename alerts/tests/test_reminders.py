"""Reminders: open, unacknowledged, unsnoozed alerts are announced again on channels that ask for it."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from alerts.delivery import notifications_send_due
from alerts.models import AlertEvent, Channel, Notification
from alerts.outbox import notifications_for_event
from alerts.reminders import reminders_write_due

pytestmark = pytest.mark.django_db

SECRET = "whsec-test-0123456789abcdef"


@pytest.fixture
def acme(db):
    return Group.objects.create(name="acme")


@pytest.fixture
def alert(make_alert, acme):
    return make_alert(acme)


def open_event(alert, at=None):
    event = AlertEvent.objects.create(alert=alert, kind="opened", at=at or timezone.now(), message=alert.message)
    return event, notifications_for_event(event=event)


def created_before_the_alert(channel):
    """The channel existed before the alert opened (make_alert opens it two hours ago)."""
    Channel.objects.filter(pk=channel.pk).update(created_at=timezone.now() - timedelta(hours=3))
    channel.refresh_from_db()
    return channel


@pytest.fixture
def reminding(make_channel, acme):
    channel = make_channel(acme, "email", "oncall@example.com", name="pager", reminder_interval_minutes=60)
    return created_before_the_alert(channel)


def reminders_of(alert):
    return list(AlertEvent.objects.filter(alert=alert, kind="reminded").order_by("at", "id"))


def test_it_reminds_after_the_interval_and_not_before(make_channel, acme, alert, reminding):
    quiet = make_channel(acme, "email", "quiet@example.com", name="quiet")
    start = timezone.now()
    open_event(alert, at=start)

    assert reminders_write_due(now=start + timedelta(minutes=59)) == 0
    assert reminders_of(alert) == []

    assert reminders_write_due(now=start + timedelta(minutes=61)) == 1
    [reminder] = reminders_of(alert)
    assert reminder.at == start + timedelta(minutes=61)
    [notification] = reminder.notifications.all()
    assert notification.channel == reminding
    assert notification.subject.startswith("[Pulse] Reminder:")
    assert not Notification.objects.filter(channel=quiet, event=reminder).exists()

    # The reminder counts as the last notification: the next one is an interval later.
    assert reminders_write_due(now=start + timedelta(minutes=62)) == 0
    assert reminders_write_due(now=start + timedelta(minutes=120)) == 0
    assert reminders_write_due(now=start + timedelta(minutes=122)) == 1
    assert len(reminders_of(alert)) == 2


def test_it_reminds_of_an_alert_nobody_was_told_about_since_it_opened(alert, reminding):
    # The alert opened two hours ago (the make_alert fixture), after the channel was created, and no
    # notification was ever written to this channel (it was inactive, or the opening was snoozed).
    assert reminders_write_due(now=timezone.now()) == 1


def test_a_new_channel_starts_with_the_alerts_that_open_after_it(make_channel, make_alert, acme, alert):
    channel = make_channel(acme, "email", "new@example.com", name="new", reminder_interval_minutes=60)
    now = timezone.now()
    assert alert.opened_at < channel.created_at

    assert reminders_write_due(now=now) == 0
    assert reminders_write_due(now=now + timedelta(hours=5)) == 0  # never, while the channel hears nothing of it
    assert reminders_of(alert) == []

    later = make_alert(acme, kind="volume", opened_at=now)  # opens after the channel: reminded as usual
    assert reminders_write_due(now=now + timedelta(minutes=61)) == 1
    assert [r.alert for r in AlertEvent.objects.filter(kind="reminded")] == [later]

    # Once the channel is told about the earlier alert (it reopens), reminders of it follow the interval.
    _, [notification] = open_event(alert, at=now + timedelta(minutes=62))
    assert notification.channel == channel
    assert reminders_write_due(now=now + timedelta(minutes=121)) == 1  # the later alert's second reminder
    assert reminders_of(alert) == []
    assert reminders_write_due(now=now + timedelta(minutes=122)) == 1
    assert len(reminders_of(alert)) == 1


def test_a_channel_asked_to_remind_of_earlier_alerts_does_at_once(make_channel, acme, alert):
    channel = make_channel(
        acme, "email", "new@example.com", name="new", reminder_interval_minutes=60, remind_earlier_alerts=True
    )
    assert alert.opened_at < channel.created_at
    assert reminders_write_due(now=timezone.now()) == 1
    [reminder] = reminders_of(alert)
    assert [n.channel for n in reminder.notifications.all()] == [channel]


@pytest.mark.parametrize("state", ["acknowledged", "resolved", "snoozed"])
def test_it_does_not_remind_of_acknowledged_resolved_or_snoozed_alerts(alert, reminding, state):
    now = timezone.now()
    if state == "snoozed":
        alert.snoozed_until = now + timedelta(hours=1)
    else:
        alert.status = state
    alert.save()
    assert reminders_write_due(now=now) == 0
    assert reminders_of(alert) == []
    if state == "snoozed":
        assert reminders_write_due(now=now + timedelta(hours=1, minutes=1)) == 1


def test_it_does_not_remind_other_teams_or_inactive_channels(make_channel, alert, reminding):
    globex = Group.objects.create(name="globex")
    make_channel(globex, "email", "them@example.com", name="theirs", reminder_interval_minutes=1)
    reminding.is_active = False
    reminding.save()
    assert reminders_write_due(now=timezone.now()) == 0


def test_reminders_go_out_through_the_notifier(make_channel, acme, alert, receiver):
    created_before_the_alert(
        make_channel(acme, "webhook", receiver.url + "/hook", name="hook", secret=SECRET, reminder_interval_minutes=30)
    )
    now = timezone.now()
    assert reminders_write_due(now=now) == 1
    assert notifications_send_due(now=now) == {"claimed": 1, "sent": 1}
    assert receiver.requests[0].json()["event"] == "reminded"
