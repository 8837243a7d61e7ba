"""APScheduler job functions of runchecks.

Each process's runchecks sets `RUNTIME` before starting its own scheduler (an in-memory job store: no
job is shared between processes); jobs only *tick*: claiming due work in the database is what makes
several processes safe together.
"""

import logging

from django.db import InterfaceError, OperationalError
from django.utils import timezone
from django_apscheduler.models import DjangoJobExecution
from django_apscheduler.util import close_old_connections

from monitors.runner import CheckRunner, heartbeat_beat, heartbeats_prune, results_prune

logger = logging.getLogger(__name__)
RUNTIME: dict = {}
JOB_EXECUTION_MAX_AGE_SECONDS = 7 * 24 * 3600


@close_old_connections
def tick() -> None:
    runner: CheckRunner = RUNTIME["runner"]
    runner.cycle(wait=False)  # starts work on the free workers; a slow batch never holds up the next tick


@close_old_connections
def heartbeat() -> None:
    try:
        heartbeat_beat(worker=RUNTIME["worker"], started_at=RUNTIME["started_at"])
    except (OperationalError, InterfaceError):
        logger.warning("Pulse's database is unreachable: heartbeat skipped")


@close_old_connections
def housekeeping() -> None:
    now = timezone.now()
    results_prune(now=now)
    heartbeats_prune(now=now)
    DjangoJobExecution.objects.delete_old_job_executions(JOB_EXECUTION_MAX_AGE_SECONDS)
