"""Liveness of the `runchecks` daemon, as /api/health reports it."""

from datetime import datetime, timedelta

from django.conf import settings

from monitors.models import SchedulerHeartbeat


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
