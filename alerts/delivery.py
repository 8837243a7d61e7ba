"""Sending the outbox: claim due notifications, deliver them, retry with backoff; write reminders first.

`outbox_run` is the notify job's body (scheduled apart from the checks in each runchecks process, every
5 s), so a slow or failing channel never delays checks. Several processes share the work safely:

- A claim takes due pending rows with `SELECT … FOR UPDATE SKIP LOCKED` and sets `claimed_until` (a
  lease of CLAIM_LEASE) in the same short transaction; sending happens after it commits.
- Before each send the lease is renewed with a conditional UPDATE on the claimed value; if another
  process took the row over (our lease had expired), we skip it. Results are recorded the same way.
- A process that dies after claiming loses nothing: the rows stay pending and become claimable again
  when the lease expires. Delivery is at least once; webhook payloads carry a stable `delivery` id.

Retry policy: a transient failure counts a try and schedules the next one after BACKOFF (30 s, then
2 min); the third failed try fails the notification. A permanent failure fails it at once. Either final
failure is written to the channel's `last_error`/`last_error_at`; a later success clears them.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F, Q

from alerts import transports
from alerts.models import AlertEvent, Channel, Notification
from alerts.reminders import reminders_write_due
from alerts.transports.base import TransportError

logger = logging.getLogger(__name__)

CLAIM_LEASE = timedelta(seconds=60)
MAX_TRIES = 3
BACKOFF = (timedelta(seconds=30), timedelta(minutes=2))
# Stop starting sends this long after the claim; the rest is released for the next run.
TIME_BUDGET = timedelta(seconds=40)
ERROR_MAX = 1000


def outbox_run(*, now: datetime) -> dict:
    """Write due reminders, then send due notifications; a failure writing reminders never stops sending."""
    try:
        reminders_write_due(now=now)
    except Exception:
        logger.exception("writing reminders failed; sending due notifications anyway")
    return notifications_send_due(now=now)


def notifications_send_due(*, now: datetime, limit: int = 50) -> dict:
    """Claim up to `limit` due notifications and send them; returns counts by outcome.

    Outcomes: sent, retrying (transient failure, tried again later), failed, dropped (its channel was
    deactivated), deferred (released unsent: its channel already failed in this run, or the time budget
    ran out), skipped (claim lost to another process).
    """
    started = time.monotonic()

    def clock() -> datetime:
        return now + timedelta(seconds=time.monotonic() - started)

    claimed = notifications_claim_due(now=now, limit=limit)
    counts = Counter({"claimed": len(claimed)})
    troubled: set[int] = set()
    for notification in claimed:
        if notification.channel_id in troubled or clock() - now > TIME_BUDGET:
            notification_release(notification=notification)
            counts["deferred"] += 1
            continue
        outcome = notification_deliver(notification=notification, clock=clock)
        counts[outcome] += 1
        if outcome in ("retrying", "failed"):
            # One bad channel gets one attempt per run; its other rows wait for the next run.
            troubled.add(notification.channel_id)
    return dict(counts)


def notifications_claim_due(*, now: datetime, limit: int) -> list[Notification]:
    """Lease up to `limit` pending notifications whose next try has come and that nobody holds."""
    with transaction.atomic():
        ids = list(
            Notification.objects.filter(status=Notification.Status.PENDING, next_try_at__lte=now)
            .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lte=now))
            .select_for_update(skip_locked=True, of=("self",))
            .order_by("next_try_at", "id")
            .values_list("id", flat=True)[:limit]
        )
        if ids:
            Notification.objects.filter(id__in=ids).update(claimed_until=now + CLAIM_LEASE)
    return list(
        Notification.objects.filter(id__in=ids, status=Notification.Status.PENDING)
        .select_related("channel__team", "event__alert")
        .order_by("next_try_at", "id")
    )


def notification_release(*, notification: Notification) -> bool:
    """Give a claimed notification back unsent; its next try is unchanged."""
    return bool(
        Notification.objects.filter(
            id=notification.id, status=Notification.Status.PENDING, claimed_until=notification.claimed_until
        ).update(claimed_until=None)
    )


def notification_deliver(*, notification: Notification, clock) -> str:
    """Send one claimed notification and record the outcome: sent, retrying, failed, dropped or skipped."""
    lease_until = clock() + CLAIM_LEASE
    renewed = Notification.objects.filter(
        id=notification.id, status=Notification.Status.PENDING, claimed_until=notification.claimed_until
    ).update(claimed_until=lease_until)
    if not renewed:
        logger.info("notification %s: claimed by another process meanwhile, skipped", notification.id)
        return "skipped"
    notification.claimed_until = lease_until
    channel = notification.channel
    if notification.event_id and not channel.is_active:
        # Deactivated after the row was written: drop it, without blaming the channel.
        Notification.objects.filter(id=notification.id, claimed_until=lease_until).update(
            status=Notification.Status.FAILED,
            last_error="the channel was deactivated before sending",
            claimed_until=None,
        )
        return "dropped"
    try:
        transports.send(channel, notification)
    except TransportError as exc:
        return _record_failure(notification, exc, clock())
    except Exception as exc:
        # A bug must not stop the batch. The exception text is not logged: it may contain the target URL.
        logger.error("notification %s: unexpected %s while sending", notification.id, type(exc).__name__)
        return _record_failure(notification, TransportError(f"unexpected error ({type(exc).__name__})"), clock())
    return _record_success(notification, clock())


def _record_success(notification: Notification, at: datetime) -> str:
    channel = notification.channel
    with transaction.atomic():
        # Not conditional on our claim: the message is out, so no other process should send it again.
        updated = Notification.objects.filter(id=notification.id, status=Notification.Status.PENDING).update(
            status=Notification.Status.SENT, sent_at=at, tries=F("tries") + 1, claimed_until=None, last_error=""
        )
        if not updated:
            logger.warning("notification %s: sent, but another process had already recorded it", notification.id)
            return "sent"
        if notification.event_id:
            # Written directly: `notified` is bookkeeping and never notifies again.
            AlertEvent.objects.create(
                alert_id=notification.event.alert_id,
                kind=AlertEvent.Kind.NOTIFIED,
                at=at,
                message=f"sent to {channel.name}",
            )
        if channel.last_error or channel.last_error_at:
            Channel.objects.filter(id=channel.id).update(last_error="", last_error_at=None)
    logger.info("notification %s: sent to channel %s (%s)", notification.id, channel.id, channel.kind)
    return "sent"


def _record_failure(notification: Notification, error: TransportError, at: datetime) -> str:
    channel = notification.channel
    tries = notification.tries + 1
    final = error.permanent or tries >= MAX_TRIES
    message = error.message[:ERROR_MAX]
    fields = {"tries": tries, "last_error": message, "claimed_until": None}
    if final:
        fields["status"] = Notification.Status.FAILED
    else:
        fields["next_try_at"] = at + BACKOFF[min(tries, len(BACKOFF)) - 1]
    with transaction.atomic():
        updated = Notification.objects.filter(
            id=notification.id, status=Notification.Status.PENDING, claimed_until=notification.claimed_until
        ).update(**fields)
        if updated and final:
            Channel.objects.filter(id=channel.id).update(last_error=message, last_error_at=at)
    if not updated:
        return "skipped"
    if final:
        logger.warning(
            "notification %s to channel %s (%s) failed after %s tries: %s",
            notification.id,
            channel.id,
            channel.kind,
            tries,
            message,
        )
        return "failed"
    logger.info(
        "notification %s to channel %s (%s) failed (try %s), retrying at %s: %s",
        notification.id,
        channel.id,
        channel.kind,
        tries,
        fields["next_try_at"].isoformat(),
        message,
    )
    return "retrying"
