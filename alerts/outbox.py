"""Rendering alert notifications and writing them to the outbox.

Alert transitions write an AlertEvent; in the same transaction `notifications_for_event` renders the
message and writes one pending Notification per active channel of the alert's team. Nothing is sent
here: `alerts/delivery.py` claims due rows and sends them, so a slow or broken channel never delays a
check and a crash never loses a message.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime

from django.conf import settings
from django.db import connection as pulse_db
from django.utils import timezone

from alerts.models import Alert, AlertEvent, Channel, Notification
from monitors import checks
from monitors.database import binary_cursor
from monitors.models import CheckResult

# Events that tell people something; the others (notified, acknowledged, snoozed) are bookkeeping.
NOTIFYING_KINDS = frozenset(
    {AlertEvent.Kind.OPENED, AlertEvent.Kind.REOPENED, AlertEvent.Kind.RESOLVED, AlertEvent.Kind.REMINDED}
)

# A subject is one line (email headers, chat titles) of at most this many characters; a longer one is clipped
# with "..." (ASCII, so an email subject needs no encoding for it).
SUBJECT_MAX = 150
MESSAGE_MAX = 2000


def notifications_for_event(*, event: AlertEvent) -> list[Notification]:
    """Write a pending notification of `event` for every active channel of the alert's team.

    Call it inside the transaction that writes the event. Returns [] for events that do not notify
    (only opened, reopened, resolved and reminded do; while the alert is snoozed, i.e. `snoozed_until`
    is after the event's time, only resolved does). The rows are due at once.
    """
    return notifications_for_events(events=[event])


def notifications_for_events(*, events: list[AlertEvent]) -> list[Notification]:
    """`notifications_for_event` of many events (a batch's alerts opening together) in three statements whatever
    their number: the channels of their teams, their alerts' latest results, one INSERT of every notification.
    Notifications follow the events' order, each event's channels by id."""
    notifying = [event for event in events if event_notifies(event=event)]
    if not notifying:
        return []
    channels: dict[int, list[Channel]] = defaultdict(list)
    teams = {event.alert.connection.team_id for event in notifying}
    for channel in Channel.objects.filter(team_id__in=teams, is_active=True).order_by("id"):
        channels[channel.team_id].append(channel)
    notifying = [event for event in notifying if channels[event.alert.connection.team_id]]
    if not notifying:
        return []
    latest = _latest_results([event.alert for event in notifying])
    now = timezone.now()
    rows = []
    for event in notifying:
        message = _message_for_event(event=event, result=latest.get(event.alert.id))
        due = min(event.at, now)
        rows += [
            _notification(channel=channel, message=message, due=due, event=event)
            for channel in channels[event.alert.connection.team_id]
        ]
    return Notification.objects.bulk_create(rows)


def notification_for_channel(
    *, event: AlertEvent, channel: Channel, now: datetime | None = None
) -> Notification | None:
    """Write a pending notification of `event` for one channel (reminders); None if the event does not notify."""
    if not event_notifies(event=event):
        return None
    due = min(event.at, now or timezone.now())
    notification = _notification(channel=channel, message=message_for_event(event=event), due=due, event=event)
    notification.save()
    return notification


def notification_test(*, channel: Channel) -> Notification:
    """Write a test notification for `channel` (no event); the notifier sends it like any other."""
    team = channel.team.name
    subject = _one_line(f"[Pulse] Test notification for channel {channel.name}")
    body = (
        f"This is a test notification from Pulse for the {channel.kind} channel “{channel.name}” of team {team}.\n"
        "If you can read it, Pulse's alerts reach you here.\n\n"
        f"Pulse: {_base_url()}/admin/alerts/channel/{channel.id}/change/"
    )
    payload = {
        "event": "test",
        "subject": subject,
        "text": body,
        "alert": None,
        "channel": {"id": channel.id, "name": channel.name},
    }
    now = timezone.now()
    return Notification.objects.create(
        channel=channel, event=None, subject=subject, body=body, payload=payload, next_try_at=now
    )


def event_notifies(*, event: AlertEvent) -> bool:
    """Whether people hear of `event`; a snooze is judged at the event's time (`event.at`)."""
    if event.kind not in NOTIFYING_KINDS:
        return False
    snoozed_until = event.alert.snoozed_until
    if snoozed_until is not None and snoozed_until > event.at:
        return event.kind == AlertEvent.Kind.RESOLVED
    return True


def _notification(*, channel: Channel, message: dict, due: datetime, event: AlertEvent) -> Notification:
    return Notification(
        channel=channel,
        event=event,
        subject=message["subject"],
        body=message["body"],
        payload=message["payload"],
        status=Notification.Status.PENDING,
        next_try_at=due,
    )


# --- rendering ----------------------------------------------------------------------------------------


def message_for_event(*, event: AlertEvent) -> dict:
    """{"subject", "body", "payload"} describing the event: what, where, observed vs expected, since, links."""
    return _message_for_event(event=event, result=_latest_results([event.alert]).get(event.alert.id))


def _message_for_event(*, event: AlertEvent, result: CheckResult | None) -> dict:
    """`message_for_event` with the latest result of the alert's check (table and kind) already read."""
    alert = event.alert
    connection = alert.connection
    table = alert.table if alert.table_id else None
    label = Alert.Kind(alert.kind).label
    where = f"{table.qualified_name} on {connection.name}" if table else connection.name
    severity = alert.severity.upper()
    admin_url = f"{_base_url()}/admin/alerts/alert/{alert.id}/change/"
    api_url = f"{_base_url()}/api/alerts/{alert.id}"
    observed = _finite(result.observed_value) if result else None
    lower = _finite(result.expected_lower) if result else None
    upper = _finite(result.expected_upper) if result else None

    kind = event.kind
    who = event.actor.get_username() if event.actor_id else "hand"
    held = kind == AlertEvent.Kind.RESOLVED and alert.resolved_while_failing_at is not None  # headline says it
    if held:
        subject = f"[Pulse] Resolved by {who}, still failing: {label} on {where}"
        headline = (
            f"Resolved by {who}, but the {label.lower()} check on {where} still fails. Pulse opens no new alert "
            "for this failure; it alerts again only if the check fails after passing once."
        )
    elif kind == AlertEvent.Kind.RESOLVED and event.actor_id:
        subject = f"[Pulse] Resolved by {who}: {label} on {where}"
        headline = f"Resolved by {who}: the {label.lower()} problem on {where}."
    elif kind == AlertEvent.Kind.RESOLVED:
        subject = f"[Pulse] Resolved: {label} on {where}"
        headline = f"Resolved: the {label.lower()} problem on {where} is over."
    elif kind == AlertEvent.Kind.REMINDED:
        subject = f"[Pulse] Reminder: {label} still failing on {where}"
        headline = f"Still failing: {label.lower()} check on {where} (not acknowledged)."
    elif kind == AlertEvent.Kind.REOPENED:
        subject = f"[Pulse] {severity}: {label} failing again on {where}"
        headline = f"{label} check failing again on {where}."
    else:
        subject = f"[Pulse] {severity}: {label} failing on {where}"
        headline = f"{label} check failing on {where}."

    lines = [headline, ""]
    lines.append(f"Connection: {connection.name}" + (f" · table {table.qualified_name}" if table else ""))
    what = alert.message or (result.message if result else "")
    if what:
        lines.append(f"What: {_clip(what)}")
    if result and result.message and result.message not in alert.message:  # it may add related alerts
        lines.append(f"Latest check ({result.started_at:%Y-%m-%d %H:%M} UTC): {_clip(result.message)}")
    value_line = _value_line(alert.kind, observed, lower, upper)
    if value_line:
        lines.append(("Now: " if kind == AlertEvent.Kind.RESOLVED else "Observed: ") + value_line)
    open_for = checks.format_duration((event.at - alert.opened_at).total_seconds())
    lines.append(f"Since: {_when(alert.opened_at)} (open for {open_for})")
    if kind == AlertEvent.Kind.RESOLVED:
        lines.append(f"Resolved: {_when(alert.resolved_at or event.at)}")
    lines.append(f"Severity: {alert.severity} · status: {alert.status}")
    if event.message and event.message != alert.message and not held:
        lines.append(f"Note: {_clip(event.message)}")
    lines += ["", f"Open in Pulse: {admin_url}", f"API: {api_url}"]
    body = "\n".join(lines)
    subject = _one_line(subject)

    payload = {
        "event": kind,
        "event_id": event.id,
        "at": event.at.isoformat(),
        "subject": subject,
        "text": body,
        "alert": {
            "id": alert.id,
            "kind": alert.kind,
            "severity": alert.severity,
            "status": alert.status,
            "message": alert.message,
            "opened_at": alert.opened_at.isoformat(),
            "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
            "resolved_while_failing_at": (
                alert.resolved_while_failing_at.isoformat() if alert.resolved_while_failing_at else None
            ),
            "connection": {"id": connection.id, "name": connection.name},
            "table": {"id": table.id, "schema": table.schema_name, "name": table.table_name} if table else None,
            "observed_value": observed,
            "expected_lower": lower,
            "expected_upper": upper,
            "url": admin_url,
            "api_url": api_url,
        },
        "sent_at": None,  # set when sent
    }
    return {"subject": subject, "body": body, "payload": payload}


# What a message reads of a result, in the model's field order (the order `from_db` takes them in).
_RESULT_FIELDS = [
    f.attname
    for f in CheckResult._meta.concrete_fields
    if f.attname in {"id", "observed_value", "expected_lower", "expected_upper", "message", "started_at"}
]
_RESULT_COLUMNS = ", ".join(f"r.{name}" for name in _RESULT_FIELDS)

# The latest result of each alert's check: its table's of its kind, or for a connection-level alert the connection's
# own of its kind. Each part reads by its index, (table, kind, started_at) or (connection, kind, started_at); the
# one whose condition on p.table_id is false is not run.
_LATEST_RESULTS = f"""
SELECT p.alert_id, {_RESULT_COLUMNS}
FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::text[]) AS p(alert_id, connection_id, table_id, kind)
CROSS JOIN LATERAL (
    (SELECT * FROM {CheckResult._meta.db_table} r
     WHERE p.table_id IS NOT NULL AND r.table_id = p.table_id AND r.kind = p.kind
     ORDER BY r.started_at DESC, r.id DESC LIMIT 1)
    UNION ALL
    (SELECT * FROM {CheckResult._meta.db_table} r
     WHERE p.table_id IS NULL AND r.connection_id = p.connection_id AND r.table_id IS NULL AND r.kind = p.kind
     ORDER BY r.started_at DESC, r.id DESC LIMIT 1)
) r
"""


def _latest_results(alerts: list[Alert]) -> dict[int, CheckResult]:
    """{alert id: the latest result of its check} in one statement; the results carry the fields a message reads
    (the others are deferred)."""
    with binary_cursor() as cursor:
        cursor.execute(
            _LATEST_RESULTS,
            [
                [alert.id for alert in alerts],
                [alert.connection_id for alert in alerts],
                [alert.table_id for alert in alerts],
                [alert.kind for alert in alerts],
            ],
        )
        rows = cursor.fetchall()
    return {row[0]: CheckResult.from_db(pulse_db.alias, _RESULT_FIELDS, row[1:]) for row in rows}


def _value_line(kind: str, observed, lower, upper) -> str:
    if observed is None and lower is None and upper is None:
        return ""
    text = checks.format_value(kind, observed) if observed is not None else "unknown"
    if lower is not None and upper is not None:
        text += f" — expected between {checks.format_value(kind, lower)} and {checks.format_value(kind, upper)}"
    elif upper is not None:
        text += f" — expected at most {checks.format_value(kind, upper)}"
    elif lower is not None:
        text += f" — expected at least {checks.format_value(kind, lower)}"
    return text


def _when(at: datetime) -> str:
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _finite(value):
    """JSON (and PostgreSQL's jsonb) has no NaN or Infinity."""
    if value is None or not math.isfinite(value):
        return None
    return value


def _clip(text: str) -> str:
    return text if len(text) <= MESSAGE_MAX else text[: MESSAGE_MAX - 1] + "…"


def _one_line(text: str) -> str:
    text = " ".join(text.split())  # newlines in a subject would break an email header
    return text if len(text) <= SUBJECT_MAX else text[: SUBJECT_MAX - 3].rstrip() + "..."


def _base_url() -> str:
    return settings.PULSE_BASE_URL.rstrip("/")
