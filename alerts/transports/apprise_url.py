"""Apprise channels: one Apprise URL (https://github.com/caronc/apprise/wiki), under the same address guard."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings

from alerts.models import Channel, Notification
from alerts.transports import address_guard, base
from alerts.transports.base import TransportError

if TYPE_CHECKING:
    import apprise

KIND = Channel.Kind.APPRISE


def send(channel: Channel, notification: Notification) -> None:
    import apprise  # imported when used: it costs runchecks' start-up a tenth of a second

    notifier = apprise.Apprise()
    if not notifier.add(base.target(channel)):
        raise TransportError("apprise: the URL is not accepted by Apprise", permanent=True)
    for host in apprise_hosts(notifier):
        address_guard.refuse_internal_host(host, port=None, what="apprise")
    refused = TransportError(address_guard.INTERNAL_RECEIVER.format(what="apprise"), permanent=True)
    with address_guard.public_peers_only() as guard:
        try:
            delivered = notifier.notify(title=notification.subject, body=notification.body)
        except Exception as exc:
            if guard.refused:
                raise refused from None
            raise TransportError(f"apprise: notification failed ({type(exc).__name__})") from None
    if guard.refused:
        raise refused
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


def clean_target(target: str) -> str:
    import apprise

    notifier = apprise.Apprise()
    if not notifier.add(target):
        raise ValueError("Apprise does not accept this URL (see https://github.com/caronc/apprise/wiki).")
    if not settings.PULSE_WEBHOOK_ALLOW_PRIVATE and any(
        address_guard.names_internal_host(host) for host in apprise_hosts(notifier)
    ):
        raise ValueError(address_guard.INTERNAL_TARGET.format(what="Apprise"))
    return target
