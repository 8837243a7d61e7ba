import logging

from django.apps import AppConfig
from django.db import transaction

logger = logging.getLogger(__name__)


def _on_results_recorded(sender, *, connection, results, **kwargs):
    """Alert lifecycle for freshly recorded results, in their transaction; a bug here never loses results."""
    from alerts.lifecycle import results_process

    try:
        with transaction.atomic():
            results_process(connection=connection, results=results)
    except Exception:
        logger.exception("alert lifecycle failed for a batch of connection %s", connection.pk)


class AlertsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "alerts"

    def ready(self):
        from monitors.signals import results_recorded

        results_recorded.connect(_on_results_recorded, dispatch_uid="alerts.lifecycle")
