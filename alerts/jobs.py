"""APScheduler jobs of the alerts app, run by runchecks (which names them as text: monitors never imports alerts)."""

import logging

from django.utils import timezone
from django_apscheduler.util import close_old_connections

from alerts import delivery

logger = logging.getLogger(__name__)


@close_old_connections
def notify() -> None:
    """Write due reminders, then send due notifications (the outbox), apart from the checks."""
    now = timezone.now()
    try:
        delivery.reminders_write_due(now=now)
    except Exception:
        logger.exception("writing reminders failed; sending due notifications anyway")
    delivery.notifications_send_due(now=now)
