from django.conf import settings
from django.contrib.auth.models import Group
from django.contrib.postgres.fields import ArrayField
from django.db import models

from common.managed import managed_by_field
from common.secrets import decrypt_secret, encrypt_secret
from connections.models import Connection
from monitors.checks import CheckKind
from monitors.models import MonitoredTable

# Every check kind (from the monitors registry), plus the connection-level problem of checks not running.
AlertKind = models.TextChoices(
    "AlertKind",
    [(member.name, (member.value, member.label)) for member in CheckKind]
    + [("CONNECTION_ERROR", ("connection_error", "Connection error"))],
)


class Alert(models.Model):
    """A problem Pulse has seen; at most one unresolved alert per (connection, table, kind)."""

    Kind = AlertKind

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
    resolved_while_failing_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Resolved by hand while its check still failed: the time of that failing run. The same failure "
        "opens no new alert; only a failure after a passing run (later than this) alerts again.",
    )

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
            # the alert list, newest first: read in index order instead of sorting a team's every alert.
            models.Index(fields=["-opened_at", "-id"], name="alert_latest"),
        ]

    def __str__(self) -> str:
        where = self.table.qualified_name if self.table_id else self.connection.name
        return f"{self.kind} on {where} ({self.status})"


class AlertEvent(models.Model):
    """One transition of an alert; notifications are written for it in the same transaction (outbox)."""

    class Kind(models.TextChoices):
        OPENED = "opened"
        REOPENED = "reopened"
        NOTIFIED = "notified"
        REMINDED = "reminded"
        ACKNOWLEDGED = "acknowledged"
        SNOOZED = "snoozed"
        RESOLVED = "resolved"

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    at = models.DateTimeField()
    message = models.TextField(blank=True, default="")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["alert", "at"], name="alertevent_alert_at")]

    def __str__(self) -> str:
        return f"{self.kind} @ {self.at:%Y-%m-%d %H:%M}"


class Channel(models.Model):
    """Where a team's alert notifications go."""

    class Kind(models.TextChoices):
        EMAIL = "email"
        SLACK = "slack"
        WEBHOOK = "webhook"
        APPRISE = "apprise"

    team = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="channels")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    # email: comma-separated addresses; slack/webhook: URL; apprise: an Apprise URL. Encrypted: URLs carry tokens.
    target_encrypted = models.TextField(blank=True, default="", editable=False)
    # webhook: the HMAC-SHA256 signing secret. Encrypted.
    secret_encrypted = models.TextField(blank=True, default="", editable=False)
    reminder_interval_minutes = models.PositiveIntegerField(
        null=True, blank=True, help_text="Remind while an alert stays open and unacknowledged; empty: never."
    )
    remind_earlier_alerts = models.BooleanField(
        default=False,
        help_text="Also remind of alerts that were already open when the channel was created; "
        "otherwise the channel starts with the alerts that open after it.",
    )
    is_active = models.BooleanField(default=True)
    last_error = models.TextField(blank=True, default="", editable=False)
    last_error_at = models.DateTimeField(null=True, blank=True, editable=False)
    managed_by = managed_by_field()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    MANAGED_FIELDS = ("team", "name", "kind", "target", "secret", "reminder_interval_minutes", "remind_earlier_alerts")

    class Meta:
        ordering = ["team_id", "name"]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="channel_unique_name_per_team")]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"

    def set_target(self, plaintext: str) -> None:
        self.target_encrypted = encrypt_secret(plaintext)

    def get_target(self) -> str:
        return decrypt_secret(self.target_encrypted)

    def set_secret(self, plaintext: str) -> None:
        self.secret_encrypted = encrypt_secret(plaintext)

    def get_secret(self) -> str:
        return decrypt_secret(self.secret_encrypted)


class Notification(models.Model):
    """Outbox row: one message for one channel, rendered when written, sent later by the notifier."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed"

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="notifications")
    event = models.ForeignKey(
        AlertEvent,
        on_delete=models.CASCADE,
        related_name="notifications",
        null=True,
        blank=True,
        help_text="Empty for test notifications.",
    )
    subject = models.CharField(max_length=300)
    body = models.TextField()
    payload = models.JSONField(default=dict)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    tries = models.PositiveSmallIntegerField(default=0)
    next_try_at = models.DateTimeField()
    claimed_until = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # the notifier's scan: pending rows whose next try has come.
            models.Index(fields=["next_try_at"], name="notification_due", condition=models.Q(status="pending")),
        ]

    def __str__(self) -> str:
        return f"{self.subject} → {self.channel} ({self.status})"


class LifecycleBacklog(models.Model):
    """A batch of recorded results whose alert lifecycle failed; the notify job replays it later.

    Written by `alerts.intake.results_intake` in the transaction that records the results, so a bug or a
    passing database error in alerting never loses the alerts those results should open or resolve.
    """

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="+")
    result_ids = ArrayField(models.BigIntegerField())
    error = models.CharField(max_length=200, help_text="The exception's class name (its text may hold data).")
    tries = models.PositiveSmallIntegerField(default=0)
    next_try_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["next_try_at", "id"]
        indexes = [models.Index(fields=["next_try_at"], name="lifecyclebacklog_due")]

    def __str__(self) -> str:
        return f"{len(self.result_ids)} result(s) of connection {self.connection_id} ({self.error}, {self.tries} tries)"
