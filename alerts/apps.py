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


def _on_table_rebaselined(sender, *, table, **kwargs):
    from alerts.lifecycle import volume_alert_resolve_for_rebaseline

    volume_alert_resolve_for_rebaseline(table=table)


class AlertsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "alerts"

    def ready(self):
        from monitors.signals import results_recorded, table_rebaselined

        results_recorded.connect(_on_results_recorded, dispatch_uid="alerts.lifecycle")
        table_rebaselined.connect(_on_table_rebaselined, dispatch_uid="alerts.rebaseline")
