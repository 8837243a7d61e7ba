"""Liveness of the `runchecks` daemon: each process's beat, their pruning, and what /api/health reports."""

from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from monitors.models import SchedulerHeartbeat


def heartbeat_beat(*, worker: str, started_at) -> None:
    now = timezone.now()
    SchedulerHeartbeat.objects.update_or_create(worker=worker, defaults={"beat_at": now, "started_at": started_at})


def heartbeats_prune(*, now, older_than: timedelta = timedelta(days=1)) -> int:
    return SchedulerHeartbeat.objects.filter(beat_at__lt=now - older_than).delete()[0]


def scheduler_status(*, now: datetime) -> dict:
    """`never` before any runchecks beat, `stale` when the newest beat is too old, else `ok`."""
    latest = SchedulerHeartbeat.objects.order_by("-beat_at").first()
    if latest is None:
        return {"status": "never", "last_heartbeat_at": None}
    stale_after = timedelta(seconds=settings.PULSE_HEARTBEAT_STALE_SECONDS)
    fresh_workers = SchedulerHeartbeat.objects.filter(beat_at__gte=now - stale_after).count()
    return {
        "status": "ok" if now - latest.beat_at <= stale_after else "stale",
        "last_heartbeat_at": latest.beat_at.isoformat(),
        "workers": fresh_workers,
    }
