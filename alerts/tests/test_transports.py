"""Transports against a real local HTTP receiver (and Django's locmem mail backend)."""

import hashlib
import hmac
import time

import pytest
from django.contrib.auth.models import Group

from alerts import transports
from alerts.outbox import notification_test
from alerts.transports import TransportError, address_guard, base
from alerts.transports import mail as mail_transport

pytestmark = pytest.mark.django_db

SECRET = "whsec-test-0123456789abcdef"


# The recipe documented in alerts/transports.py and the README, verbatim.
def verify(secret: str, timestamp: str, body: bytes, signature: str, tolerance: int = 300) -> bool:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest("sha256=" + mac, signature) and abs(time.time() - int(timestamp)) <= tolerance


@pytest.fixture
def team(db):
    return Group.objects.create(name="acme")


@pytest.fixture
def alert(make_alert, team):
    return make_alert(team)


# --- webhooks ----------------------------------------------------------------------------------------


def test_it_signs_webhooks_so_the_documented_recipe_verifies(make_channel, event_notification, receiver, team, alert):
    channel = make_channel(team, "webhook", receiver.url + "/hooks/pulse?token=abc", secret=SECRET)
    notification = event_notification(channel, alert)

    transports.send(channel, notification)

    [request] = receiver.requests
    assert request.path == "/hooks/pulse?token=abc"
    assert request.headers["content-type"] == "application/json"
    timestamp, signature = request.headers["x-pulse-timestamp"], request.headers["x-pulse-signature"]
    assert abs(int(timestamp) - time.time()) < 5
    assert signature.startswith("sha256=")
    assert verify(SECRET, timestamp, request.body, signature)
    assert not verify("another-secret-0123456789", timestamp, request.body, signature)
    assert not verify(SECRET, timestamp, request.body.replace(b"opened", b"resolved"), signature)
    assert not verify(SECRET, str(int(timestamp) - 3600), request.body, signature)
    payload = request.json()
    assert payload["event"] == "opened"
    assert payload["delivery"] == notification.id
    assert payload["sent_at"] is not None
    assert payload["alert"]["id"] == alert.id
    assert payload["alert"]["observed_value"] == 7200
    assert payload["alert"]["expected_upper"] == 3600
    assert payload["alert"]["table"] == {"id": alert.table_id, "schema": "public", "name": "orders"}


def test_it_refuses_to_send_an_unsigned_webhook(make_channel, event_notification, receiver, team, alert):
    channel = make_channel(team, "webhook", receiver.url + "/hook")
    with pytest.raises(TransportError) as error:
        transports.send(channel, event_notification(channel, alert))
    assert error.value.permanent
    assert receiver.requests == []


def test_it_refuses_receivers_on_private_or_internal_addresses(
    make_channel, event_notification, receiver, team, alert, settings
):
    settings.PULSE_WEBHOOK_ALLOW_PRIVATE = False
    for url in (receiver.url + "/hook", f"http://localhost:{receiver.port}/hook"):  # localhost: resolved by name
        channel = make_channel(team, "webhook", url, name=url, secret=SECRET)
        with pytest.raises(TransportError) as error:
            transports.send(channel, event_notification(channel, alert))
        assert error.value.permanent
        assert "private or internal address" in error.value.message
        assert "PULSE_WEBHOOK_ALLOW_PRIVATE=on" in error.value.message  # the setting a private network needs
        assert str(receiver.port) not in error.value.message
    assert receiver.requests == []

    settings.PULSE_WEBHOOK_ALLOW_PRIVATE = True
    transports.send(channel, event_notification(channel, alert))
    assert len(receiver.requests) == 1


def test_it_refuses_a_receiver_that_turns_internal_after_the_dns_check(
    make_channel, event_notification, receiver, team, alert, settings, monkeypatch
):
    """DNS rebinding: the name looked public when checked; the socket's peer is what counts."""
    settings.PULSE_WEBHOOK_ALLOW_PRIVATE = False
    monkeypatch.setattr(address_guard, "refuse_internal_receiver", lambda url, *, what: None)
    channel = make_channel(team, "webhook", receiver.url + "/hook", secret=SECRET)
    with pytest.raises(TransportError) as error:
        transports.send(channel, event_notification(channel, alert))
    assert error.value.permanent
    assert "private or internal address" in error.value.message
    assert "PULSE_WEBHOOK_ALLOW_PRIVATE=on" in error.value.message
    assert receiver.requests == []


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),  # noqa: S104 - an address under test, not a bind
        ("224.0.0.1", False),
        ("::1", False),
        ("fe80::1%eth0", False),
        ("fd00::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:8.8.8.8", True),
    ],
)
def test_it_knows_public_from_internal_addresses(address, public):
    assert transports.is_public_address(address) is public


@pytest.mark.parametrize(
    ("status", "permanent"),
    [
        (400, True),
        (401, True),
        (403, True),
        (404, True),
        (410, True),
        (302, True),
        (429, False),
        (500, False),
        (502, False),
        (503, False),
    ],
)
def test_it_classifies_http_answers(make_channel, event_notification, receiver, team, alert, status, permanent):
    channel = make_channel(team, "webhook", receiver.url + "/hook", secret=SECRET)
    receiver.script(status)
    with pytest.raises(TransportError) as error:
        transports.send(channel, event_notification(channel, alert))
    assert error.value.permanent is permanent
    assert f"HTTP {status}" in error.value.message
    assert len(receiver.requests) == 1  # never followed a redirect, never retried inline


def test_it_treats_a_refused_connection_as_transient(make_channel, event_notification, closed_port, team, alert):
    port = closed_port
    channel = make_channel(team, "slack", f"http://127.0.0.1:{port}/services/T000/B000/XXXXSECRET")
    with pytest.raises(TransportError) as error:
        transports.send(channel, event_notification(channel, alert))
    assert not error.value.permanent
    assert "XXXXSECRET" not in error.value.message and str(port) not in error.value.message
    assert error.value.__cause__ is None and error.value.__suppress_context__


def test_it_times_out_as_a_transient_failure(make_channel, event_notification, receiver, team, alert, monkeypatch):
    monkeypatch.setattr(base, "TIMEOUT_SECONDS", 0.3)
    channel = make_channel(team, "webhook", receiver.url + "/slow", secret=SECRET)
    receiver.script((200, 60))  # answers only after a minute: a send that waited for it would succeed
    with pytest.raises(TransportError) as error:
        transports.send(channel, event_notification(channel, alert))
    assert not error.value.permanent
    assert "no answer within" in error.value.message


def test_it_keeps_urls_and_secrets_out_of_error_messages(make_channel, event_notification, receiver, team, alert):
    url = receiver.url + "/services/T000/B000/XXXXTOKENXXXX"
    channel = make_channel(team, "webhook", url, secret=SECRET)
    echo = f"no such hook: {url} /services/T000/B000/XXXXTOKENXXXX signed with {SECRET}".encode()
    receiver.script((404, 0.0, echo))
    with pytest.raises(TransportError) as error:
        transports.send(channel, event_notification(channel, alert))
    assert "HTTP 404" in error.value.message
    assert "XXXXTOKENXXXX" not in error.value.message
    assert SECRET not in error.value.message


# --- Slack ---------------------------------------------------------------------------------------------


def test_it_posts_slack_text(make_channel, event_notification, receiver, team, alert):
    # Created directly in the DB: the hooks.slack.com check applies to API and admin input only.
    channel = make_channel(team, "slack", receiver.url + "/services/T000/B000/XXXX")
    alert.message = "value <script> & more"
    alert.save()
    notification = event_notification(channel, alert)

    transports.send(channel, notification)

    [request] = receiver.requests
    assert request.path == "/services/T000/B000/XXXX"
    payload = request.json()
    assert list(payload) == ["text"]
    assert payload["text"].startswith(f"*{notification.subject}*\n")
    assert "value &lt;script&gt; &amp; more" in payload["text"]
    assert f"/admin/alerts/alert/{alert.id}/change/" in payload["text"]


# --- email -----------------------------------------------------------------------------------------------


def test_it_emails_every_address(make_channel, event_notification, team, alert, mailoutbox, settings):
    settings.DEFAULT_FROM_EMAIL = "pulse@example.com"
    channel = make_channel(team, "email", "oncall@example.com, data-team@example.com")
    notification = event_notification(channel, alert)

    transports.send(channel, notification)

    [message] = mailoutbox
    assert message.to == ["oncall@example.com", "data-team@example.com"]
    assert message.from_email == "pulse@example.com"
    assert message.subject == notification.subject
    assert message.body == notification.body
    assert "public.orders" in message.body


def test_an_email_subject_stays_on_one_line_on_the_console_and_on_the_wire(
    make_channel, make_alert, event_notification, team, settings, capsys
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
    alert = make_alert(team, connection_name="warehouse-replica-eu-west-1")
    channel = make_channel(team, "email", "oncall@example.com")
    notification = event_notification(channel, alert, kind="reminded")
    assert len("Subject: " + notification.subject) > 78  # long enough that Django would fold it

    transports.send(channel, notification)

    lines = capsys.readouterr().out.splitlines()
    at = lines.index("Subject: " + notification.subject)
    assert not lines[at + 1].startswith((" ", "\t"))  # no continuation line
    email = mail_transport.OneLineSubjectEmail(subject=notification.subject, body="b", to=["oncall@example.com"])
    wire = email.message().as_bytes(linesep="\r\n")  # as the SMTP backend sends it
    assert b"Subject: " + notification.subject.encode() + b"\r\n" in wire


# --- Apprise -------------------------------------------------------------------------------------------


def test_it_sends_through_apprise(make_channel, receiver, team):
    channel = make_channel(team, "apprise", f"json://127.0.0.1:{receiver.port}/pulse")
    notification = notification_test(channel=channel)

    transports.send(channel, notification)

    [request] = receiver.requests
    assert request.path == "/pulse"
    payload = request.json()
    assert payload["title"] == notification.subject
    assert payload["message"] == notification.body


@pytest.mark.parametrize("answer", [500, 404, "down"])
def test_it_treats_an_apprise_failure_as_transient(make_channel, closed_port, receiver, team, answer):
    port = closed_port if answer == "down" else receiver.port
    if answer != "down":
        receiver.script(answer)
    channel = make_channel(team, "apprise", f"json://127.0.0.1:{port}/pulse")
    with pytest.raises(TransportError) as error:
        transports.send(channel, notification_test(channel=channel))
    assert not error.value.permanent


def test_it_fails_permanently_when_the_target_cannot_be_used(make_channel, team):
    channel = make_channel(team, "apprise", "bogus://nothing-here")
    with pytest.raises(TransportError) as error:
        transports.send(channel, notification_test(channel=channel))
    assert error.value.permanent
    assert "bogus" not in error.value.message
    channel.target_encrypted = "not-a-fernet-token"
    with pytest.raises(TransportError) as error:
        transports.send(channel, notification_test(channel=channel))
    assert error.value.permanent
    assert "decrypted" in error.value.message
