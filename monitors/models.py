from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from common.managed import managed_by_field
from connections.models import Connection
from monitors import checks

# The kinds and statuses are declared once, by the check modules (monitors/checks/); these are their names here.
CheckKind = checks.CheckKind


class DueAt(models.Func):
    """A table's due time for claims and their indexes: never checked (NULL) sorts first, as due long ago."""

    template = "COALESCE(%(expressions)s, '-infinity'::timestamptz)"
    output_field = models.DateTimeField()


class MonitoredTable(models.Model):
    """A table on a replica that Pulse checks on a schedule."""

    class Direction(models.TextChoices):
        BOTH = "both"
        SPIKE = "spike"
        DROP = "drop"

    class Seasonality(models.TextChoices):
        AUTO = "auto"
        NONE = "none"
        HOUR_OF_DAY = "hour_of_day"
        DAY_OF_WEEK = "day_of_week"
        HOUR_OF_WEEK = "hour_of_week"

    class SensitivityPreset(models.TextChoices):
        CUSTOM = "", "custom (the numeric sensitivity)"
        LOW = "low"
        MEDIUM = "medium"
        HIGH = "high"

    class Status(models.TextChoices):
        UNKNOWN = "unknown"
        LEARNING = "learning"
        HEALTHY = "healthy"
        FAILING = "failing"
        ERROR = "error"
        PAUSED = "paused"
        MISSING = "missing"  # gone from the replica's catalog at the last discovery: not checked, history kept

    class ChosenBy(models.TextChoices):
        USER = "user"
        DISCOVERY = "discovery"

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="tables")
    schema_name = models.CharField(max_length=63, default="public")
    table_name = models.CharField(max_length=63)
    timestamp_column = models.CharField(
        max_length=63, blank=True, default="", help_text="Enables freshness and time-bucketed volume checks."
    )
    # Who chose the timestamp column: a user's choice is kept across rediscovery; discovery says why it chose.
    timestamp_column_chosen_by = models.CharField(
        max_length=9, choices=ChosenBy.choices, default=ChosenBy.USER, db_default=ChosenBy.USER, editable=False
    )
    timestamp_column_reason = models.TextField(blank=True, default="", db_default="", editable=False)
    discovered_at = models.DateTimeField(null=True, blank=True, editable=False)
    missing_since = models.DateTimeField(null=True, blank=True, editable=False)
    freshness_threshold_minutes = models.PositiveIntegerField(
        default=60, validators=[MinValueValidator(1), MaxValueValidator(525_600)]
    )
    check_interval_seconds = models.PositiveIntegerField(
        default=300, validators=[MinValueValidator(10), MaxValueValidator(604_800)]
    )
    failure_threshold = models.PositiveSmallIntegerField(
        default=2,
        validators=[MinValueValidator(1), MaxValueValidator(10)],
        help_text="Consecutive failing runs before an alert opens.",
    )
    # Volume anomaly detection (monitors/baselines.py).
    sensitivity = models.FloatField(
        default=3.5,
        validators=[MinValueValidator(1.0), MaxValueValidator(20.0)],
        help_text="Modified z-score beyond which a value is anomalous.",
    )
    sensitivity_preset = models.CharField(
        max_length=6,
        choices=SensitivityPreset.choices,
        blank=True,
        default=SensitivityPreset.CUSTOM,
        db_default=SensitivityPreset.CUSTOM,
        help_text="low / medium / high replace the numeric sensitivity (thresholds in the README); empty: use it.",
    )
    direction = models.CharField(max_length=5, choices=Direction.choices, default=Direction.BOTH)
    seasonality = models.CharField(max_length=12, choices=Seasonality.choices, default=Seasonality.AUTO)
    min_relative_change = models.FloatField(
        default=0.0,
        validators=[MinValueValidator(0.0), MaxValueValidator(100.0)],
        help_text="Ignore deviations smaller than this fraction of the expected value (0.1 = 10%).",
    )
    min_absolute_change = models.FloatField(
        default=3.0,
        validators=[MinValueValidator(0.0), MaxValueValidator(1e15)],
        help_text="Ignore deviations smaller than this many rows.",
    )
    quiet_on_holidays = models.BooleanField(
        default=False,
        db_default=False,
        help_text="Quiet on its connection's holidays: those days are judged as the table's quietest weekday.",
    )
    baseline_since = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text=(
            "Start of the current level (set by rebaseline or an accepted level shift): older values train only "
            "the seasonal shape, rescaled to the level since."
        ),
    )
    backfilled_at = models.DateTimeField(null=True, blank=True, editable=False)
    # The volume series the stored history belongs to ("total_rows" or "rows:<column>:<width>") and the
    # width of its buckets, chosen from the table's rate when the series starts (monitors/checks/volume.py).
    volume_series = models.CharField(max_length=100, blank=True, default="", db_default="", editable=False)
    volume_bucket_seconds = models.PositiveIntegerField(default=3600, db_default=3600, editable=False)
    is_active = models.BooleanField(default=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.UNKNOWN, editable=False)
    last_checked_at = models.DateTimeField(null=True, blank=True, editable=False)
    next_check_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True, default="", editable=False)
    # Lease of the runchecks process that claimed the table; the token makes recording exactly-once.
    lease_token = models.UUIDField(null=True, blank=True, editable=False)
    lease_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Columns accepted as the reference for schema_change; replaced when its alert is resolved.
    schema_reference = models.JSONField(null=True, blank=True, editable=False)
    # Planner estimates of the built-in queries: {query_key: {"cost": float, "at": iso time}}.
    plan_costs = models.JSONField(default=dict, blank=True, editable=False)
    # The last distinct max(timestamp_column) values seen: the table's update cadence, for freshness.
    update_times = models.JSONField(default=list, blank=True, editable=False)
    managed_by = managed_by_field()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # What a monitors-as-code file sets (common/managed.py): refused elsewhere while the table is managed.
    MANAGED_FIELDS = (
        "connection",
        "schema_name",
        "table_name",
        "timestamp_column",
        "freshness_threshold_minutes",
        "check_interval_seconds",
        "failure_threshold",
        "sensitivity",
        "sensitivity_preset",
        "direction",
        "seasonality",
        "min_relative_change",
        "min_absolute_change",
        "quiet_on_holidays",
    )

    class Meta:
        ordering = ["connection_id", "schema_name", "table_name"]
        indexes = [
            # runchecks' claims (monitors/claims.py) read these in order and stop at the batch: the most overdue
            # table of any connection, then the batch of that connection's due tables.
            models.Index(DueAt("next_check_at"), "id", name="table_due", condition=models.Q(is_active=True)),
            models.Index(
                "connection",
                DueAt("next_check_at"),
                "id",
                name="table_due_per_connection",
                condition=models.Q(is_active=True),
            ),
            # /api/tables reads a page's ids in list order from this index alone, however deep the page.
            models.Index(fields=["connection", "schema_name", "table_name"], include=["id"], name="table_list_order"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "schema_name", "table_name"], name="monitoredtable_unique_per_connection"
            ),
            models.CheckConstraint(
                condition=models.Q(check_interval_seconds__gte=10), name="monitoredtable_min_interval"
            ),
            models.CheckConstraint(
                condition=models.Q(failure_threshold__gte=1, failure_threshold__lte=10),
                name="monitoredtable_failure_threshold_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.schema_name}.{self.table_name}"

    @property
    def qualified_name(self) -> str:
        return f"{self.schema_name}.{self.table_name}"


class DiscoveryPolicy(models.Model):
    """How Pulse discovers a connection's tables (monitors/discovery.py): scope, schedule and new tables' defaults."""

    connection = models.OneToOneField(Connection, on_delete=models.CASCADE, related_name="discovery")
    is_enabled = models.BooleanField(
        default=False, help_text="Rediscover on a schedule: add new tables, mark dropped ones missing."
    )
    interval_minutes = models.PositiveIntegerField(
        default=60, validators=[MinValueValidator(5), MaxValueValidator(10_080)], help_text="Rediscovery schedule."
    )
    schemas = models.JSONField(
        default=list, blank=True, help_text="Schemas to include; empty: every non-system schema the user can read."
    )
    include_patterns = models.JSONField(
        default=list, blank=True, help_text="Table name patterns to include (* and ?); empty: every table."
    )
    exclude_patterns = models.JSONField(default=list, blank=True, help_text="Table name patterns to leave out.")
    max_tables = models.PositiveIntegerField(
        default=1000,
        validators=[MinValueValidator(1), MaxValueValidator(20_000)],
        help_text="Discovery adds tables until the connection monitors this many.",
    )
    first_checks_per_minute = models.PositiveIntegerField(
        default=20,
        validators=[MinValueValidator(1), MaxValueValidator(600)],
        help_text="New tables' first checks (with their history backfill) are spread at this rate.",
    )
    # Defaults of the tables discovery adds.
    check_interval_seconds = models.PositiveIntegerField(
        default=300, validators=[MinValueValidator(10), MaxValueValidator(604_800)]
    )
    freshness_threshold_minutes = models.PositiveIntegerField(
        default=1440, validators=[MinValueValidator(1), MaxValueValidator(525_600)]
    )
    failure_threshold = models.PositiveSmallIntegerField(
        default=2, validators=[MinValueValidator(1), MaxValueValidator(10)]
    )
    last_run_at = models.DateTimeField(null=True, blank=True, editable=False)
    next_run_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_summary = models.JSONField(default=dict, blank=True, editable=False)
    last_error = models.TextField(blank=True, default="", editable=False)

    class Meta:
        verbose_name_plural = "discovery policies"
        indexes = [models.Index(fields=["next_run_at"], name="discovery_due", condition=models.Q(is_enabled=True))]

    def __str__(self) -> str:
        return f"discovery of {self.connection}"


class Check(models.Model):
    """A configurable check on a table: null_rate, row_count or custom_sql."""

    Kind = checks.ConfigurableKind

    table = models.ForeignKey(MonitoredTable, on_delete=models.CASCADE, related_name="checks")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    column = models.CharField(max_length=63, blank=True, default="", help_text="null_rate: the column to watch.")
    sql = models.TextField(
        blank=True, default="", max_length=10_000, help_text="custom_sql: one read-only SELECT returning one number."
    )
    min_value = models.FloatField(null=True, blank=True)
    max_value = models.FloatField(null=True, blank=True, help_text="null_rate: the maximum fraction of NULLs (0 to 1).")
    is_active = models.BooleanField(default=True)
    managed_by = managed_by_field()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    MANAGED_FIELDS = ("table", "kind", "column", "sql", "min_value", "max_value")

    class Meta:
        ordering = ["table_id", "id"]

    def __str__(self) -> str:
        target = f"{self.table}.{self.column}" if self.column else str(self.table)
        return f"{self.kind} on {target}"


class CheckResult(models.Model):
    """One outcome of one check kind on one table: the time series behind history and baselines.

    The table is partitioned by week of `started_at` (migration 0005; partitions are created ahead and
    dropped by monitors/results.py): its primary key in the database is (id, started_at), `id` alone to Django.
    """

    Status = checks.Status

    # No single-column indexes on these two: the (table, …) and (connection, …) indexes below lead with them.
    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="results", db_index=False)
    table = models.ForeignKey(
        MonitoredTable,
        on_delete=models.CASCADE,
        related_name="results",
        null=True,
        blank=True,
        db_index=False,
        help_text="Empty for connection-level checks (replication_lag).",
    )
    check_definition = models.ForeignKey(
        Check, on_delete=models.SET_NULL, related_name="results", null=True, blank=True
    )
    kind = models.CharField(max_length=20, choices=CheckKind.choices)
    status = models.CharField(max_length=8, choices=Status.choices)
    observed_value = models.FloatField(null=True, blank=True)
    expected_lower = models.FloatField(null=True, blank=True)
    expected_upper = models.FloatField(null=True, blank=True)
    message = models.TextField(blank=True, default="")
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)
    queries_used = models.PositiveSmallIntegerField(default=0)
    # Start of the time bucket a bucketed volume value counts (rows per hour), for baselines.
    bucket_start = models.DateTimeField(null=True, blank=True)
    # Volume: the series the value belongs to (method, column, bucket width); training uses one series only.
    series = models.CharField(max_length=100, blank=True, default="", db_default="")
    details = models.JSONField(default=dict, blank=True)
    # Judged anomalous by the baseline: kept out of training unless an operator marks it expected.
    is_anomaly = models.BooleanField(default=False)
    marked_expected = models.BooleanField(default=False)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [
            # "latest results of a table and kind": history API, baselines, lifecycle.
            models.Index(fields=["table", "kind", "-started_at"], name="result_table_kind_latest"),
            # a table's whole history, newest first (the results API without ?kind=).
            models.Index(fields=["table", "-started_at", "-id"], name="result_table_latest"),
            # connection-level history (replication lag).
            models.Index(fields=["connection", "kind", "-started_at"], name="result_connection_kind_latest"),
            # baseline training: bucketed volume values of a table.
            models.Index(
                fields=["table", "bucket_start"],
                name="result_volume_buckets",
                condition=models.Q(kind="volume", bucket_start__isnull=False),
            ),
            # baseline training (the training part of monitors/anomalies.py JUDGE_READS): a table's usable values of
            # one series by bucket, read from the index alone (no heap visit per point).
            models.Index(
                fields=["table", "series", "bucket_start", "-started_at"],
                include=["observed_value"],
                name="result_volume_training",
                condition=models.Q(kind="volume", bucket_start__isnull=False, observed_value__isnull=False)
                & (models.Q(is_anomaly=False) | models.Q(marked_expected=True))
                & ~models.Q(status__in=["error", "skipped"])
                & ~models.Q(details__contains={"quiet_day": True}),
            ),
            # retention pruning scans by age.
            models.Index(fields=["started_at"], name="result_started_at"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.status} @ {self.started_at:%Y-%m-%d %H:%M}"


class SchedulerHeartbeat(models.Model):
    """Last sign of life of one `runchecks` process, reported by /api/health."""

    worker = models.CharField(max_length=200, unique=True)
    beat_at = models.DateTimeField()
    started_at = models.DateTimeField()

    def __str__(self) -> str:
        return self.worker
