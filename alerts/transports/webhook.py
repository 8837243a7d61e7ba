"""Webhook channels: the notification's JSON payload, POSTed and signed with the channel's secret.

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
import json
import time
from urllib.parse import urlsplit

from django.conf import settings
from django.utils import timezone

from alerts.models import Channel, Notification
from alerts.transports import address_guard, base
from alerts.transports.base import TransportError

KIND = Channel.Kind.WEBHOOK


def send(channel: Channel, notification: Notification) -> None:
    url = base.target(channel)
    secret = base.secret(channel)
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
    address_guard.post_guarded(url, what="webhook", data=body, headers=headers, secrets=(url, secret))


def webhook_signature(*, secret: str, timestamp: str, body: bytes) -> str:
    """Hex HMAC-SHA256 of "<timestamp>.<body>" keyed with the secret's UTF-8 bytes."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def clean_target(target: str) -> str:
    problem = base.url_problem(target)
    if problem:
        raise ValueError(problem)
    parts = urlsplit(target)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("Enter an http:// or https:// URL with a host.")
    if not settings.PULSE_WEBHOOK_ALLOW_PRIVATE and address_guard.names_internal_host(parts.hostname):
        raise ValueError(address_guard.INTERNAL_TARGET.format(what="Webhook"))
    return target
