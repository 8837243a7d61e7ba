"""Seed data for the dashboard's tests, browser tests and benchmark: a table with 14 days of hourly history.

Not a test module: the dashboard's tests and benchmarks/dashboard_pages.py share it.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from alerts.lifecycle import event_write
from alerts.models import Alert, AlertEvent
from connections.models import Connection, MaintenanceWindow
from monitors.models import CheckResult, MonitoredTable

HOURS = 14 * 24


def connection_for(team, *, name: str = "shop-replica") -> Connection:
    """A stored connection (never contacted: the pages read only Pulse's database)."""
    connection = Connection(name=name, team=team, host="replica.example.internal", database="shop", username="pulse")
    connection.set_password("not-used")
    connection.status = Connection.Status.OK
    connection.save()
    return connection


def hourly_level(at: datetime, level: float = 600.0) -> float:
    """Busy afternoons, quiet nights."""
    return round(level * (1 + 0.6 * math.sin((at.hour - 8) / 24 * 2 * math.pi)))


def seed_history(table: MonitoredTable, *, now: datetime, hours: int = HOURS, drop_last: int = 0) -> None:
    """`hours` hourly volume buckets with their bands (the last `drop_last` fall to zero: anomalies), hourly
    freshness results against the threshold, and an hourly replication lag of the connection."""
    top = now.replace(minute=0, second=0, microsecond=0)
    results = []
    for h in range(hours, 0, -1):
        bucket = top - timedelta(hours=h)
        expected = hourly_level(bucket)
        dropped = h <= drop_last
        value = 0.0 if dropped else expected * (1 + 0.04 * math.sin(h * 1.7))
        results.append(
            CheckResult(
                connection=table.connection,
                table=table,
                kind="volume",
                status="fail" if dropped else "pass",
                observed_value=value,
                expected_lower=expected * 0.8,
                expected_upper=expected * 1.2,
                is_anomaly=dropped,
                bucket_start=bucket,
                started_at=bucket + timedelta(hours=1, minutes=1),
                message="a drop to zero" if dropped else "within the expected band",
                details={"judged": True, "learning": False},
            )
        )
        age = (h if dropped else 0) * 3600 + 300 + (h % 7) * 60
        stale = dropped and age > table.freshness_threshold_minutes * 60
        results.append(
            CheckResult(
                connection=table.connection,
                table=table,
                kind="freshness",
                status="fail" if stale else "pass",
                observed_value=float(age),
                expected_upper=table.freshness_threshold_minutes * 60,
                started_at=bucket + timedelta(hours=1, minutes=1),
                message="newest row",
                details={
                    "latest": (bucket + timedelta(hours=1, minutes=1) - timedelta(seconds=age)).isoformat(),
                    "learned_limit": 1800.0,
                },
            )
        )
        results.append(
            CheckResult(
                connection=table.connection,
                kind="replication_lag",
                status="pass",
                observed_value=2.0 + (h % 5),
                expected_upper=table.connection.replication_lag_threshold_seconds,
                started_at=bucket + timedelta(hours=1, minutes=2),
            )
        )
    CheckResult.objects.bulk_create(results)


def failing_table(connection: Connection, *, now: datetime, name: str = "orders") -> tuple[MonitoredTable, Alert]:
    """A table whose volume fell to zero for the last two hours, with its open volume alert."""
    table = MonitoredTable.objects.create(
        connection=connection,
        table_name=name,
        timestamp_column="created_at",
        status=MonitoredTable.Status.FAILING,
        last_checked_at=now,
    )
    seed_history(table, now=now, drop_last=2)
    top = now.replace(minute=0, second=0, microsecond=0)
    # A spike an operator marked expected, a maintenance window, a rebaseline and a schema change, to be seen.
    spike = CheckResult.objects.get(table=table, kind="volume", bucket_start=top - timedelta(days=9, hours=-2))
    CheckResult.objects.filter(pk=spike.pk).update(
        observed_value=spike.observed_value * 1.9, status="fail", is_anomaly=True, marked_expected=True
    )
    MaintenanceWindow.objects.create(
        connection=connection,
        starts_at=top - timedelta(days=5, hours=3),
        ends_at=top - timedelta(days=5),
        reason="nightly load moved",
    )
    MonitoredTable.objects.filter(pk=table.pk).update(baseline_since=top - timedelta(days=12))
    table.baseline_since = top - timedelta(days=12)
    CheckResult.objects.create(
        connection=connection,
        table=table,
        kind="schema_change",
        status="fail",
        observed_value=3,
        started_at=top - timedelta(days=3, hours=5),
        message="public.orders changed: added: note (text)",
        details={
            "columns": [
                ["id", "bigint", True],
                ["created_at", "timestamp with time zone", True],
                ["note", "text", False],
            ]
        },
    )
    alert = Alert.objects.create(
        connection=connection,
        table=table,
        kind=Alert.Kind.VOLUME,
        severity=Alert.Severity.CRITICAL,
        message="0 rows in the last hour: a drop to zero (expected 480–720)",
        opened_at=now - timedelta(hours=1),
        last_seen_at=now,
        consecutive_failures=2,
    )
    event_write(alert=alert, kind=AlertEvent.Kind.OPENED, at=alert.opened_at, message=alert.message)
    return table, alert


def healthy_table(connection: Connection, *, now: datetime, name: str) -> MonitoredTable:
    table = MonitoredTable.objects.create(
        connection=connection,
        table_name=name,
        timestamp_column="created_at",
        status=MonitoredTable.Status.HEALTHY,
        last_checked_at=now,
    )
    seed_history(table, now=now, hours=48)
    return table
