"""Delivering one rendered notification to one channel: one function per channel kind.

Every transport raises a single error type, `TransportError(message, permanent)`:

- permanent (`permanent=True`): retrying cannot help — HTTP 4xx other than 429, a redirect, a refused
  recipient, an invalid or undecryptable target, a receiver on a private or internal address. The
  notifier fails the notification at once and shows the error on the channel.
- transient (`permanent=False`): HTTP 429 and 5xx, timeouts (10 s), connection errors, an Apprise
  service that reported failure. The notifier retries with backoff.

Slack and webhook URLs and Apprise URLs carry credentials, so error messages name the channel kind and
the HTTP status but never the URL, the secret or the underlying exception text (which often contains the
URL); exceptions are raised `from None` so no traceback carries them either.

SSRF guard
----------
A tenant chooses where Slack, webhook and Apprise notifications go, and sees the receiver's answer in
the channel's error, so unless PULSE_WEBHOOK_ALLOW_PRIVATE these may only reach public addresses
(`is_public_address`). Three checks, all built on that one function: `target_clean` refuses, at save, a
target whose host is `localhost` or a non-public IP in any spelling (`2130706433`, `0x7f.1`,
`[::ffff:127.0.0.1]`); before each send, the host names are resolved and every address must be public;
and while sending, `public_peers_only` checks the address each socket actually connects or sends to
(a DNS answer that changed since, or an address an Apprise plugin derives in its own way).

Webhook signatures
------------------
A webhook receives the notification's JSON payload (plus `delivery`, the notification id, stable across
retries, and `sent_at`) as the raw request body, with two headers:

    X-Pulse-Timestamp: <unix seconds when sent>
    X-Pulse-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body bytes>", keyed with the secret>

The key is the channel's secret as UTF-8 text (the string shown once when the channel was created). To
verify, recompute it over the *raw* body, compare in constant time and refuse stale timestamps:

    import hashlib, hmac, time

    def verify(secret: str, timestamp: str, body: bytes, signature: str, tolerance: int = 300) -> bool:
        mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        return hmac.compare_digest("sha256=" + mac, signature) and abs(time.time() - int(timestamp)) <= tolerance
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import hmac
import ipaddress
import json
import logging
import smtplib
import socket
import threading
import time
from urllib.parse import urlsplit

import apprise
import requests
from django.conf import settings
from django.core import mail
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils import timezone

from alerts.models import Channel, Notification

logger = logging.getLogger(__name__)

TIMEOUT_SECONDS = 10.0
USER_AGENT = "Pulse-Notifier/1"
MAX_EMAIL_RECIPIENTS = 50

# Their output can name full URLs, tokens included (urllib3's DEBUG request lines; Apprise logs an
# unparseable URL as is, at ERROR). Unless configured otherwise, quiet them: Pulse logs the outcome itself.
for _name, _level in (("urllib3", logging.WARNING), ("apprise", logging.CRITICAL)):
    if logging.getLogger(_name).level == logging.NOTSET:
        logging.getLogger(_name).setLevel(_level)


class TransportError(Exception):
    """Sending failed. `permanent`: retrying the same message cannot succeed."""

    def __init__(self, message: str, permanent: bool = False):
        super().__init__(message)
        self.message = message
        self.permanent = permanent


def send(channel: Channel, notification: Notification) -> None:
    """Deliver `notification` through `channel`; raises TransportError."""
    transport = TRANSPORTS.get(channel.kind)
    if transport is None:
        raise TransportError(f"unknown channel kind {channel.kind!r}", permanent=True)
    transport(channel, notification)


# --- email -------------------------------------------------------------------------------------------


def send_email(channel: Channel, notification: Notification) -> None:
    addresses = _email_addresses(_target(channel))
    if not addresses:
        raise TransportError("email: no recipient addresses", permanent=True)
    try:
        connection = mail.get_connection(timeout=getattr(settings, "EMAIL_TIMEOUT", None) or TIMEOUT_SECONDS)
        mail.send_mail(
            subject=notification.subject,
            message=notification.body,
            from_email=settings.DEFAULT_FROM_EMAIL,
            recipient_list=addresses,
            connection=connection,
        )
    except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused) as exc:
        raise TransportError(f"email: refused by the mail server ({type(exc).__name__})", permanent=True) from None
    except smtplib.SMTPResponseException as exc:
        permanent = 500 <= exc.smtp_code < 600
        raise TransportError(f"email: mail server answered {exc.smtp_code}", permanent=permanent) from None
    except (TimeoutError, smtplib.SMTPException, OSError) as exc:
        raise TransportError(f"email: could not reach the mail server ({type(exc).__name__})") from None


def _email_addresses(target: str) -> list[str]:
    return [address.strip() for address in target.split(",") if address.strip()]


# --- HTTP: Slack and webhooks ------------------------------------------------------------------------


def send_slack(channel: Channel, notification: Notification) -> None:
    url = _target(channel)
    text = f"*{_slack_escape(notification.subject)}*\n{_slack_escape(notification.body)}"
    _post(url, what="slack", json_body={"text": text}, secrets=(url,))


def send_webhook(channel: Channel, notification: Notification) -> None:
    url = _target(channel)
    secret = _secret(channel)
    if not secret:
        raise TransportError("webhook: the channel has no signing secret; set one", permanent=True)
    payload = {**notification.payload, "delivery": notification.id, "sent_at": timezone.now().isoformat()}
    body = json.dumps(payload, separators=(",", ":")).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-Pulse-Timestamp": timestamp,
        "X-Pulse-Signature": "sha256=" + webhook_signature(secret=secret, timestamp=timestamp, body=body),
        "X-Pulse-Delivery": str(notification.id),
    }
    _post(url, what="webhook", data=body, headers=headers, secrets=(url, secret))


def webhook_signature(*, secret: str, timestamp: str, body: bytes) -> str:
    """Hex HMAC-SHA256 of "<timestamp>.<body>" keyed with the secret's UTF-8 bytes."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def _post(url: str, *, what: str, secrets: tuple[str, ...], json_body=None, data=None, headers=None) -> None:
    _refuse_internal_receiver(url, what=what)
    with public_peers_only() as guard:
        try:
            with requests.Session() as session:
                response = session.post(
                    url,
                    json=json_body,
                    data=data,
                    headers={"User-Agent": USER_AGENT, **(headers or {})},
                    timeout=TIMEOUT_SECONDS,
                    allow_redirects=False,
                )
        except requests.RequestException as exc:
            if guard.refused:
                raise TransportError(_INTERNAL_RECEIVER.format(what=what), permanent=True) from None
            if isinstance(exc, requests.Timeout):
                raise TransportError(f"{what}: no answer within {TIMEOUT_SECONDS:g} s") from None
            if isinstance(exc, requests.ConnectionError):
                raise TransportError(f"{what}: could not connect to the receiver") from None
            # InvalidURL, MissingSchema, InvalidHeader...: the stored target is unusable.
            raise TransportError(f"{what}: invalid request ({type(exc).__name__})", permanent=True) from None
    if 200 <= response.status_code < 300:
        return
    detail = _scrub(response.text[:200], secrets)
    message = f"{what}: receiver answered HTTP {response.status_code}" + (f": {detail}" if detail else "")
    transient = response.status_code == 429 or response.status_code >= 500
    raise TransportError(message, permanent=not transient)


def _refuse_internal_receiver(url: str, *, what: str) -> None:
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise TransportError(f"{what}: invalid request (malformed port)", permanent=True) from None
    _refuse_internal_host(parts.hostname, port=port, what=what)


def _refuse_internal_host(host: str | None, *, port: int | None, what: str) -> None:
    """Unless PULSE_WEBHOOK_ALLOW_PRIVATE, every address `host` resolves to must be public."""
    if settings.PULSE_WEBHOOK_ALLOW_PRIVATE:
        return
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)}
    except (OSError, UnicodeError, ValueError):
        raise TransportError(f"{what}: could not resolve the receiver's host name") from None
    if not all(is_public_address(address) for address in addresses):
        raise TransportError(_INTERNAL_RECEIVER.format(what=what), permanent=True)


_INTERNAL_RECEIVER = (
    "{what}: the receiver's host resolves to a private or internal address; refused "
    "(PULSE_WEBHOOK_ALLOW_PRIVATE allows it)"
)


class InternalPeer(OSError):
    """A socket was about to reach a non-public address inside `public_peers_only`. An OSError, so that
    HTTP and mail libraries treat it as the failed connection it is; `guard.refused` tells it apart."""


class _PeerGuard:
    refused = False


_peer_guard: contextvars.ContextVar[_PeerGuard | None] = contextvars.ContextVar("pulse_peer_guard", default=None)
_socket_methods_lock = threading.Lock()


@contextlib.contextmanager
def public_peers_only():
    """Inside this block (and in threads started with a copy of its context, as Apprise's are), unless
    PULSE_WEBHOOK_ALLOW_PRIVATE, a socket may only connect or send to public addresses.

    The check runs in `socket.socket.connect`/`connect_ex`/`sendto`, on the address about to be used:
    it holds whatever library opens the connection and whatever the DNS answered a moment earlier.
    A refused attempt raises InternalPeer and sets `refused` on the yielded guard.
    """
    _install_socket_guard()
    guard = _PeerGuard()
    token = _peer_guard.set(guard)
    try:
        yield guard
    finally:
        _peer_guard.reset(token)


def _install_socket_guard() -> None:
    """Wrap the socket methods once per process; outside `public_peers_only` they behave as before."""
    with _socket_methods_lock:
        if getattr(socket.socket.connect, "pulse_guarded", False):
            return
        connect, connect_ex, sendto = socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto

        def guarded_connect(sock, address):
            return connect(sock, _checked_peer(sock, address))

        def guarded_connect_ex(sock, address):
            return connect_ex(sock, _checked_peer(sock, address))

        def guarded_sendto(sock, data, *flags_and_address):
            *flags, address = flags_and_address
            return sendto(sock, data, *flags, _checked_peer(sock, address))

        guarded_connect.pulse_guarded = True
        socket.socket.connect = guarded_connect
        socket.socket.connect_ex = guarded_connect_ex
        socket.socket.sendto = guarded_sendto


def _checked_peer(sock: socket.socket, address):
    """The address to use: unchanged outside a guard, else resolved here (a name passed straight to
    connect would be resolved again by the C library) and refused unless every result is public."""
    guard = _peer_guard.get()
    if guard is None or settings.PULSE_WEBHOOK_ALLOW_PRIVATE:
        return address
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        guard.refused = True
        raise InternalPeer("only internet sockets may be used while sending notifications")
    host, port = address[0], address[1]
    resolved = [info[4] for info in socket.getaddrinfo(host, port, sock.family, sock.type)]
    if not resolved or not all(is_public_address(peer[0]) for peer in resolved):
        guard.refused = True
        raise InternalPeer("refused to reach a private or internal address")
    return resolved[0]


# IPv6 prefixes whose last 32 bits are an IPv4 address the packets end up at: IPv4-compatible (deprecated)
# and the NAT64 well-known and local-use prefixes. (IPv4-mapped and 6to4 have their own properties.)
_IPV4_EMBEDDING_NETWORKS = tuple(ipaddress.ip_network(net) for net in ("::/96", "64:ff9b::/96", "64:ff9b:1::/48"))


def is_public_address(address: str) -> bool:
    """True for a globally routable unicast IP address (an IPv6 address embedding an IPv4 one, such as
    ::ffff:127.0.0.1, judged as that IPv4 address)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None or ip.sixtofour is not None:
            ip = ip.ipv4_mapped or ip.sixtofour
        elif any(ip in network for network in _IPV4_EMBEDDING_NETWORKS):
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.is_global and not ip.is_multicast


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    """One line of a receiver's answer, with anything that could be (part of) a secret removed."""
    text = " ".join(text.split())
    for secret in secrets:
        if not secret:
            continue
        parts = urlsplit(secret) if "://" in secret else None
        for fragment in (secret, parts.path if parts else "", parts.query if parts else ""):
            if len(fragment) >= 8:
                text = text.replace(fragment, "[redacted]")
    return text


# --- Apprise -----------------------------------------------------------------------------------------


def send_apprise(channel: Channel, notification: Notification) -> None:
    notifier = apprise.Apprise()
    if not notifier.add(_target(channel)):
        raise TransportError("apprise: the URL is not accepted by Apprise", permanent=True)
    for host in apprise_hosts(notifier):
        _refuse_internal_host(host, port=None, what="apprise")
    with public_peers_only() as guard:
        try:
            delivered = notifier.notify(title=notification.subject, body=notification.body)
        except Exception as exc:
            if guard.refused:
                raise TransportError(_INTERNAL_RECEIVER.format(what="apprise"), permanent=True) from None
            raise TransportError(f"apprise: notification failed ({type(exc).__name__})") from None
    if guard.refused:
        raise TransportError(_INTERNAL_RECEIVER.format(what="apprise"), permanent=True)
    if not delivered:
        raise TransportError("apprise: the service reported a failure")


def apprise_hosts(notifier: apprise.Apprise) -> set[str]:
    """The hosts the Apprise URL(s) chose to contact: a self-hosted service's host (json://, xml://,
    form://, ntfy://, gotify://, matrix://...: plugins with a `host` token) or, for mail, the SMTP server
    (`?smtp=`, else the URL's host; then the URL's host is only the sender's domain). Plugins with a fixed
    endpoint (discord://, tgram://...) keep tokens in `host`, not a host to contact."""
    hosts = set()
    for service in notifier:
        host = getattr(service, "smtp_host", None) or ("host" in service.template_tokens and service.host)
        if host:
            hosts.add(host.strip("[]"))
    return hosts


TRANSPORTS = {
    Channel.Kind.EMAIL: send_email,
    Channel.Kind.SLACK: send_slack,
    Channel.Kind.WEBHOOK: send_webhook,
    Channel.Kind.APPRISE: send_apprise,
}


def _target(channel: Channel) -> str:
    try:
        target = channel.get_target()
    except ValueError:
        raise TransportError(f"{channel.kind}: the stored target cannot be decrypted", permanent=True) from None
    if not target:
        raise TransportError(f"{channel.kind}: the channel has no target", permanent=True)
    return target


def _secret(channel: Channel) -> str:
    try:
        return channel.get_secret()
    except ValueError:
        raise TransportError(f"{channel.kind}: the stored secret cannot be decrypted", permanent=True) from None


# --- validating targets (API and admin) ----------------------------------------------------------------


def _names_internal_host(hostname: str) -> bool:
    """localhost, or an IP address that is not public, in any spelling the resolver accepts (2130706433,
    0x7f.1, 127.1 are 127.0.0.1). Other names are resolved when sending."""
    host = hostname.strip("[]").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return not is_public_address(host)
    except ValueError:
        pass
    try:
        return not is_public_address(socket.inet_ntoa(socket.inet_aton(host)))
    except (OSError, UnicodeError, ValueError):
        return False


def target_clean(*, kind: str, target: str) -> str:
    """Return the normalized target for a channel kind, or raise ValueError naming the problem.

    Messages never repeat the target: it may carry a token.
    """
    target = target.strip()
    if not target:
        raise ValueError("This field may not be blank.")
    if kind == Channel.Kind.EMAIL:
        addresses = _email_addresses(target)
        if not addresses:
            raise ValueError("Enter one or more email addresses, separated by commas.")
        if len(addresses) > MAX_EMAIL_RECIPIENTS:
            raise ValueError(f"At most {MAX_EMAIL_RECIPIENTS} addresses.")
        for number, address in enumerate(addresses, start=1):
            try:
                validate_email(address)
            except ValidationError:
                raise ValueError(f"Address {number} is not a valid email address.") from None
        return ", ".join(addresses)
    if kind in (Channel.Kind.SLACK, Channel.Kind.WEBHOOK):
        if any(c.isspace() or ord(c) < 32 for c in target):
            raise ValueError("A URL may not contain spaces or control characters.")
        try:
            parts = urlsplit(target)
            parts.port  # noqa: B018 - raises ValueError for a malformed port
        except ValueError:
            raise ValueError("Enter a valid URL.") from None
        if kind == Channel.Kind.SLACK:
            if parts.scheme != "https" or parts.hostname != "hooks.slack.com" or parts.path.strip("/") == "":
                raise ValueError("Enter a Slack incoming-webhook URL (https://hooks.slack.com/services/...).")
        elif parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("Enter an http:// or https:// URL with a host.")
        if not settings.PULSE_WEBHOOK_ALLOW_PRIVATE and _names_internal_host(parts.hostname):
            raise ValueError("Webhook URLs may not point at private or internal addresses.")
        return target
    if kind == Channel.Kind.APPRISE:
        notifier = apprise.Apprise()
        if not notifier.add(target):
            raise ValueError("Apprise does not accept this URL (see https://github.com/caronc/apprise/wiki).")
        if not settings.PULSE_WEBHOOK_ALLOW_PRIVATE and any(_names_internal_host(h) for h in apprise_hosts(notifier)):
            raise ValueError("Apprise URLs may not point at private or internal addresses.")
        return target
    raise ValueError(f"Unknown channel kind {kind!r}.")
