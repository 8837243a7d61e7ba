"""Slack channels: an incoming-webhook URL on hooks.slack.com; the message is posted as mrkdwn text."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings

from alerts.models import Channel, Notification
from alerts.transports import address_guard, base

KIND = Channel.Kind.SLACK


def send(channel: Channel, notification: Notification) -> None:
    url = base.target(channel)
    text = f"*{_escape(notification.subject)}*\n{_escape(notification.body)}"
    address_guard.post_guarded(url, what="slack", json_body={"text": text}, secrets=(url,))


def clean_target(target: str) -> str:
    problem = base.url_problem(target)
    if problem:
        raise ValueError(problem)
    parts = urlsplit(target)
    if parts.scheme != "https" or parts.hostname != "hooks.slack.com" or parts.path.strip("/") == "":
        raise ValueError("Enter a Slack incoming-webhook URL (https://hooks.slack.com/services/...).")
    if not settings.PULSE_WEBHOOK_ALLOW_PRIVATE and address_guard.names_internal_host(parts.hostname):
        raise ValueError(address_guard.INTERNAL_TARGET.format(what="Slack"))
    return target


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
