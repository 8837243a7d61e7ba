"""Attack: a tenant points a notification channel at Pulse's own network (SSRF).

Apprise targets get the same address policy as webhooks: refused at save when the URL names an internal
host in any spelling, refused before sending when the host resolves to one, and refused by the socket
guard when a connection is about to reach one anyway. A real local receiver proves nothing was sent.
"""

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from alerts import transports
from alerts.models import Channel
from alerts.outbox import notification_test
from alerts.transports import TransportError, address_guard
from alerts.transports.address_guard import InternalPeer, public_peers_only

pytestmark = pytest.mark.django_db


class RecordingReceiver:
    """An HTTP server on 127.0.0.1 that counts every TCP connection it accepts (any protocol) and keeps
    each POST body; answers 200."""

    def __init__(self):
        self.connections = 0
        self.bodies: list[bytes] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                receiver.bodies.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def process_request(self, request, client_address):
                receiver.connections += 1
                super().process_request(request, client_address)

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = RecordingReceiver()
    yield server
    server.close()


@pytest.fixture
def guard_on(settings):
    settings.PULSE_WEBHOOK_ALLOW_PRIVATE = False


def stored_channel(team, target, *, kind="apprise") -> Channel:
    """A channel written straight to the database, as one saved before the rule existed would be."""
    channel = Channel(team=team, name=f"{kind}-channel", kind=kind)
    channel.set_target(target)
    channel.save()
    return channel


def create(client, **fields):
    return client.post("/api/channels", {"name": "attack", "kind": "apprise", **fields}, format="json")


# --- at save ---------------------------------------------------------------------------------------

INTERNAL_APPRISE_TARGETS = [
    "json://127.0.0.1:{port}/hook",
    "jsons://169.254.169.254/latest/meta-data/iam?+X-aws-ec2-metadata-token=abc",
    "json://169.254.169.254/computeMetadata/v1?+Metadata-Flavor=Google",
    "xml://10.0.0.5/x",
    "form://192.168.1.10:8080/x",
    "json://172.16.0.1/x",
    "json://100.64.0.1/x",
    "json://0.0.0.0:{port}/x",
    "json://2130706433:{port}/x",
    "json://[::ffff:127.0.0.1]/x",
    "json://[::ffff:7f00:1]/x",
    "json://[::1]:{port}/x",
    "json://[fd00::1]/x",
    "json://[fe80::1]/x",
    "json://localhost:{port}/x",
    "json://LOCALHOST./x",
    "json://api.localhost/x",
    "mailto://user:pw@example.com?smtp=127.0.0.1",
    "mailtos://user:pw@example.com?smtp=169.254.169.254",
    "mailto://127.0.0.1?from=a@example.com&to=b@example.com",
    "ntfy://127.0.0.1/topic",
    "gotify://10.0.0.1/token",
    "apprise://127.0.0.1/token",
    "mmost://[::1]/token",
    "rsyslog://127.0.0.1",
    "hassio://192.168.0.2/accesstoken",
    "json://hooks.example.com/ok json://127.0.0.1:{port}/second",
]


@pytest.mark.parametrize("target", INTERNAL_APPRISE_TARGETS)
def test_it_refuses_an_apprise_target_on_an_internal_address_at_save(owner_client, guard_on, receiver, target):
    target = target.format(port=receiver.port)
    response = create(owner_client, target=target)
    assert response.status_code == 400, response.content
    assert response.data == {
        "target": [
            "Apprise URLs may not point at private or internal addresses "
            "(set PULSE_WEBHOOK_ALLOW_PRIVATE=on to allow receivers on a private network)."
        ]
    }
    assert str(receiver.port) not in response.content.decode()
    assert Channel.objects.count() == 0
    assert receiver.connections == 0


@pytest.mark.parametrize(
    "target",
    [
        "json://0x7f.1:{port}/x",
        "json://127.1:{port}/x",
        "json://0177.0.0.1:{port}/x",
        "json://[::ffff:127.0.0.1]:{port}/x",
    ],
)
def test_odd_loopback_spellings_apprise_cannot_parse_are_refused_too(owner_client, guard_on, receiver, target):
    response = create(owner_client, target=target.format(port=receiver.port))
    assert response.status_code == 400
    assert "Apprise does not accept this URL" in str(response.data["target"])
    assert Channel.objects.count() == 0


def test_it_refuses_moving_an_apprise_channel_to_an_internal_address(owner_client, guard_on, teams, receiver):
    channel = stored_channel(teams[0], "json://hooks.example.com/pulse")
    response = owner_client.patch(
        f"/api/channels/{channel.id}", {"target": f"json://2130706433:{receiver.port}/x"}, format="json"
    )
    assert response.status_code == 400
    assert "private or internal" in str(response.data["target"])
    channel.refresh_from_db()
    assert channel.get_target() == "json://hooks.example.com/pulse"


@pytest.mark.parametrize(
    "target",
    ["http://2130706433:8080/hook", "http://0x7f.1/hook", "http://127.1/hook", "http://[::127.0.0.1]/hook"],
)
def test_it_refuses_webhooks_to_odd_spellings_of_loopback(owner_client, guard_on, target):
    response = create(owner_client, kind="webhook", target=target, secret="s" * 32)
    assert response.status_code == 400
    assert "private or internal" in str(response.data["target"])
    assert Channel.objects.count() == 0


@pytest.mark.parametrize(
    "target",
    [
        "json://hooks.example.com/pulse?+X-Token=abc",
        "mailtos://user:pw@gmail.com",
        "discord://1234567890/abcdefghijklmnop",  # a fixed endpoint: `host` holds the webhook id
        "tgram://123456789:abcdefg_hijklmnop/12315544/",
    ],
)
def test_it_accepts_apprise_targets_on_public_or_fixed_hosts(owner_client, guard_on, target):
    response = create(owner_client, target=target)
    assert response.status_code == 201, response.content
    assert Channel.objects.get().get_target() == target


# --- at send ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "json://127.0.0.1:{port}/hook",
        "xml://127.0.0.1:{port}/hook",
        "form://127.0.0.1:{port}/hook",
        "json://2130706433:{port}/hook",
        "json://[::ffff:127.0.0.1]/hook",
        "json://localhost:{port}/hook",
        "json://[::1]:{port}/hook json://127.0.0.1:{port}/b",
        "mailto://user:pw@example.invalid?smtp=127.0.0.1&port={port}&to=ops@example.invalid",
    ],
)
def test_it_refuses_to_send_through_a_stored_internal_apprise_target(teams, guard_on, receiver, target):
    channel = stored_channel(teams[0], target.format(port=receiver.port))
    with pytest.raises(TransportError) as error:
        transports.send(channel, notification_test(channel=channel))
    assert error.value.permanent
    assert "private or internal address" in error.value.message
    assert str(receiver.port) not in error.value.message
    assert receiver.connections == 0


@pytest.mark.parametrize(
    "target", ["json://127.0.0.1:{port}/hook", "json://127.0.0.1:{port}/a json://127.0.0.1:{port}/b"]
)
def test_the_socket_guard_refuses_what_the_dns_check_missed(teams, guard_on, receiver, target, monkeypatch):
    """DNS rebinding, or an address a plugin derives its own way: the address each socket is about to reach
    is what counts, also in the worker threads Apprise uses for several URLs."""
    monkeypatch.setattr(address_guard, "refuse_internal_host", lambda host, *, port, what: None)
    channel = stored_channel(teams[0], target.format(port=receiver.port))
    with pytest.raises(TransportError) as error:
        transports.send(channel, notification_test(channel=channel))
    assert error.value.permanent
    assert "private or internal address" in error.value.message
    assert receiver.connections == 0


def test_allow_private_lifts_both_guards_for_apprise(owner_client, settings, receiver):
    settings.PULSE_WEBHOOK_ALLOW_PRIVATE = True
    response = create(owner_client, target=f"json://127.0.0.1:{receiver.port}/pulse")
    assert response.status_code == 201
    channel = Channel.objects.get()
    notification = notification_test(channel=channel)
    transports.send(channel, notification)
    assert receiver.connections == 1
    assert notification.subject.encode() in receiver.bodies[0]


def test_the_socket_guard_holds_only_inside_its_block(guard_on, receiver):
    with public_peers_only() as guard, socket.socket() as sock, pytest.raises(InternalPeer):
        sock.connect(("127.0.0.1", receiver.port))
    assert guard.refused
    with public_peers_only() as guard, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        with pytest.raises(InternalPeer):
            sock.sendto(b"x", ("localhost", receiver.port))
        with pytest.raises(InternalPeer):
            sock.connect_ex(("127.0.0.1", receiver.port))
    assert requests.post(f"http://127.0.0.1:{receiver.port}/", data=b"after", timeout=10).status_code == 200
    assert receiver.connections == 1
    assert receiver.bodies == [b"after"]


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("::127.0.0.1", False),  # IPv4-compatible
        ("64:ff9b::7f00:1", False),  # NAT64 of 127.0.0.1
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 of 169.254.169.254
        ("2002:7f00:1::1", False),  # 6to4 of 127.0.0.1
        ("2002:808:808::1", True),  # 6to4 of 8.8.8.8
        ("::", False),
        ("::ffff:7f00:1", False),
    ],
)
def test_it_judges_ipv6_addresses_by_the_ipv4_address_they_carry(address, public):
    assert transports.is_public_address(address) is public
