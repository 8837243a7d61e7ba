"""Shared fixtures: a real primary + hot-standby pair, tenants, API clients, and notification receivers."""

import json
import shutil
import socket
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.utils import timezone
from rest_framework.test import APIClient

from alerts.models import Alert, AlertEvent, Channel, Notification
from alerts.outbox import message_for_event
from connections.models import Connection
from monitors.models import CheckResult, MonitoredTable
from pulse_project.pgcluster import ReplicaPair

READER = "pulse_reader"
READER_PASSWORD = "reader-s3cret-pw"
SAMPLE_DB = "shop"

SAMPLE_SCHEMA = f"""
CREATE ROLE {READER} LOGIN PASSWORD '{READER_PASSWORD}';
CREATE TABLE public.orders (
    id bigserial PRIMARY KEY, customer_id int NOT NULL, amount numeric(10, 2),
    created_at timestamptz NOT NULL DEFAULT now(), note text
);
INSERT INTO public.orders (customer_id, amount, created_at)
    SELECT g % 50, g * 1.5, now() - make_interval(mins => g) FROM generate_series(1, 500) g;
CREATE TABLE public.customers (id int PRIMARY KEY, name text NOT NULL, signup_date date);
INSERT INTO public.customers SELECT g, 'customer ' || g, current_date - g FROM generate_series(1, 50) g;
-- The pair runs without autovacuum: stale_events never gets statistics (the null-rate check samples it).
CREATE TABLE public.stale_events (id int, happened_at timestamp without time zone, kind text);
INSERT INTO public.stale_events
    SELECT g, (now() AT TIME ZONE 'UTC') - interval '3 days' - make_interval(mins => g), NULL
    FROM generate_series(1, 100) g;
CREATE TABLE public.empty_events (id int, at timestamptz);
CREATE SCHEMA private;
CREATE TABLE private.salaries (id int, amount int);
GRANT SELECT ON public.orders, public.customers, public.stale_events, public.empty_events TO {READER};
"""


def pytest_configure(config):
    """Tests hash users' passwords with MD5 first (PBKDF2 costs ~0.35 s of CPU per user); production keeps PBKDF2.

    The default hashers stay listed after it, so a hash made by a subprocess under the production settings
    still checks in the test process.
    """
    from django.conf import settings

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", *settings.PASSWORD_HASHERS]


@pytest.fixture(autouse=True)
def allow_local_receivers(settings):
    """Test receivers listen on 127.0.0.1; the SSRF guard's own tests turn this back off."""
    settings.PULSE_WEBHOOK_ALLOW_PRIVATE = True


@pytest.fixture(autouse=True)
def allow_local_replicas(settings):
    """Test replicas listen on 127.0.0.1; the target policy's own tests turn this back off."""
    settings.PULSE_CONNECTION_ALLOW_LOCAL = True


def _sample_pair():
    """A primary + hot standby holding the sample database, stopped and removed afterwards."""
    pair = ReplicaPair.create(autovacuum=False)  # deterministic statistics: tests ANALYZE where they need them
    try:
        with pair.primary.connect() as conn:
            conn.execute(f"CREATE DATABASE {SAMPLE_DB}")
        with pair.primary.connect(SAMPLE_DB) as conn:
            conn.execute(SAMPLE_SCHEMA)
        pair.wait_for_replay()
        yield pair
    finally:
        pair.stop()
        shutil.rmtree(pair.base_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def replica_pair():
    yield from _sample_pair()


@pytest.fixture
def own_pair():
    """A replica pair of the test's own, for tests that stop, restart or promote it."""
    yield from _sample_pair()


@pytest.fixture
def replica_settings(replica_pair):
    """Connection fields pointing at the hot standby as the least-privileged reader."""
    return {
        "host": "127.0.0.1",
        "port": replica_pair.standby.port,
        "database": SAMPLE_DB,
        "username": READER,
        "password": READER_PASSWORD,
        "sslmode": "disable",
    }


@pytest.fixture
def primary_settings(replica_pair, replica_settings):
    return {**replica_settings, "port": replica_pair.primary.port}


@pytest.fixture
def teams(db):
    return Group.objects.create(name="acme"), Group.objects.create(name="globex")


def _user(username, *, team, with_permissions):
    user = User.objects.create_user(username=username, password="pw-" + username)
    user.groups.add(team)
    if with_permissions:
        user.user_permissions.add(
            *Permission.objects.filter(content_type__app_label__in=["connections", "monitors", "alerts"])
        )
    return user


@pytest.fixture
def owner(teams):
    """Member of acme with every write permission."""
    return _user("owner", team=teams[0], with_permissions=True)


@pytest.fixture
def staff(owner):
    """The owner, allowed into the admin (a staff member of acme who is not a superuser)."""
    owner.is_staff = True
    owner.save()
    return owner


@pytest.fixture
def member(teams):
    """Member of acme without model permissions: may read, may not write."""
    return _user("member", team=teams[0], with_permissions=False)


@pytest.fixture
def outsider(teams):
    """Member of globex with every permission: should have no access to acme's objects."""
    return _user("outsider", team=teams[1], with_permissions=True)


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def superuser(db):
    """An operator: superusers belong to no team and see every team's objects."""
    return User.objects.create_superuser("root", password=READER_PASSWORD + "-root")


@pytest.fixture
def superuser_client(superuser):
    return client_for(superuser)


@pytest.fixture
def owner_client(owner):
    return client_for(owner)


@pytest.fixture
def member_client(member):
    return client_for(member)


@pytest.fixture
def outsider_client(outsider):
    return client_for(outsider)


@pytest.fixture
def make_connection(teams, replica_settings):
    """Store a connection to the replica directly (no probe), owned by acme unless told otherwise."""

    def make(**overrides):
        fields = {"name": "shop-replica", "team": teams[0], **replica_settings, **overrides}
        password = fields.pop("password")
        connection = Connection(**fields)
        connection.set_password(password)
        connection.save()
        return connection

    return make


# --- notification receivers and alerts (alerts and pulse_project tests) --------------------------------


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


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def make_channel():
    """Store a channel: make_channel(team, kind, target, *, name=None, secret=None, **fields)."""
    return _channel


def _channel(team, kind, target, *, name=None, secret=None, **fields) -> Channel:
    channel = Channel(team=team, name=name or f"{kind}-channel", kind=kind, **fields)
    channel.set_target(target)
    if secret:
        channel.set_secret(secret)
    channel.save()
    return channel


@pytest.fixture
def make_alert():
    """Store an alert: make_alert(team, *, connection_name="shop-replica", **fields)."""
    return _alert


def _alert(team, *, connection_name="shop-replica", **fields) -> Alert:
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


@pytest.fixture
def event_notification():
    """Store an outbox row of a fresh event: event_notification(channel, alert, kind="opened")."""
    return _event_notification


def _event_notification(channel, alert, kind="opened") -> Notification:
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


@pytest.fixture
def receiver():
    """A local HTTP receiver that records requests and answers scripted statuses."""
    server = Receiver()
    yield server
    server.close()
