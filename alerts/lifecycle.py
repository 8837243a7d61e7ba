"""When alerts open, change state and resolve."""

from django.utils import timezone

from alerts.models import Alert


class AlertStateError(Exception):
    """The requested transition is not allowed from the alert's current state."""


def alert_acknowledge(*, alert: Alert) -> Alert:
    """Keep the alert open but stop reminders."""
    if alert.status == Alert.Status.RESOLVED:
        raise AlertStateError("A resolved alert cannot be acknowledged.")
    alert.status = Alert.Status.ACKNOWLEDGED
    alert.save(update_fields=["status"])
    return alert


def alert_resolve(*, alert: Alert) -> Alert:
    """Close the alert by hand; a new failure streak opens a new one."""
    if alert.status == Alert.Status.RESOLVED:
        raise AlertStateError("The alert is already resolved.")
    alert.status = Alert.Status.RESOLVED
    alert.resolved_at = timezone.now()
    alert.save(update_fields=["status", "resolved_at"])
    return alert
