"""APScheduler job functions (module-level, so the Django job store can reference them).

Each process's runchecks sets `RUNTIME` before starting its scheduler; jobs only *tick*: claiming due
work in the database is what makes several processes safe together.
"""

import logging

from django.utils import timezone
from django_apscheduler.models import DjangoJobExecution
from django_apscheduler.util import close_old_connections

from monitors import daemon

logger = logging.getLogger(__name__)

RUNTIME: dict = {}
JOB_EXECUTION_MAX_AGE_SECONDS = 7 * 24 * 3600


@close_old_connections
def tick() -> None:
    runner: daemon.CheckRunner = RUNTIME["runner"]
    runner.cycle()


@close_old_connections
def heartbeat() -> None:
    daemon.heartbeat_beat(worker=RUNTIME["worker"], started_at=RUNTIME["started_at"])


@close_old_connections
def housekeeping() -> None:
    now = timezone.now()
    daemon.results_prune(now=now)
    daemon.heartbeats_prune(now=now)
    DjangoJobExecution.objects.delete_old_job_executions(JOB_EXECUTION_MAX_AGE_SECONDS)


@close_old_connections
def notify() -> None:
    """Write due reminders, then send due notifications (the outbox), apart from the checks."""
    from alerts import notifier  # alerts builds on monitors; import at call time to keep that direction

    now = timezone.now()
    try:
        notifier.reminders_write_due(now=now)
    except Exception:
        logger.exception("writing reminders failed; sending due notifications anyway")
    notifier.notifications_send_due(now=now)
