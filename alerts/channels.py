"""Channels: the one set of rules for creating and changing where a team's notifications go.

The API serializer and the admin form both call these functions and take their field limits from the
constants below, so a channel the API refuses the admin refuses too. `target` (addresses or URL) and
`secret` (the webhook signing key) are stored encrypted; a webhook created without a secret gets a
generated one, which the caller shows once.
"""

from __future__ import annotations

import secrets

from django.contrib.auth.models import Group
from django.db import transaction

from alerts.models import Channel
from alerts.transports import target_clean

REMINDER_MAX_MINUTES = 7 * 24 * 60
TARGET_MAX_LENGTH = 2000
SECRET_MIN_LENGTH = 16
SECRET_MAX_LENGTH = 200

TARGET_HELP = (
    "email: comma-separated addresses; slack: https://hooks.slack.com/… URL; webhook: http(s) URL; "
    "apprise: an Apprise URL. Stored encrypted."
)


def channel_problems(
    *,
    kind: str | None,
    target: str | None,
    secret: str | None,
    instance: Channel | None,
    team: Group | None = None,
) -> dict[str, str]:
    """What is wrong with creating (`instance` None) or changing a channel, by field; {} when nothing is.

    `target`/`secret`/`team` None: not given (kept on a change). Messages never repeat the target.
    """
    problems = {}
    if instance is not None and team is not None and team.pk != instance.team_id:
        problems["team"] = "A channel cannot move to another team."
    if instance is not None and kind is not None and kind != instance.kind:
        problems["kind"] = "A channel's kind cannot change; create a new channel."
        return problems
    kind = kind if kind is not None else (instance.kind if instance is not None else None)
    if target is not None:
        try:
            target_clean(kind=kind, target=target)
        except ValueError as exc:
            problems["target"] = str(exc)
    elif instance is None or not instance.target_encrypted:
        problems["target"] = "This field is required."
    if secret and kind != Channel.Kind.WEBHOOK:
        problems["secret"] = "Only webhook channels have a signing secret."
    return problems


def channel_create(
    *,
    team: Group,
    name: str,
    kind: str,
    target: str,
    secret: str | None = None,
    reminder_interval_minutes: int | None = None,
    remind_earlier_alerts: bool = False,
    is_active: bool = True,
    managed_by: str = "",
) -> tuple[Channel, str | None]:
    """Create a channel; returns it and, for a webhook created without a secret, the generated one.

    Reminders start with the alerts that open after the channel, unless `remind_earlier_alerts`."""
    channel = Channel(
        team=team,
        name=name,
        kind=kind,
        reminder_interval_minutes=reminder_interval_minutes,
        remind_earlier_alerts=remind_earlier_alerts,
        is_active=is_active,
        managed_by=managed_by,
    )
    channel.set_target(target_clean(kind=kind, target=target))
    generated = None
    if kind == Channel.Kind.WEBHOOK:
        if not secret:
            secret = generated = secrets.token_urlsafe(32)
        channel.set_secret(secret)
    with transaction.atomic():
        channel.save()
    return channel, generated


def channel_update(*, channel: Channel, **fields) -> Channel:
    """Change a channel: `target` and `secret` are encrypted (a blank or missing one keeps the stored
    value); `name`, `reminder_interval_minutes`, `remind_earlier_alerts`, `is_active` and `managed_by` (the
    monitors-as-code file that manages it) are set. Team and kind never change."""
    target = fields.pop("target", None)
    secret = fields.pop("secret", None)
    fields.pop("team", None)
    fields.pop("kind", None)
    if target:
        channel.set_target(target_clean(kind=channel.kind, target=target))
    if secret:
        channel.set_secret(secret)
    for field, value in fields.items():
        setattr(channel, field, value)
    channel.save()
    return channel
