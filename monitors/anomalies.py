"""Judging volume against each table's rolling baseline, and the baseline's training data.

Every volume result carries a `bucket_start` (the bucket its value counts: rows in that hour — or day,
for a date column — for tables with a timestamp column, else the table's total rows as of that hour).
A bucket is judged once, on its first result, by `baselines.evaluate`; later results of the same bucket
are held against the same band.

Training data for a table: its volume values of the last 14 days, one per bucket, excluding
- values judged anomalous (unless an operator marked them expected),
- values taken during one of the connection's maintenance windows,
- values before the table's `baseline_since` (set by rebaseline),
- the bucket under test.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone

from connections.maintenance import windows_by_connection
from monitors import baselines
from monitors.checks import Outcome, Status
from monitors.checks.volume import KIND as VOLUME
from monitors.models import CheckResult, MonitoredTable

TRAINING_WINDOW = baselines.DEFAULT_TRAINING_WINDOW
# Rows per day (date columns): a 14-day window never holds 24 points, so a week of days is enough.
MIN_DAILY_POINTS = 7


def training_history(*, tables: list[MonitoredTable], until: datetime) -> dict[int, dict[datetime, float]]:
    """Per table: {bucket_start: value} usable for training, one value per bucket, before `until`."""
    if not tables:
        return {}
    rows = (
        CheckResult.objects.filter(
            table_id__in=[t.id for t in tables],
            kind=VOLUME,
            bucket_start__gte=until - TRAINING_WINDOW,
            bucket_start__lt=until,
            observed_value__isnull=False,
        )
        .filter(Q(is_anomaly=False) | Q(marked_expected=True))
        .exclude(status__in=(Status.ERROR, Status.SKIPPED))
        .order_by("table_id", "bucket_start", "-started_at")
        .distinct("table_id", "bucket_start")
        .values_list("table_id", "bucket_start", "observed_value")
    )
    since = {t.id: t.baseline_since for t in tables}
    windows = windows_by_connection(
        connection_ids={t.connection_id for t in tables}, since=timezone.now() - 2 * TRAINING_WINDOW
    )
    connection_of = {t.id: t.connection_id for t in tables}
    history: dict[int, dict[datetime, float]] = defaultdict(dict)
    for table_id, bucket, value in rows:
        if since[table_id] and bucket < since[table_id]:
            continue
        if any(start <= bucket < end for start, end in windows.get(connection_of[table_id], ())):
            continue
        history[table_id][bucket] = value
    return history


def _already_judged(volume: dict[int, Outcome]) -> dict[int, CheckResult]:
    """The latest judged result of each table's bucket under test, if a run already judged it."""
    if not volume:
        return {}
    candidates = (
        CheckResult.objects.filter(
            table_id__in=list(volume),
            kind=VOLUME,
            bucket_start__in={o.bucket_start for o in volume.values()},
            details__judged=True,
            details__repeats_verdict_of__isnull=True,  # the judgement itself, not the runs that repeated it
        )
        .order_by("-started_at", "-id")
        .only(
            "id",
            "table_id",
            "bucket_start",
            "started_at",
            "expected_lower",
            "expected_upper",
            "is_anomaly",
            "marked_expected",
            "details",
        )
    )
    judged: dict[int, CheckResult] = {}
    for result in candidates:
        if result.table_id not in judged and result.bucket_start == volume[result.table_id].bucket_start:
            judged[result.table_id] = result
    return judged


def _finite(value: float | None) -> float | None:
    """JSON and the API carry only finite numbers."""
    return value if value is None or math.isfinite(value) else None


def _apply(outcome: Outcome, verdict: baselines.Verdict) -> None:
    outcome.expected_lower = _finite(verdict.expected_lower)
    outcome.expected_upper = _finite(verdict.expected_upper)
    outcome.is_anomaly = verdict.is_anomaly
    outcome.status = Status.FAIL if verdict.is_anomaly else Status.PASS
    outcome.details.update(
        judged=True, learning=verdict.learning, seasonality=verdict.seasonality, score=_finite(verdict.score)
    )
    outcome.message = f"{verdict.message} — {outcome.message}"


def _repeat(outcome: Outcome, *, previous: CheckResult, table: MonitoredTable) -> None:
    """A bucket already judged: hold its value (it may have grown with late rows) against the same band."""
    lower, upper, value = previous.expected_lower, previous.expected_upper, outcome.observed_value
    outcome.expected_lower, outcome.expected_upper = lower, upper
    learning = previous.details.get("learning", False)
    if learning or lower is None or upper is None or previous.marked_expected:
        verdict, anomaly = ("learning the baseline" if learning else "accepted as expected"), False
    elif value == 0 and upper > 0 and table.direction != "spike":
        verdict, anomaly = "a drop to zero", True
    elif value > upper and table.direction != "drop":
        verdict, anomaly = "above the expected band", True
    elif value < lower and table.direction != "spike":
        verdict, anomaly = "below the expected band", True
    else:
        verdict, anomaly = "within the expected band", False
    outcome.is_anomaly = anomaly
    outcome.status = Status.FAIL if anomaly else Status.PASS
    outcome.details.update(judged=True, learning=learning, repeats_verdict_of=previous.pk)
    band = "" if lower is None or upper is None else f" {lower:,.0f}–{upper:,.0f}"
    outcome.message = f"{value:,.0f} rows: {verdict}{band} — {outcome.message}"


def volume_judge(*, runs) -> None:
    """Give each new volume outcome of a batch its verdict and expected band (in place)."""
    volume: dict[int, Outcome] = {}
    tables: dict[int, MonitoredTable] = {}
    for run in runs:
        for outcome in run.outcomes:
            if outcome.kind == VOLUME and outcome.status == Status.PASS and outcome.bucket_start is not None:
                volume[run.table.id] = outcome
                tables[run.table.id] = run.table
    for table_id, previous in _already_judged(volume).items():
        _repeat(volume.pop(table_id), previous=previous, table=tables[table_id])
    if not volume:
        return
    until = max(o.bucket_start for o in volume.values())
    history = training_history(tables=[tables[i] for i in volume], until=until + timedelta(seconds=1))
    for table_id, outcome in volume.items():
        table = tables[table_id]
        points = dict(outcome.history)
        points.update(history.get(table_id, {}))
        points = {at: value for at, value in points.items() if at < outcome.bucket_start}
        verdict = baselines.evaluate(
            history=sorted(points.items()),
            at=outcome.bucket_start,
            value=outcome.observed_value,
            sensitivity=table.sensitivity,
            direction=table.direction,
            seasonality=table.seasonality,
            min_relative_change=table.min_relative_change,
            min_absolute_change=table.min_absolute_change,
            min_history_points=MIN_DAILY_POINTS
            if outcome.details.get("series") == "rows_per_day"
            else baselines.MIN_HISTORY_POINTS,
            unit="rows",
        )
        _apply(outcome, verdict)
