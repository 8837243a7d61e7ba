"""Delivering one rendered notification to one channel: one function per channel kind.

Every transport raises a single error type, `TransportError(message, permanent)`:

- permanent (`permanent=True`): retrying cannot help — HTTP 4xx other than 429, a redirect, a refused
  recipient, an invalid or undecryptable target, a receiver on a private or internal address (unless
  PULSE_WEBHOOK_ALLOW_PRIVATE; checked against every address the host name resolves to before
  connecting, and against the address the socket reached, in case the DNS answer changed). The notifier
  fails the notification at once and shows the error on the channel.
- transient (`permanent=False`): HTTP 429 and 5xx, timeouts (10 s), connection errors, an Apprise
  service that reported failure. The notifier retries with backoff.

Slack and webhook URLs and Apprise URLs carry credentials, so error messages name the channel kind and
the HTTP status but never the URL, the secret or the underlying exception text (which often contains the
URL); exceptions are raised `from None` so no traceback carries them either.

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

import hashlib
import hmac
import ipaddress
import json
import logging
import smtplib
import socket
import time
from urllib.parse import urlsplit

import apprise
import requests
from django.conf import settings
from django.core import mail
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils import timezone
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

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
    try:
        with requests.Session() as session:
            session.mount("http://", _PublicPeerAdapter())
            session.mount("https://", _PublicPeerAdapter())
            response = session.post(
                url,
                json=json_body,
                data=data,
                headers={"User-Agent": USER_AGENT, **(headers or {})},
                timeout=TIMEOUT_SECONDS,
                allow_redirects=False,
            )
    except InternalPeer:
        raise TransportError(_INTERNAL_RECEIVER.format(what=what), permanent=True) from None
    except requests.Timeout:
        raise TransportError(f"{what}: no answer within {TIMEOUT_SECONDS:g} s") from None
    except requests.ConnectionError:
        raise TransportError(f"{what}: could not connect to the receiver") from None
    except requests.RequestException as exc:
        # InvalidURL, MissingSchema, InvalidHeader...: the stored target is unusable.
        raise TransportError(f"{what}: invalid request ({type(exc).__name__})", permanent=True) from None
    if 200 <= response.status_code < 300:
        return
    detail = _scrub(response.text[:200], secrets)
    message = f"{what}: receiver answered HTTP {response.status_code}" + (f": {detail}" if detail else "")
    transient = response.status_code == 429 or response.status_code >= 500
    raise TransportError(message, permanent=not transient)


def _refuse_internal_receiver(url: str, *, what: str) -> None:
    """Unless PULSE_WEBHOOK_ALLOW_PRIVATE, every address the receiver's host resolves to must be public."""
    if settings.PULSE_WEBHOOK_ALLOW_PRIVATE:
        return
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = {info[4][0] for info in socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)}
    except (OSError, UnicodeError, ValueError):
        raise TransportError(f"{what}: could not resolve the receiver's host name") from None
    if not all(is_public_address(address) for address in addresses):
        raise TransportError(_INTERNAL_RECEIVER.format(what=what), permanent=True)


_INTERNAL_RECEIVER = (
    "{what}: the receiver's host resolves to a private or internal address; refused "
    "(PULSE_WEBHOOK_ALLOW_PRIVATE allows it)"
)


class InternalPeer(Exception):
    """The socket connected to a non-public address although the host name had resolved to public ones."""


class _PublicPeerMixin:
    """Checks the address a new socket actually reached: closes the gap of a DNS answer changing after
    `_refuse_internal_receiver` looked (DNS rebinding)."""

    def _new_conn(self):
        sock = super()._new_conn()
        if not settings.PULSE_WEBHOOK_ALLOW_PRIVATE and not is_public_address(sock.getpeername()[0]):
            sock.close()
            raise InternalPeer
        return sock


class _PublicHTTPConnection(_PublicPeerMixin, HTTPConnection):
    pass


class _PublicHTTPSConnection(_PublicPeerMixin, HTTPSConnection):
    pass


class _PublicHTTPPool(HTTPConnectionPool):
    ConnectionCls = _PublicHTTPConnection


class _PublicHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _PublicHTTPSConnection


class _PublicPeerAdapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _PublicHTTPPool, "https": _PublicHTTPSPool}


def is_public_address(address: str) -> bool:
    """True for a globally routable unicast IP address (IPv4-mapped IPv6 judged as its IPv4)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
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
    try:
        delivered = notifier.notify(title=notification.subject, body=notification.body)
    except Exception as exc:
        raise TransportError(f"apprise: notification failed ({type(exc).__name__})") from None
    if not delivered:
        raise TransportError("apprise: the service reported a failure")


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
    """An IP literal that is not public, or localhost. Names are resolved (again) when sending."""
    if hostname == "localhost" or hostname.endswith(".localhost"):
        return True
    try:
        return not is_public_address(hostname)
    except ValueError:
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
        if not apprise.Apprise().add(target):
            raise ValueError("Apprise does not accept this URL (see https://github.com/caronc/apprise/wiki).")
        return target
    raise ValueError(f"Unknown channel kind {kind!r}.")
