"""APScheduler jobs of runchecks: the one place where checking (monitors) and alerting (alerts) meet on a schedule.

Each process's runchecks sets `RUNTIME` before starting its own scheduler (an in-memory job store: no
job is shared between processes); jobs only *tick*: claiming due work in the database is what makes
several processes safe together. runchecks schedules these functions themselves, never their names as text.
"""

import logging

from django.db import InterfaceError, OperationalError
from django.utils import timezone
from django_apscheduler.util import close_old_connections

from alerts.delivery import outbox_run
from alerts.intake import lifecycle_backlog_run_due, results_intake
from monitors.discovery import discoveries_run_due
from monitors.heartbeat import heartbeat_beat, heartbeats_prune
from monitors.results import result_partitions_ensure, results_prune
from monitors.runner import CheckRunner

logger = logging.getLogger(__name__)
RUNTIME: dict = {}


@close_old_connections
def tick() -> None:
    """Record spooled batches, then start work on the free workers (a slow batch never holds up the next tick)."""
    runner: CheckRunner = RUNTIME["runner"]
    runner.cycle(wait=False)


@close_old_connections
def heartbeat() -> None:
    try:
        heartbeat_beat(worker=RUNTIME["worker"], started_at=RUNTIME["started_at"])
    except (OperationalError, InterfaceError):
        logger.warning("Pulse's database is unreachable: heartbeat skipped")


@close_old_connections
def notify() -> None:
    """Retry alert lifecycles that failed when their results were recorded, then run the outbox (reminders, sending).

    Apart from the checks: a slow or failing channel never delays a check."""
    now = timezone.now()
    try:
        lifecycle_backlog_run_due(now=now)
    except Exception:
        logger.exception("replaying the alert lifecycle backlog failed; sending due notifications anyway")
    outbox_run(now=now)


@close_old_connections
def discover() -> None:
    """Rediscover the connections whose discovery is enabled and due: new tables are added, dropped ones
    marked missing, with one alert per connection listing them (through the alert intake)."""
    try:
        discoveries_run_due(on_recorded=results_intake)
    except (OperationalError, InterfaceError):
        logger.warning("Pulse's database is unreachable: discovery skipped")


@close_old_connections
def housekeeping() -> None:
    """At start and every six hours: results partitions for the coming weeks, retention, old bookkeeping."""
    now = timezone.now()
    result_partitions_ensure(now=now)
    results_prune(now=now)
    heartbeats_prune(now=now)
