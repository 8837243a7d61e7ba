"""Pulse's state as Prometheus metrics, read from Pulse's database at scrape time.

Nothing is counted in process memory: every web process answers the same, whichever the scrape reaches. Each
metric family comes from one aggregated query (tables and connections join their latest results with LATERAL
lookups on the `result_*_kind_latest` indexes), so a scrape costs a fixed number of queries, not one per table.
The metric names are listed in the README ("Prometheus metrics").
"""

from collections.abc import Iterator
from datetime import datetime, timedelta

from django.contrib.auth.models import Group
from django.db import connection as pulse_db
from django.db.models import Case, Count, F, Value, When
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from alerts.models import Alert, Notification
from connections.guardrails.share import share_use
from connections.models import Connection, QueryAllowance
from monitors.checks import Status
from monitors.heartbeat import scheduler_status
from monitors.models import CheckResult, MonitoredTable

CONNECTION_LABELS = ["team", "connection"]
# Runs are counted over the last 15 minutes: 3 runs of a table at the default 5-minute interval, and a quarter
# of the rows an hour would count (the count reads each result row of the window).
RUNS_WINDOW_SECONDS = 900

# Every table with its latest measured freshness and volume (one LATERAL index lookup each).
_TABLES_SQL = f"""
SELECT g.name AS team, c.name AS connection_name, t.schema_name, t.table_name, t.status,
       EXTRACT(EPOCH FROM t.last_checked_at) AS checked, f.observed_value AS age, f.expected_upper AS age_limit,
       v.observed_value AS volume, v.expected_lower AS volume_lower, v.expected_upper AS volume_upper
FROM {MonitoredTable._meta.db_table} t
JOIN {Connection._meta.db_table} c ON c.id = t.connection_id
JOIN {Group._meta.db_table} g ON g.id = c.team_id
LEFT JOIN LATERAL (
    SELECT r.observed_value, r.expected_upper FROM {CheckResult._meta.db_table} r
    WHERE r.table_id = t.id AND r.kind = 'freshness' AND r.observed_value IS NOT NULL
    ORDER BY r.started_at DESC LIMIT 1
) f ON true
LEFT JOIN LATERAL (
    SELECT r.observed_value, r.expected_lower, r.expected_upper FROM {CheckResult._meta.db_table} r
    WHERE r.table_id = t.id AND r.kind = 'volume' AND r.observed_value IS NOT NULL
    ORDER BY r.started_at DESC LIMIT 1
) v ON true
"""

# Every connection with this hour's query budget use and its latest measured replication lag.
_CONNECTIONS_SQL = f"""
SELECT g.name, c.name, c.status, EXTRACT(EPOCH FROM c.last_checked_at), c.max_queries_per_hour,
       CASE WHEN a.window_start = %(window)s THEN a.queries_used ELSE 0 END, l.observed_value,
       c.replica_time_share_percent, c.replica_time_burst_seconds, a.time_balance_ms, a.time_updated_at,
       a.time_recent_ms, a.time_hour_start, a.time_hour_ms
FROM {Connection._meta.db_table} c
JOIN {Group._meta.db_table} g ON g.id = c.team_id
LEFT JOIN {QueryAllowance._meta.db_table} a ON a.connection_id = c.id
LEFT JOIN LATERAL (
    SELECT r.observed_value FROM {CheckResult._meta.db_table} r
    WHERE r.connection_id = c.id AND r.kind = 'replication_lag' AND r.table_id IS NULL
      AND r.observed_value IS NOT NULL
    ORDER BY r.started_at DESC LIMIT 1
) l ON true
"""


def _gauge(name: str, documentation: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=labels or [])


# The per-table families: (name, help, column of _TABLES_SQL).
TABLE_FAMILIES = [
    ("pulse_table_last_check_timestamp_seconds", "When the table was last checked.", "checked"),
    (
        "pulse_table_newest_row_age_seconds",
        "Age of the newest row, as measured by the latest freshness check that measured it.",
        "age",
    ),
    ("pulse_table_freshness_limit_seconds", "The freshness limit that check applied.", "age_limit"),
    ("pulse_table_volume_rows", "Latest volume value (rows per hour/day, or total rows).", "volume"),
    ("pulse_table_volume_expected_lower_rows", "Lower edge of the expected volume band.", "volume_lower"),
    ("pulse_table_volume_expected_upper_rows", "Upper edge of the expected volume band.", "volume_upper"),
]
TABLE_STATUS_HELP = "1 for the table's current status (label status)."

# A label value in the text exposition format: backslash, line feed and double quote escaped (in SQL:
# replace(replace(replace(v, '\', '\\'), E'\n', '\n'), '"', '\"')).
_ESCAPED = "replace(replace(replace({}, '\\', '\\\\'), E'\\n', '\\n'), '\"', '\\\"')"
_LABELS = " || ".join(
    [
        "'team=\"'",
        _ESCAPED.format("team"),
        "'\",connection=\"'",
        _ESCAPED.format("connection_name"),
        "'\",schema=\"'",
        _ESCAPED.format("schema_name"),
        "'\",table=\"'",
        _ESCAPED.format("table_name"),
        "'\"'",
    ]
)
# One text per family: its sample lines, written by PostgreSQL (string_agg skips the NULL lines of tables that
# have no such value). MATERIALIZED: each table's label set is escaped once, not once per family. Float8 and
# numeric print as the format's numbers (shortest round-trip form).
_TABLE_LINES_SQL = (
    f"WITH latest AS ({_TABLES_SQL}), labelled AS MATERIALIZED (SELECT {_LABELS} AS labels, * FROM latest) SELECT "
    + "string_agg('pulse_table_status{' || labels || ',status=\"' || "
    + _ESCAPED.format("status")
    + " || '\"} 1', E'\\n'), "
    + ", ".join(
        f"string_agg('{name}{{' || labels || '}} ' || {column}::text, E'\\n')" for name, _, column in TABLE_FAMILIES
    )
    + " FROM labelled"
)


def _table_lines() -> str:
    """The per-table families as exposition text, formatted by PostgreSQL in the one query that reads them.

    With 10,000 tables they are 70,000 samples: prometheus-client's generic path escapes and sorts every label of
    every sample in Python (about 25 µs each, well over a second in all). The escaping is the format's (and
    prometheus-client's); the tests read this text back with prometheus-client's parser.
    """
    with pulse_db.cursor() as cursor:
        cursor.execute(_TABLE_LINES_SQL)
        bodies = cursor.fetchone()
    families = [("pulse_table_status", TABLE_STATUS_HELP), *((name, text) for name, text, _ in TABLE_FAMILIES)]
    return "".join(
        f"# HELP {name} {text}\n# TYPE {name} gauge\n" + (f"{body}\n" if body else "")
        for (name, text), body in zip(families, bodies)
    )


def _connection_families(now: datetime) -> Iterator[Metric]:
    status = _gauge(
        "pulse_connection_status",
        "1 for the connection's current status (label status).",
        [*CONNECTION_LABELS, "status"],
    )
    last_check = _gauge(
        "pulse_connection_last_check_timestamp_seconds", "When the connection was last contacted.", CONNECTION_LABELS
    )
    lag = _gauge(
        "pulse_connection_replication_lag_seconds", "Latest measured replication lag of the replica.", CONNECTION_LABELS
    )
    budget = _gauge("pulse_connection_query_budget", "Queries the connection may send per hour.", CONNECTION_LABELS)
    used = _gauge("pulse_connection_queries_used", "Queries reserved in the current clock hour.", CONNECTION_LABELS)
    share = _gauge(
        "pulse_connection_budget_used_ratio", "Share of this hour's query budget used (0 to 1).", CONNECTION_LABELS
    )
    time_limit = _gauge(
        "pulse_connection_replica_time_share_limit_ratio",
        "The share of one replica backend Pulse may use (replica_time_share_percent / 100).",
        CONNECTION_LABELS,
    )
    time_now = _gauge(
        "pulse_connection_replica_time_share_used_ratio",
        "Share of one replica backend used by Pulse's statements over about the last minute (0 to 1).",
        CONNECTION_LABELS,
    )
    time_hour = _gauge(
        "pulse_connection_replica_time_seconds_this_hour",
        "Replica time charged to Pulse's statements in the current clock hour.",
        CONNECTION_LABELS,
    )
    window = now.replace(minute=0, second=0, microsecond=0)
    with pulse_db.cursor() as cursor:
        cursor.execute(_CONNECTIONS_SQL, {"window": window})
        rows = cursor.fetchall()
    for team, conn, state, checked, per_hour, queries, lag_seconds, *time_columns in rows:
        percent, burst, balance, updated, recent, hour_start, hour_ms = time_columns
        allowance = None
        if updated is not None:
            allowance = QueryAllowance(
                time_balance_ms=balance,
                time_updated_at=updated,
                time_recent_ms=recent,
                time_hour_start=hour_start,
                time_hour_ms=hour_ms,
                window_start=window,
                queries_used=queries,
            )
        use = share_use(
            connection=Connection(replica_time_share_percent=percent, replica_time_burst_seconds=burst),
            allowance=allowance,
            now=now,
        )
        labels = [team, conn]
        status.add_metric([*labels, state], 1)
        if checked is not None:
            last_check.add_metric(labels, float(checked))
        if lag_seconds is not None:
            lag.add_metric(labels, float(lag_seconds))
        budget.add_metric(labels, per_hour)
        used.add_metric(labels, queries)
        share.add_metric(labels, queries / per_hour if per_hour else 0.0)
        time_limit.add_metric(labels, percent / 100)
        time_now.add_metric(labels, use.now_percent / 100)
        time_hour.add_metric(labels, use.this_hour_seconds)
    yield from (status, last_check, lag, budget, used, share, time_limit, time_now, time_hour)


def _total_families(now: datetime) -> Iterator[Metric]:
    runs = _gauge("pulse_check_runs_last_15m", "Check results recorded in the last 15 minutes, by result.", ["result"])
    counted = dict(
        CheckResult.objects.filter(started_at__gte=now - timedelta(seconds=RUNS_WINDOW_SECONDS))
        .values("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    for result in Status.values:
        runs.add_metric([result], counted.get(result, 0))
    yield runs

    alerts = _gauge(
        "pulse_open_alerts", "Unresolved alerts by kind and state (open, acknowledged, snoozed).", ["kind", "state"]
    )
    state = Case(When(snoozed_until__gt=now, then=Value("snoozed")), default=F("status"))
    unresolved = {
        (kind, alert_state): n
        for kind, alert_state, n in Alert.objects.exclude(status=Alert.Status.RESOLVED)
        .annotate(state=state)
        .values("kind", "state")
        .annotate(n=Count("id"))
        .values_list("kind", "state", "n")
    }
    for kind in Alert.Kind.values:
        for alert_state in ("open", "acknowledged", "snoozed"):
            alerts.add_metric([kind, alert_state], unresolved.get((kind, alert_state), 0))
    yield alerts

    notifications = _gauge("pulse_notifications", "Notifications in the outbox by outcome.", ["status"])
    outcomes = dict(Notification.objects.values("status").annotate(n=Count("id")).values_list("status", "n"))
    for outcome in Notification.Status.values:
        notifications.add_metric([outcome], outcomes.get(outcome, 0))
    yield notifications

    scheduler = scheduler_status(now=now)
    workers = _gauge("pulse_scheduler_workers", "runchecks processes with a fresh heartbeat.")
    workers.add_metric([], scheduler.get("workers", 0))
    yield workers
    if scheduler["last_heartbeat_at"] is not None:
        age = _gauge("pulse_scheduler_heartbeat_age_seconds", "Seconds since the newest runchecks heartbeat.")
        age.add_metric([], (now - datetime.fromisoformat(scheduler["last_heartbeat_at"])).total_seconds())
        yield age


class PulseCollector:
    """A prometheus-client collector that reads Pulse's database on each `collect()`: connections and totals
    (the per-table families are appended by `metrics_exposition`, see `_table_lines`)."""

    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        yield from _connection_families(now)
        yield from _total_families(now)


REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(PulseCollector())


def metrics_exposition() -> bytes:
    """All metrics in Prometheus' text exposition format (version 0.0.4): the collector's, then the tables'."""
    return generate_latest(REGISTRY) + _table_lines().encode()
