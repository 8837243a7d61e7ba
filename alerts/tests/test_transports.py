"""Transports against a real local HTTP receiver (and Django's locmem mail backend)."""

import hashlib
import hmac
import json
import socket
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from alerts import transports
from alerts.models import Alert, AlertEvent, Channel, Notification
from alerts.outbox import message_for_event, notification_test
from alerts.transports import TransportError
from connections.models import Connection
from monitors.models import CheckResult, MonitoredTable

pytestmark = pytest.mark.django_db

SECRET = "whsec-test-0123456789abcdef"


# --- a real HTTP receiver (shared with test_notifier) ---------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body)


class Receiver:
    """ThreadingHTTPServer on 127.0.0.1 (port 0) that records requests and answers scripted statuses.

    `script(500, 200, (200, 1.5))`: one answer per request in order (a tuple adds a delay in seconds);
    when the script runs out, 200.
    """

    def __init__(self):
        self.requests: list[Received] = []
        self.answers: list[tuple[int, float, bytes]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    headers = {key.lower(): value for key, value in self.headers.items()}
                    receiver.requests.append(Received(path=self.path, headers=headers, body=body))
                    status, delay, text = receiver.answers.pop(0) if receiver.answers else (200, 0.0, b"ok")
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    if 300 <= status < 400:
                        self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                    self.send_header("Content-Length", str(len(text)))
                    self.end_headers()
                    self.wfile.write(text)
                except OSError:
                    pass  # the client gave up (timeout tests)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def script(self, *answers):
        for answer in answers:
            if isinstance(answer, int):
                answer = (answer, 0.0, b"")
            elif len(answer) == 2:
                answer = (*answer, b"")
            self.answers.append(answer)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def closed_port() -> int:
    """A port nothing listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_channel(team, kind, target, *, name=None, secret=None, **fields) -> Channel:
    channel = Channel(team=team, name=name or f"{kind}-channel", kind=kind, **fields)
    channel.set_target(target)
    if secret:
        channel.set_secret(secret)
    channel.save()
    return channel


def make_alert(team, *, connection_name="shop-replica", **fields) -> Alert:
    """An open freshness alert on public.orders, opened two hours ago, with its failing result."""
    connection = Connection.objects.filter(team=team, name=connection_name).first()
    if connection is None:
        connection = Connection.objects.create(
            team=team, name=connection_name, host="replica.invalid", database="shop", username="pulse"
        )
    table, _ = MonitoredTable.objects.get_or_create(connection=connection, table_name="orders")
    now = timezone.now()
    CheckResult.objects.create(
        connection=connection,
        table=table,
        kind="freshness",
        status="fail",
        observed_value=7200,
        expected_upper=3600,
        message="newest created_at is 120 min old (limit 60 min)",
        started_at=now - timedelta(minutes=1),
    )
    values = {
        "kind": "freshness",
        "severity": "critical",
        "message": "newest created_at is 120 min old (limit 60 min)",
        "opened_at": now - timedelta(hours=2),
        "last_seen_at": now,
        **fields,
    }
    return Alert.objects.create(connection=connection, table=table, **values)


def event_notification(channel, alert, kind="opened") -> Notification:
    """A saved outbox row of a fresh event of `alert`, for `channel` only."""
    event = AlertEvent.objects.create(alert=alert, kind=kind, at=timezone.now(), message=alert.message)
    message = message_for_event(event=event)
    return Notification.objects.create(
        channel=channel,
        event=event,
        subject=message["subject"],
        body=message["body"],
        payload=message["payload"],
        next_try_at=timezone.now(),
    )


# The recipe documented in alerts/transports.py and the README, verbatim.
def verify(secret: str, timestamp: str, body: bytes, signature: str, tolerance: int = 300) -> bool:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest("sha256=" + mac, signature) and abs(time.time() - int(timestamp)) <= tolerance


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def team(db):
    return Group.objects.create(name="acme")


@pytest.fixture
def alert(team):
    return make_alert(team)


# --- webhooks ----------------------------------------------------------------------------------------


def test_it_signs_webhooks_so_the_documented_recipe_verifies(receiver, team, alert):
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


def test_it_refuses_to_send_an_unsigned_webhook(receiver, team, alert):
    channel = make_channel(team, "webhook", receiver.url + "/hook")
    with pytest.raises(TransportError) as error:
        transports.send(channel, event_notification(channel, alert))
    assert error.value.permanent
    assert receiver.requests == []


def test_it_refuses_receivers_on_private_or_internal_addresses(receiver, team, alert, settings):
    settings.PULSE_WEBHOOK_ALLOW_PRIVATE = False
    for url in (receiver.url + "/hook", f"http://localhost:{receiver.port}/hook"):  # localhost: resolved by name
        channel = make_channel(team, "webhook", url, name=url, secret=SECRET)
        with pytest.raises(TransportError) as error:
            transports.send(channel, event_notification(channel, alert))
        assert error.value.permanent
        assert "private or internal address" in error.value.message
        assert str(receiver.port) not in error.value.message
    assert receiver.requests == []

    settings.PULSE_WEBHOOK_ALLOW_PRIVATE = True
    transports.send(channel, event_notification(channel, alert))
    assert len(receiver.requests) == 1


def test_it_refuses_a_receiver_that_turns_internal_after_the_dns_check(receiver, team, alert, settings, monkeypatch):
    """DNS rebinding: the name looked public when checked; the socket's peer is what counts."""
    settings.PULSE_WEBHOOK_ALLOW_PRIVATE = False
    monkeypatch.setattr(transports, "_refuse_internal_receiver", lambda url, *, what: None)
    channel = make_channel(team, "webhook", receiver.url + "/hook", secret=SECRET)
    with pytest.raises(TransportError) as error:
        transports.send(channel, event_notification(channel, alert))
    assert error.value.permanent
    assert "private or internal address" in error.value.message
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
def test_it_classifies_http_answers(receiver, team, alert, status, permanent):
    channel = make_channel(team, "webhook", receiver.url + "/hook", secret=SECRET)
    receiver.script(status)
    with pytest.raises(TransportError) as error:
        transports.send(channel, event_notification(channel, alert))
    assert error.value.permanent is permanent
    assert f"HTTP {status}" in error.value.message
    assert len(receiver.requests) == 1  # never followed a redirect, never retried inline


def test_it_treats_a_refused_connection_as_transient(team, alert):
    port = closed_port()
    channel = make_channel(team, "slack", f"http://127.0.0.1:{port}/services/T000/B000/XXXXSECRET")
    with pytest.raises(TransportError) as error:
        transports.send(channel, event_notification(channel, alert))
    assert not error.value.permanent
    assert "XXXXSECRET" not in error.value.message and str(port) not in error.value.message
    assert error.value.__cause__ is None and error.value.__suppress_context__


def test_it_times_out_as_a_transient_failure(receiver, team, alert, monkeypatch):
    monkeypatch.setattr(transports, "TIMEOUT_SECONDS", 0.3)
    channel = make_channel(team, "webhook", receiver.url + "/slow", secret=SECRET)
    receiver.script((200, 1.5))
    started = time.monotonic()
    with pytest.raises(TransportError) as error:
        transports.send(channel, event_notification(channel, alert))
    assert time.monotonic() - started < 1.4
    assert not error.value.permanent
    assert "no answer within" in error.value.message


def test_it_keeps_urls_and_secrets_out_of_error_messages(receiver, team, alert):
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


def test_it_posts_slack_text(receiver, team, alert):
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


def test_it_emails_every_address(team, alert, mailoutbox, settings):
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


# --- Apprise -------------------------------------------------------------------------------------------


def test_it_sends_through_apprise(receiver, team):
    channel = make_channel(team, "apprise", f"json://127.0.0.1:{receiver.port}/pulse")
    notification = notification_test(channel=channel)

    transports.send(channel, notification)

    [request] = receiver.requests
    assert request.path == "/pulse"
    payload = request.json()
    assert payload["title"] == notification.subject
    assert payload["message"] == notification.body


@pytest.mark.parametrize("answer", [500, 404, "down"])
def test_it_treats_an_apprise_failure_as_transient(receiver, team, answer):
    port = closed_port() if answer == "down" else receiver.port
    if answer != "down":
        receiver.script(answer)
    channel = make_channel(team, "apprise", f"json://127.0.0.1:{port}/pulse")
    with pytest.raises(TransportError) as error:
        transports.send(channel, notification_test(channel=channel))
    assert not error.value.permanent


def test_it_fails_permanently_when_the_target_cannot_be_used(team):
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
