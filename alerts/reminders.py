"""Reminders: an open alert nobody acknowledged is announced again on channels that ask for it."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Max, Q

from alerts.models import Alert, AlertEvent, Channel, Notification
from alerts.outbox import notification_for_channel


def reminders_write_due(*, now: datetime) -> int:
    """Remind about open, unacknowledged, unsnoozed alerts on channels with a reminder interval.

    For each such alert and channel, when the last notification of the alert to the channel (or, with
    none, the alert's opening) is at least the interval old, write a `reminded` event and its
    notification for that channel. A channel starts with the alerts that open after it was created: an
    alert that was already open, and that the channel has heard nothing of since, is not reminded of
    unless the channel has `remind_earlier_alerts`. Returns the number written. Alerts are locked (SKIP
    LOCKED) while deciding, so concurrent processes never remind twice.
    """
    channels_by_team: dict[int, list[Channel]] = defaultdict(list)
    channels = Channel.objects.filter(is_active=True, reminder_interval_minutes__isnull=False).order_by("id")
    for channel in channels:
        channels_by_team[channel.team_id].append(channel)
    if not channels_by_team:
        return 0
    written = 0
    with transaction.atomic():
        alerts = list(
            Alert.objects.filter(status=Alert.Status.OPEN, connection__team_id__in=list(channels_by_team))
            .filter(Q(snoozed_until__isnull=True) | Q(snoozed_until__lte=now))
            .select_for_update(skip_locked=True, of=("self",))
            .select_related("connection", "table")
            .order_by("id")
        )
        if not alerts:
            return 0
        last_notified = {
            (row["channel_id"], row["event__alert_id"]): row["last"]
            for row in Notification.objects.filter(
                channel__in=[c for team in channels_by_team.values() for c in team],
                event__alert__in=[alert.id for alert in alerts],
            )
            .values("channel_id", "event__alert_id")
            .annotate(last=Max("event__at"))
        }
        for alert in alerts:
            for channel in channels_by_team[alert.connection.team_id]:
                since = last_notified.get((channel.id, alert.id))
                if since is None:
                    if alert.opened_at < channel.created_at and not channel.remind_earlier_alerts:
                        continue
                    since = alert.opened_at
                if now - since < timedelta(minutes=channel.reminder_interval_minutes):
                    continue
                event = AlertEvent.objects.create(
                    alert=alert, kind=AlertEvent.Kind.REMINDED, at=now, message=f"reminder to {channel.name}"
                )
                if notification_for_channel(event=event, channel=channel, now=now):
                    written += 1
    return written
