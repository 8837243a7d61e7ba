"""E-mail through Django's real SMTP backend to a scripted local SMTP server: each failure class is told apart
(permanent: the row fails; transient: it is tried again later), and the delivered message is on the wire."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from alerts import transports
from alerts.delivery import notifications_send_due
from alerts.models import Notification
from alerts.tests.fake_smtp import FakeSMTP
from alerts.transports import TransportError

pytestmark = pytest.mark.django_db


@pytest.fixture
def team(db):
    return Group.objects.create(name="acme")


@pytest.fixture
def alert(make_alert, team):
    return make_alert(team)


@pytest.fixture
def smtp(settings):
    """Start a fake SMTP server with scripted replies and point Django's SMTP backend at it."""
    servers = []

    def start(**replies) -> FakeSMTP:
        server = FakeSMTP(**replies)
        servers.append(server)
        point_mail_at(settings, server.port)
        return server

    yield start
    for server in servers:
        server.close()


def point_mail_at(settings, port: int) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 5


@pytest.fixture
def mail_channel(make_channel, team):
    return make_channel(team, "email", "oncall@example.com")


def send(channel, notification):
    with pytest.raises(TransportError) as error:
        transports.send(channel, notification)
    return error.value


def test_a_message_the_server_accepts_is_on_the_wire(smtp, mail_channel, event_notification, alert):
    server = smtp()
    notification = event_notification(mail_channel, alert)
    transports.send(mail_channel, notification)
    assert [c.split(":")[0].upper() for c in server.commands[1:3]] == ["MAIL FROM", "RCPT TO"]
    assert "<oncall@example.com>" in server.commands[2]
    [message] = server.messages
    assert f"Subject: {notification.subject}".encode() in message


def test_a_refused_recipient_is_permanent(smtp, mail_channel, event_notification, alert):
    smtp(RCPT="550 5.1.1 no such user")
    error = send(mail_channel, event_notification(mail_channel, alert))
    assert error.permanent and error.message == "email: refused by the mail server (SMTPRecipientsRefused, 550)"
    assert "oncall@example.com" not in error.message


def test_a_recipient_deferred_with_4xx_is_transient(smtp, mail_channel, event_notification, alert):
    smtp(RCPT="450 4.2.0 greylisted, try again later")
    error = send(mail_channel, event_notification(mail_channel, alert))
    assert not error.permanent and error.message == "email: refused by the mail server (SMTPRecipientsRefused, 450)"


def test_a_sender_deferred_with_4xx_is_transient(smtp, mail_channel, event_notification, alert):
    smtp(MAIL="451 4.3.0 temporary local problem")
    error = send(mail_channel, event_notification(mail_channel, alert))
    assert not error.permanent and "451" in error.message


def test_a_5xx_for_the_message_is_permanent(smtp, mail_channel, event_notification, alert):
    smtp(END="554 5.7.1 message rejected")
    error = send(mail_channel, event_notification(mail_channel, alert))
    assert error.permanent and error.message == "email: mail server answered 554"


def test_a_4xx_for_the_message_is_transient(smtp, mail_channel, event_notification, alert):
    smtp(END="452 4.3.1 insufficient system storage")
    error = send(mail_channel, event_notification(mail_channel, alert))
    assert not error.permanent and error.message == "email: mail server answered 452"


def test_a_server_that_closes_at_the_greeting_is_transient(smtp, mail_channel, event_notification, alert):
    smtp(GREETING="421 4.3.2 too busy, come back later")
    error = send(mail_channel, event_notification(mail_channel, alert))
    assert not error.permanent


def test_an_unreachable_server_is_transient(settings, closed_port, mail_channel, event_notification, alert):
    point_mail_at(settings, closed_port)
    error = send(mail_channel, event_notification(mail_channel, alert))
    assert not error.permanent and "could not reach the mail server" in error.message
    assert str(closed_port) not in error.message


@pytest.mark.parametrize(
    ("replies", "status", "outcome"),
    [
        ({"RCPT": "550 5.1.1 no such user"}, Notification.Status.FAILED, "failed"),
        ({"RCPT": "450 4.2.0 greylisted"}, Notification.Status.PENDING, "retrying"),
        ({"END": "554 5.7.1 rejected"}, Notification.Status.FAILED, "failed"),
        ({"END": "451 4.3.0 try later"}, Notification.Status.PENDING, "retrying"),
    ],
)
def test_the_outbox_stores_what_each_class_means(
    smtp, mail_channel, event_notification, alert, replies, status, outcome
):
    smtp(**replies)
    notification = event_notification(mail_channel, alert)
    now = timezone.now()
    assert notifications_send_due(now=now)[outcome] == 1
    notification.refresh_from_db()
    assert notification.status == status and notification.sent_at is None
    if status == Notification.Status.PENDING:
        assert notification.next_try_at > now + timedelta(seconds=1)  # tried again later, not at once
