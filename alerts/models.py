from django.db import models

from connections.models import Connection
from monitors.models import MonitoredTable


class Alert(models.Model):
    """A problem Pulse has seen; at most one unresolved alert per (connection, table, kind)."""

    class Kind(models.TextChoices):
        FRESHNESS = "freshness"
        VOLUME = "volume"
        SCHEMA_CHANGE = "schema_change"
        NULL_RATE = "null_rate"
        ROW_COUNT = "row_count"
        CUSTOM_SQL = "custom_sql"
        REPLICATION_LAG = "replication_lag"
        CONNECTION_ERROR = "connection_error"

    class Severity(models.TextChoices):
        INFO = "info"
        WARNING = "warning"
        CRITICAL = "critical"

    class Status(models.TextChoices):
        OPEN = "open"
        ACKNOWLEDGED = "acknowledged"
        RESOLVED = "resolved"

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="alerts")
    table = models.ForeignKey(MonitoredTable, on_delete=models.CASCADE, related_name="alerts", null=True, blank=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    severity = models.CharField(max_length=8, choices=Severity.choices, default=Severity.WARNING)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.OPEN)
    message = models.TextField(blank=True, default="")
    opened_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    snoozed_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "table", "kind"],
                condition=~models.Q(status="resolved"),
                nulls_distinct=False,
                name="alert_one_unresolved_per_problem",
            ),
        ]
        indexes = [
            # the alert list filters unresolved alerts per connection.
            models.Index(fields=["connection", "status"], name="alert_connection_status"),
        ]

    def __str__(self) -> str:
        where = self.table.qualified_name if self.table_id else self.connection.name
        return f"{self.kind} on {where} ({self.status})"
