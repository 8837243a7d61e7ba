"""Helpers for tests that feed synthetic volume series through the real judging and recording path.

Not a test module (tests may import it; nothing else does): monitors' tests and the project-level alert tests share
these instead of importing each other."""

import math
import random
import uuid
from datetime import UTC, datetime, timedelta

from monitors.anomalies import volume_judge
from monitors.checks import Outcome, Status
from monitors.models import CheckResult, MonitoredTable
from monitors.recording import ResultsHandler, TableRun, results_record

START = datetime(2026, 10, 1, tzinfo=UTC)
SERIES = "rows:created_at:1h"
"""The series of `volume_table`: rows per hour by created_at."""


def day_night(at: datetime, rng: random.Random, level: float = 1000.0) -> float:
    """Strong day/night seasonality: busy afternoons, quiet nights, 3% noise."""
    seasonal = level * (1 + 0.8 * math.sin((at.hour - 8) / 24 * 2 * math.pi))
    return max(0.0, round(seasonal * (1 + rng.gauss(0, 0.03))))


def volume_table(connection) -> MonitoredTable:
    """An hourly-bucketed table whose history counts as backfilled at START, alerting on the first anomaly."""
    return MonitoredTable.objects.create(
        connection=connection,
        table_name="orders",
        timestamp_column="created_at",
        failure_threshold=1,
        backfilled_at=START,
        volume_series=SERIES,
    )


def seed_history(table, *, hours: int, until: datetime, value_at, series: str = SERIES) -> None:
    CheckResult.objects.bulk_create(
        CheckResult(
            connection=table.connection,
            table=table,
            kind="volume",
            status=Status.PASS,
            observed_value=value_at(at),
            bucket_start=at,
            series=series,
            started_at=at + timedelta(hours=1),
            details={"backfill": True},
        )
        for at in (until - timedelta(hours=h) for h in range(hours, 0, -1))
    )


def observe(
    table, at: datetime, value: float, *, on_recorded: ResultsHandler, series: str = SERIES, bucket_seconds: int = 3600
) -> CheckResult:
    """One run's volume outcome of the bucket starting `at`, judged and recorded the way a batch does."""
    table.refresh_from_db()
    outcome = Outcome(
        kind="volume",
        status=Status.PASS,
        observed_value=value,
        bucket_start=at,
        message=f"{value} rows",
        details={"series": series, "bucket_seconds": bucket_seconds},
    )
    run = TableRun(table=table, outcomes=[outcome])
    volume_judge(runs=[run])
    token = uuid.uuid4()
    MonitoredTable.objects.filter(pk=table.pk).update(lease_token=token)
    results = results_record(
        connection=table.connection,
        token=token,
        runs=[run],
        connection_outcomes=[],
        started_at=at + timedelta(seconds=bucket_seconds, minutes=1),
        on_recorded=on_recorded,
    )
    return results[0]
