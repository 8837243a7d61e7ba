from django.contrib.auth.models import Group
from django.contrib.postgres.fields import ArrayField
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from common.managed import managed_by_field
from common.secrets import decrypt_secret, encrypt_secret

MAX_HOLIDAYS = 1000
"""A connection's holiday calendar holds at most this many dates."""


def holidays_in_order(dates) -> list:
    """A holiday calendar as stored: each date once, in order (the API and the admin both save it so)."""
    return sorted(set(dates))


QUERIES_PER_HOUR_MAX = 10_000_000
QUERIES_PER_SECOND_MAX = 100_000.0
"""The query caps' maxima, also their defaults: at these the caps never bind (connections.guardrails.budget)."""


class Connection(models.Model):
    """A customer's read replica that Pulse checks; the `team` group is the tenancy boundary."""

    class SSLMode(models.TextChoices):
        DISABLE = "disable"
        ALLOW = "allow"
        PREFER = "prefer"
        REQUIRE = "require"
        VERIFY_CA = "verify-ca"
        VERIFY_FULL = "verify-full"

    class Status(models.TextChoices):
        UNKNOWN = "unknown"
        OK = "ok"
        ERROR = "error"
        NOT_REPLICA = "not_replica"
        PAUSED = "paused"

    name = models.CharField(max_length=100)
    team = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="connections")
    host = models.CharField(max_length=255)
    port = models.PositiveIntegerField(default=5432, validators=[MinValueValidator(1), MaxValueValidator(65535)])
    database = models.CharField(max_length=63)
    username = models.CharField(max_length=63)
    password_encrypted = models.TextField(blank=True, default="", editable=False)
    sslmode = models.CharField(max_length=11, choices=SSLMode.choices, default=SSLMode.PREFER)
    require_replica = models.BooleanField(default=True)
    statement_timeout_ms = models.PositiveIntegerField(
        default=5000, validators=[MinValueValidator(100), MaxValueValidator(60000)]
    )
    max_queries_per_hour = models.PositiveIntegerField(
        default=QUERIES_PER_HOUR_MAX,
        validators=[MinValueValidator(1), MaxValueValidator(QUERIES_PER_HOUR_MAX)],
        help_text="Optional cap on queries per hour across all runchecks processes (the default, the maximum, "
        "never binds: the replica time share is what bounds Pulse's load).",
    )
    max_concurrent_queries = models.PositiveIntegerField(
        default=2,
        validators=[MinValueValidator(1), MaxValueValidator(32)],
        help_text="Sessions Pulse may hold open on this replica at once.",
    )
    max_queries_per_second = models.FloatField(
        default=QUERIES_PER_SECOND_MAX,
        validators=[MinValueValidator(0.1), MaxValueValidator(QUERIES_PER_SECOND_MAX)],
        help_text="Optional rate cap: queries to this replica are spaced at least 1/rate seconds apart, across "
        "processes (the default, the maximum, never binds).",
    )
    replica_time_share_percent = models.FloatField(
        default=5.0,
        validators=[MinValueValidator(0.1), MaxValueValidator(100)],
        help_text="Server time Pulse may use on this replica, as a percentage of one backend, averaged over "
        "a minute: the sum of its statements' durations across all runchecks processes.",
    )
    replica_time_burst_seconds = models.FloatField(
        default=15.0,
        validators=[MinValueValidator(0.1), MaxValueValidator(3600)],
        help_text="Server time Pulse may use at once beyond the share after a quiet spell (the default is "
        "five minutes' worth of 5%: a whole sweep, or a first run's one-off work, goes through at once).",
    )
    max_query_cost = models.FloatField(
        default=1_000_000.0,
        validators=[MinValueValidator(1), MaxValueValidator(1e12)],
        help_text="Queries whose planner estimate (EXPLAIN total cost) exceeds this are not run.",
    )
    replication_lag_threshold_seconds = models.PositiveIntegerField(
        default=300, validators=[MinValueValidator(1), MaxValueValidator(86_400)]
    )
    is_active = models.BooleanField(default=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.UNKNOWN, editable=False)
    last_error = models.TextField(blank=True, default="", editable=False)
    last_checked_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Circuit breaker: consecutive failed contacts, and when Pulse may try again.
    consecutive_failures = models.PositiveIntegerField(default=0, editable=False)
    # Batches in a row with results Pulse could not get (errors); opens a connection_error alert.
    error_streak = models.PositiveIntegerField(default=0, editable=False)
    connection_error_threshold = models.PositiveSmallIntegerField(
        default=3,
        validators=[MinValueValidator(1), MaxValueValidator(100)],
        help_text="Check runs in a row that could not run before a connection_error alert opens.",
    )
    backoff_until = models.DateTimeField(null=True, blank=True, editable=False)
    holidays = ArrayField(
        models.DateField(),
        size=MAX_HOLIDAYS,
        blank=True,
        default=list,
        db_default=[],
        help_text=(
            "Dates (YYYY-MM-DD, comma-separated) on which the tables marked quiet on holidays are judged as their "
            "quietest weekday from midnight, and kept out of training: public holidays, shutdowns."
        ),
    )
    lag_checked_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["team", "name"], name="connection_unique_name_per_team"),
            models.CheckConstraint(
                condition=models.Q(statement_timeout_ms__gte=100, statement_timeout_ms__lte=60000),
                name="connection_statement_timeout_range",
            ),
            models.CheckConstraint(condition=models.Q(port__gte=1, port__lte=65535), name="connection_port_range"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def has_password(self) -> bool:
        return bool(self.password_encrypted)

    def set_password(self, plaintext: str) -> None:
        self.password_encrypted = encrypt_secret(plaintext)

    def get_password(self) -> str:
        return decrypt_secret(self.password_encrypted)

    @property
    def min_query_interval(self) -> float:
        """Seconds between two queries to this replica (the rate guardrail)."""
        return 1.0 / self.max_queries_per_second

    def conninfo(self) -> dict:
        """libpq parameters for this connection (includes the decrypted password: never log it)."""
        return {
            "host": self.host,
            "port": self.port,
            "dbname": self.database,
            "user": self.username,
            "password": self.get_password(),
            "sslmode": self.sslmode,
        }


class QueryAllowance(models.Model):
    """Guardrail state shared by every runchecks process: the hourly query budget, the rate spacing and the
    replica time share (see connections.guardrails.share)."""

    connection = models.OneToOneField(Connection, on_delete=models.CASCADE, primary_key=True, related_name="allowance")
    window_start = models.DateTimeField()
    queries_used = models.PositiveIntegerField(default=0)
    next_query_at = models.DateTimeField()
    # Replica time: a bucket of server time (ms) filled at the share, at most the burst; negative is debt.
    time_balance_ms = models.FloatField(db_default=0.0)
    time_updated_at = models.DateTimeField(null=True, blank=True)  # NULL: never charged, the bucket is full
    time_recent_ms = models.FloatField(db_default=0.0)  # charged ms, decayed with a one-minute time constant
    time_hour_start = models.DateTimeField(null=True, blank=True)
    time_hour_ms = models.FloatField(db_default=0.0)  # charged ms since time_hour_start

    def __str__(self) -> str:
        return f"{self.connection_id}: {self.queries_used} since {self.window_start:%H:%M}"


class MaintenanceWindow(models.Model):
    """While a window is on, checks run but no alerts open, and the values do not train baselines."""

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="maintenance_windows")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    reason = models.CharField(max_length=200, blank=True, default="")
    managed_by = managed_by_field()

    MANAGED_FIELDS = ("connection", "starts_at", "ends_at", "reason")

    class Meta:
        ordering = ["-starts_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(ends_at__gt=models.F("starts_at")), name="window_ends_after_start"
            )
        ]

    def __str__(self) -> str:
        return f"{self.connection}: {self.starts_at:%Y-%m-%d %H:%M} – {self.ends_at:%Y-%m-%d %H:%M}"
