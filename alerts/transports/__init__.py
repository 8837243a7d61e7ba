"""Delivering one rendered notification to one channel: one module per channel kind.

Each module (`mail`, `slack`, `webhook`, `apprise_url`) declares `KIND`, `send(channel, notification)`
and `clean_target(target) -> str`. What they share lives in `base` (TransportError, the timeout, stored
credentials) and `address_guard` (the SSRF guard every tenant-chosen URL goes through). Adding a
transport: one module here, one entry in TRANSPORTS, one `Channel.Kind` choice.
"""

from __future__ import annotations

from alerts.models import Channel, Notification
from alerts.transports import apprise_url, mail, slack, webhook
from alerts.transports.address_guard import is_public_address
from alerts.transports.base import TransportError

TRANSPORTS = {module.KIND: module for module in (mail, slack, webhook, apprise_url)}

__all__ = ["TRANSPORTS", "TransportError", "is_public_address", "send", "target_clean"]


def send(channel: Channel, notification: Notification) -> None:
    """Deliver `notification` through `channel`; raises TransportError."""
    transport = TRANSPORTS.get(channel.kind)
    if transport is None:
        raise TransportError(f"unknown channel kind {channel.kind!r}", permanent=True)
    transport.send(channel, notification)


def target_clean(*, kind: str, target: str) -> str:
    """Return the normalized target for a channel kind, or raise ValueError naming the problem.

    Messages never repeat the target: it may carry a token.
    """
    target = target.strip()
    if not target:
        raise ValueError("This field may not be blank.")
    transport = TRANSPORTS.get(kind)
    if transport is None:
        raise ValueError(f"Unknown channel kind {kind!r}.")
    return transport.clean_target(target)
