"""Judging volume against each table's rolling baseline, and the baseline's training data.

Every volume result carries a `bucket_start` (the bucket its value counts: rows in that hour — or day,
for a date column — for tables with a timestamp column, else the table's total rows as of that hour).
A bucket is judged once, on its first result, by `baselines.evaluate`; later results of the same bucket
are held against the same band, and read the same way.

Every value belongs to a series (`CheckResult.series`: "total_rows", or "rows:<column>:<width>"); rows per
bucket are counts, judged with the counting-noise floor and, when few are expected, the exact Poisson tail.

Training data for a table: its volume values of the current series over the last 14 days, one per bucket,
excluding
- values judged anomalous (unless an operator marked them expected), and low values passed as a holiday-like
  quiet day (they would drag the level of the next days down),
- values taken during one of the connection's maintenance windows,
- the bucket under test.

Values before the table's `baseline_since` (a level shift accepted by a rebaseline, or automatically after
`PULSE_LEVEL_SHIFT_CONFIRMATIONS` consistent buckets) keep training the seasonal shape, rescaled to the level
of the values since (`baselines.rescaled_to_new_level`).

What the judge reads of a batch (the buckets already judged, the training points, the quiet-day marks, the
judgements that may confirm a level shift) comes from one statement (`judge_reads`); only an accepted level
shift reads and writes more.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple

from django.conf import settings
from django.utils import timezone

from connections.maintenance import windows_by_connection
from monitors import baselines
from monitors.checks import Outcome, Status, volume
from monitors.checks.volume import KIND as VOLUME
from monitors.database import binary_cursor
from monitors.models import CheckResult, MonitoredTable

TRAINING_WINDOW = baselines.DEFAULT_TRAINING_WINDOW
# Rows per day: a 14-day window never holds 24 points, so a week of days is enough.
MIN_DAILY_POINTS = 7
DAY_SECONDS = 86_400

SENSITIVITY_PRESETS = {"low": 5.0, "medium": baselines.DEFAULT_SENSITIVITY, "high": 3.0}
"""A table's `sensitivity_preset` replaces its numeric `sensitivity` with one of these thresholds (robust sd;
for small counts the same one-sided normal tail: 2.9e-7, 2.3e-4 and 1.3e-3)."""


def level_shift_confirmations() -> int:
    """Anomalous buckets in a row, consistent with one new level, after which it is accepted (0: never)."""
    return getattr(settings, "PULSE_LEVEL_SHIFT_CONFIRMATIONS", 6)


def effective_sensitivity(table: MonitoredTable) -> float:
    """The threshold a table's volume is judged with: its preset's, else its numeric sensitivity."""
    return SENSITIVITY_PRESETS.get(table.sensitivity_preset, table.sensitivity)


def _series_of(outcome: Outcome) -> str:
    return outcome.details.get("series", "")


# Everything the judge reads of a batch's tables, in one statement (`judge_reads`), in four parts told apart by
# the first column:
# 0  the judgement (not a run that repeated it) of each table's bucket under test, if a run already judged it;
# and, only for the tables not judged yet:
# 1  the training points: the latest usable value of each bucket of the table's current series (before its
#    `baseline_since` too: that shape is rescaled), none taken during one of its connection's maintenance windows
#    that end at `windows_since` or later (connections' MaintenanceWindow table, read with the rule of
#    `connections.maintenance.windows_by_connection`); the window is the batch's: TRAINING_WINDOW up to a second
#    after the latest bucket under test of the tables not judged yet;
# 2  the table, if an earlier bucket of its day (`midnight` up to its bucket) passed as a quiet day;
# 3  the first judgement of each of the `confirmations - 1` buckets right before its bucket under test, which may
#    confirm a level shift with it.
# Results of a bucket come after its start, and none is recorded after `recorded_by` (the later of now and the
# latest bucket under test, plus RECORDED_MARGIN): those literal bounds on `started_at` let the planner read only
# the weekly partitions that can hold them (2 or 3 instead of every partition up to the ones created ahead), which
# is most of the statement's planning time. The training part's conditions are written as the partial index
# result_volume_training's (monitors/models.py), which serves it from the index alone; table by table (LATERAL),
# each table's few hundred points are de-duplicated on their own instead of the whole batch's points being hashed
# and sorted together (for 200 tables x 336 points: 69 ms instead of 248 ms, no spill to disk).
JUDGE_READS = """
WITH v AS MATERIALIZED (
    SELECT *
    FROM unnest(%(tables)s::bigint[], %(connections)s::bigint[], %(series)s::text[], %(buckets)s::timestamptz[],
                %(widths)s::interval[], %(midnights)s::timestamptz[])
      AS v(table_id, connection_id, series, bucket_start, width, midnight)
), judged AS MATERIALIZED (
    SELECT DISTINCT ON (r.table_id)
           r.table_id, r.id, r.expected_lower, r.expected_upper, r.marked_expected, r.details
    FROM v JOIN monitors_checkresult r
      ON r.table_id = v.table_id AND r.bucket_start = v.bucket_start AND r.series = v.series
    WHERE r.kind = 'volume' AND r.started_at >= %(first)s AND r.started_at < %(recorded_by)s
      AND r.details @> '{"judged": true}' AND NOT r.details ? 'repeats_verdict_of'
    ORDER BY r.table_id, r.started_at DESC, r.id DESC
), unjudged AS MATERIALIZED (
    SELECT v.* FROM v WHERE NOT EXISTS (SELECT FROM judged j WHERE j.table_id = v.table_id)
), training AS MATERIALIZED (
    SELECT max(u.bucket_start) + interval '1 second' - %(window)s::interval AS start,
           max(u.bucket_start) + interval '1 second' AS until
    FROM unjudged u
)
SELECT 0, j.table_id, j.id, NULL::timestamptz, NULL::float8, j.expected_lower, j.expected_upper, j.marked_expected,
       NULL::boolean, j.details, NULL::jsonb, NULL::jsonb
FROM judged j
UNION ALL
SELECT 1, u.table_id, NULL, p.bucket_start, p.observed_value, NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM unjudged u CROSS JOIN training w CROSS JOIN LATERAL (
    SELECT DISTINCT ON (r.bucket_start) r.bucket_start, r.observed_value
    FROM monitors_checkresult r
    WHERE r.table_id = u.table_id AND r.series = u.series
      AND r.bucket_start >= w.start AND r.bucket_start < w.until AND r.started_at >= w.start
      AND r.started_at >= %(training_first)s AND r.started_at < %(recorded_by)s
      AND r.bucket_start IS NOT NULL AND r.kind = 'volume' AND r.observed_value IS NOT NULL
      AND (NOT r.is_anomaly OR r.marked_expected) AND NOT (r.status IN ('error', 'skipped'))
      AND NOT (r.details @> '{"quiet_day": true}'::jsonb)
      AND NOT EXISTS (
          SELECT FROM connections_maintenancewindow m
          WHERE m.connection_id = u.connection_id AND m.ends_at >= %(windows_since)s
            AND m.starts_at <= r.bucket_start AND r.bucket_start < m.ends_at
      )
    ORDER BY r.bucket_start, r.started_at DESC
) p
UNION ALL
SELECT 2, u.table_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM unjudged u
WHERE EXISTS (
    SELECT FROM monitors_checkresult r
    WHERE r.table_id = u.table_id AND r.series = u.series AND r.bucket_start >= u.midnight
      AND r.bucket_start < u.bucket_start AND r.kind = 'volume' AND r.started_at >= %(first_midnight)s
      AND r.started_at < %(recorded_by)s AND r.details @> '{"quiet_day": true}'
)
UNION ALL
SELECT 3, u.table_id, NULL, s.bucket_start, s.observed_value, NULL, NULL, s.marked_expected, s.is_anomaly, NULL,
       s.expected, s.score
FROM unjudged u CROSS JOIN LATERAL (
    SELECT DISTINCT ON (r.bucket_start)
           r.bucket_start, r.is_anomaly, r.marked_expected, r.observed_value, r.details -> 'expected' AS expected,
           r.details -> 'score' AS score
    FROM monitors_checkresult r
    WHERE r.table_id = u.table_id AND r.series = u.series AND r.bucket_start < u.bucket_start
      AND r.bucket_start >= u.bucket_start - (%(confirmations)s - 1) * u.width
      AND r.bucket_start = ANY (
          ARRAY(SELECT u.bucket_start - k * u.width FROM generate_series(1, %(confirmations)s - 1) AS k)
      )
      AND r.kind = 'volume' AND r.started_at >= %(first_streak)s AND r.started_at < %(recorded_by)s
      AND r.details @> '{"judged": true}' AND NOT r.details ? 'repeats_verdict_of'
    ORDER BY r.bucket_start, r.started_at DESC
) s
"""

RECORDED_MARGIN = timedelta(days=2)
"""No result is recorded (its `started_at`, a run's clock) more than this after both now and the latest bucket
under test: clocks of several daemons differ by far less, and a bucket is judged after it ends."""


class Judgement(NamedTuple):
    """What a repeated verdict needs of a bucket's first judgement (a CheckResult's columns; no model built)."""

    pk: int
    table_id: int
    expected_lower: float | None
    expected_upper: float | None
    marked_expected: bool
    details: dict


@dataclass
class JudgeReads:
    """What `judge_reads` read of a batch's tables, by table id."""

    judged: dict[int, Judgement] = field(default_factory=dict)
    """The first judgement of each bucket under test that a run already judged; the other parts are only read for
    the tables not in it."""
    history: dict[int, dict[datetime, float]] = field(default_factory=lambda: defaultdict(dict))
    """{bucket_start: value} of the current series usable for training, one value per bucket."""
    quiet_day_marked: set[int] = field(default_factory=set)
    """Tables whose day under test already had a bucket pass as a quiet day."""
    streak_rows: dict[int, list[tuple]] = field(default_factory=lambda: defaultdict(list))
    """(bucket, is_anomaly, marked_expected, value, expected, score) of the first judgement of each of the buckets
    right before the bucket under test that may confirm a level shift (`_streak_buckets`), oldest first; at least the
    bucket right before it, whose verdict `_previous_anomalies` reads, even when shifts are never accepted."""


def judge_reads(*, volume: dict[int, Outcome], tables: dict[int, MonitoredTable], confirmations: int) -> JudgeReads:
    """Read what the judge needs of the batch's tables (`volume`: {table id: outcome}) in one statement
    (JUDGE_READS)."""
    reads = JudgeReads()
    if not volume:
        return reads
    now = timezone.now()
    outcomes = list(volume.values())
    widths = [timedelta(seconds=o.details.get("bucket_seconds", 3600)) for o in outcomes]
    latest = max(o.bucket_start for o in outcomes)
    first = min(o.bucket_start for o in outcomes)
    midnights = [_day_of(o)[0] for o in outcomes]
    with binary_cursor() as cursor:
        cursor.execute(
            JUDGE_READS,
            {
                "tables": list(volume),
                "connections": [tables[i].connection_id for i in volume],
                "series": [_series_of(o) for o in outcomes],
                "buckets": [o.bucket_start for o in outcomes],
                "widths": widths,
                "midnights": midnights,
                "first": first,
                "recorded_by": max(now, latest) + RECORDED_MARGIN,
                "window": TRAINING_WINDOW,
                "training_first": first + timedelta(seconds=1) - TRAINING_WINDOW,
                "windows_since": now - 2 * TRAINING_WINDOW,
                "first_midnight": min(midnights),
                "confirmations": max(confirmations, 2),
                "first_streak": min(
                    o.bucket_start - (max(confirmations, 2) - 1) * width for o, width in zip(outcomes, widths)
                ),
            },
            binary=True,
        )
        rows = cursor.fetchall()
    for part, table_id, pk, at, value, lower, upper, marked, anomalous, details, expected, score in rows:
        if part == 1:
            reads.history[table_id][at] = value
        elif part == 0:
            reads.judged[table_id] = Judgement(pk, table_id, lower, upper, marked, details)
        elif part == 2:
            reads.quiet_day_marked.add(table_id)
        else:
            reads.streak_rows[table_id].append((at, anomalous, marked, value, expected, score))
    for streak in reads.streak_rows.values():
        streak.sort(key=lambda row: row[0])
    return reads


def training_history(
    *, tables: list[MonitoredTable], until: datetime, series: dict[int, str]
) -> dict[int, dict[datetime, float]]:
    """Per table: {bucket_start: value} of its current series (`series[table.id]`) usable for training, one
    value per bucket, before `until` (as `judge_reads` reads them for a bucket under test starting a second
    before `until`)."""
    bucket = until - timedelta(seconds=1)
    volume = {
        t.id: Outcome(kind=VOLUME, status=Status.PASS, bucket_start=bucket, details={"series": series[t.id]})
        for t in tables
    }
    reads = judge_reads(volume=volume, tables={t.id: t for t in tables}, confirmations=0)
    return reads.history


def _finite(value: float | None) -> float | None:
    """JSON and the API carry only finite numbers."""
    return value if value is None or math.isfinite(value) else None


def _sentence(outcome: Outcome, verdict: str, explanation: str) -> str:
    """One sentence: what was counted, the verdict, why (and the table's total, when the check gave it)."""
    subject = outcome.details.get("subject") or f"{baselines.format_number(outcome.observed_value)} rows"
    context = outcome.details.get("context")
    return f"{subject} {verdict} ({explanation}){'; ' + context if context else ''}."


def _explanation(*, seasonality: str, bucket_seconds: int, points: int, spread_source: str) -> str:
    label = baselines.SEASONALITY_LABELS.get(seasonality, seasonality)
    width = "1-day" if bucket_seconds == DAY_SECONDS else f"{max(1, bucket_seconds // 3600)}-hour"
    floor = {"counting_noise": ", spread set by counting noise", "relative_floor": ", spread set by the 0.5% floor"}
    return f"{label}, {width} buckets, {points} training points{floor.get(spread_source, '')}"


def _apply(outcome: Outcome, verdict: baselines.Verdict, *, sensitivity: float) -> None:
    outcome.expected_lower = _finite(verdict.expected_lower)
    outcome.expected_upper = _finite(verdict.expected_upper)
    outcome.is_anomaly = verdict.is_anomaly
    outcome.status = Status.FAIL if verdict.is_anomaly else Status.PASS
    bucket_seconds = outcome.details.get("bucket_seconds", 3600)
    outcome.details.update(
        judged=True,
        learning=verdict.learning,
        seasonality=verdict.seasonality,
        score=_finite(verdict.score),
        expected=_finite(verdict.median),
        spread=_finite(verdict.spread),
        spread_source=verdict.spread_source or None,
        tail_probability=verdict.tail_probability,
        dispersion=_finite(verdict.dispersion),
        relative_noise=_finite(verdict.relative_noise),
        sensitivity=sensitivity,
        bucket_seconds=bucket_seconds,
        training_points=verdict.training_points,
    )
    if verdict.quiet_day:
        outcome.details["quiet_day"] = True
    if verdict.after_anomaly:
        outcome.details["after_anomaly"] = verdict.after_anomaly
    if verdict.quiet_day_band:
        outcome.details["quiet_day_band"] = True
    if verdict.learning:
        outcome.message = _sentence(outcome, "is not judged yet", verdict.message.rstrip(".").lower())
        return
    explanation = _explanation(
        seasonality=verdict.seasonality,
        bucket_seconds=bucket_seconds,
        points=verdict.training_points,
        spread_source=verdict.spread_source,
    )
    outcome.message = _sentence(outcome, verdict.verdict, explanation)


def _repeat(outcome: Outcome, *, previous: Judgement, table: MonitoredTable) -> None:
    """A bucket already judged: hold its value (it may have grown with late rows) against the same band."""
    lower, upper, value = previous.expected_lower, previous.expected_upper, outcome.observed_value
    outcome.expected_lower, outcome.expected_upper = lower, upper
    before = previous.details
    whole = _series_of(outcome).startswith("rows:")
    learning = before.get("learning", False)
    expected = before.get("expected")
    small = expected is not None and (
        abs(value - expected) < table.min_absolute_change
        or abs(value - expected) < table.min_relative_change * abs(expected)
    )
    judged = not learning and lower is not None and upper is not None
    band_text = f"the expected {baselines.band(lower, upper, whole=whole)}" if judged else ""
    if before.get("quiet_day_band"):
        band_text = f"{band_text} of the table's quiet days"
    if not judged:
        verdict, anomaly = "is not judged yet", False
    elif previous.marked_expected:
        verdict, anomaly = "is in a bucket accepted as expected", False
    elif before.get("quiet_day") and value < lower:
        verdict, anomaly = f"is below {band_text} but as quiet as the table's quiet days", False
    elif value < lower and value == 0 and table.direction != "spike":
        verdict, anomaly = f"is a drop to zero from {band_text}", True
    elif value > upper and table.direction != "drop" and not small:
        verdict, anomaly = f"is above {band_text}", True
    elif value < lower and table.direction != "spike" and not small:
        verdict, anomaly = f"is below {band_text}", True
    else:
        verdict, anomaly = f"is within {band_text}", False
    if before.get("quiet_day") and not anomaly:
        outcome.details["quiet_day"] = True  # a quiet day's bucket stays out of training
    outcome.is_anomaly = anomaly
    outcome.status = Status.FAIL if anomaly else Status.PASS
    kept = (
        "seasonality", "score", "expected", "spread", "spread_source", "dispersion", "relative_noise", "after_anomaly",
        "quiet_day_band", "sensitivity", "bucket_seconds", "training_points",
    )  # fmt: skip
    outcome.details.update({key: before[key] for key in kept if key in before})
    outcome.details.update(judged=True, learning=learning, repeats_verdict_of=previous.pk)
    if learning:
        explanation = "the bucket was judged while the baseline was learning"
    else:
        explanation = _explanation(
            seasonality=before.get("seasonality", "none"),
            bucket_seconds=before.get("bucket_seconds", 3600),
            points=before.get("training_points", 0),
            spread_source=before.get("spread_source") or "",
        )
        explanation = f"{explanation}; band of the bucket's first judgement"
    outcome.message = _sentence(outcome, verdict, explanation)


MAX_SHIFT_FACTOR = 4.0
"""A new level is accepted automatically only within a factor of 4 of the old one: a fall to a few percent
(an outage, a holiday) or a tenfold burst stays an incident until an operator rebaselines."""


SHIFT_LOOKBACK = 24
SHIFT_MIN_SCORE = 1.0
"""A shifted table's quiet buckets may pass inside a wide band: they count in the confirming run when they deviate
the same way by at least 1 robust sd, and the accepted level starts at the earliest of up to 24 such buckets
right before that run."""


def _plausible_shift(value: float, expected: float) -> bool:
    return expected > 0 and value > 0 and 1 / MAX_SHIFT_FACTOR <= value / expected <= MAX_SHIFT_FACTOR


def _streak_buckets(outcome: Outcome, confirmations: int) -> list[datetime]:
    width = timedelta(seconds=outcome.details.get("bucket_seconds", 3600))
    return [outcome.bucket_start - k * width for k in range(confirmations - 1, 0, -1)]


def _shift_streaks(
    candidates: list[tuple[MonitoredTable, Outcome, float]], *, confirmations: int, rows: dict[int, list[tuple]]
) -> dict[int, list[tuple[datetime, float]]]:
    """`_shift_streak` of each (table, outcome, expected) candidate of a batch whose value is a plausible new
    level, from the first judgements of the buckets before its own (`rows`, by table id, read by `judge_reads`),
    with one statement for the maintenance windows (none when no candidate has a streak): {table id: streak} of
    those that have one."""
    plausible = [(t, o, e) for t, o, e in candidates if _plausible_shift(o.observed_value, e)]
    if not plausible:
        return {}
    wanted = {table.id: _streak_buckets(outcome, confirmations) for table, outcome, _ in plausible}
    streaks = {
        table.id: streak
        for table, outcome, expected in plausible
        if (
            streak := _shift_streak(
                outcome=outcome, expected=expected, wanted=wanted[table.id], rows=rows.get(table.id, [])
            )
        )
    }
    if not streaks:
        return {}
    connection_of = {table.id: table.connection_id for table, _, _ in plausible}
    windows = windows_by_connection(
        connection_ids={connection_of[i] for i in streaks}, since=min(wanted[i][0] for i in streaks)
    )
    bucket_of = {table.id: outcome.bucket_start for table, outcome, _ in plausible}
    return {
        table_id: streak
        for table_id, streak in streaks.items()
        if not any(
            start <= bucket < end
            for start, end in windows.get(connection_of[table_id], ())
            for bucket in [*wanted[table_id], bucket_of[table_id]]
        )
    }


def _shift_streak(*, outcome: Outcome, expected: float, wanted: list[datetime], rows: list[tuple]):
    """The buckets right before the outcome's (`wanted`, the first judgements of those read in `rows`) that, with
    it, may confirm a new level: the `confirmations - 1` previous buckets of its series, each off its expected
    value on the same side as the outcome by at least `SHIFT_MIN_SCORE` robust sd, within `MAX_SHIFT_FACTOR` of it
    (so never empty), and at least half of all of them judged anomalous (a quiet bucket of a shifted table may
    pass inside its wide band without breaking the run); maintenance windows are `_shift_streaks`' to rule out.
    [(bucket, value)] or None."""
    rising = outcome.observed_value > expected
    streak, anomalous_buckets = [], 1
    for bucket, anomalous, marked, value, then_expected, score in rows:
        if marked or then_expected is None or score is None or (value > then_expected) != rising:
            return None
        if abs(score) < SHIFT_MIN_SCORE or not _plausible_shift(value, then_expected):
            return None
        anomalous_buckets += anomalous
        streak.append((bucket, value))
    if [bucket for bucket, _ in streak] != wanted or 2 * anomalous_buckets < len(wanted) + 1:
        return None
    return streak


def _shift_start(
    *, table: MonitoredTable, outcome: Outcome, first: datetime, rising: bool
) -> list[tuple[datetime, float]]:
    """The buckets of the new level before `first` (the confirming streak's first bucket): the unbroken run of up
    to `SHIFT_LOOKBACK` buckets right before it that already deviated the same way by `SHIFT_MIN_SCORE` robust sd,
    anomalous or not, oldest first as [(bucket, value)], so the old shape is not rescaled from points that were
    already at the new level."""
    width = timedelta(seconds=outcome.details.get("bucket_seconds", 3600))
    rows = {
        bucket: (score, value)
        for bucket, score, value in CheckResult.objects.filter(
            table_id=table.id,
            kind=VOLUME,
            series=_series_of(outcome),
            bucket_start__gte=first - SHIFT_LOOKBACK * width,
            bucket_start__lt=first,
            details__judged=True,
            details__repeats_verdict_of__isnull=True,
            marked_expected=False,
        )
        .order_by("bucket_start", "-started_at")
        .distinct("bucket_start")
        .values_list("bucket_start", "details__score", "observed_value")
    }
    run: list[tuple[datetime, float]] = []
    bucket = first - width
    while bucket in rows and rows[bucket][0] is not None and rows[bucket][1] is not None:
        score, value = rows[bucket]
        if not (score >= SHIFT_MIN_SCORE if rising else score <= -SHIFT_MIN_SCORE):
            break
        run.insert(0, (bucket, value))
        bucket -= width
    return run


def _may_shift(outcome: Outcome, verdict: baselines.Verdict, confirmations: int) -> bool:
    """An anomalous verdict that, with its streak, may accept a new level."""
    return verdict.is_anomaly and confirmations >= 2 and bool(outcome.observed_value) and verdict.median is not None


def _accept_level_shift(*, table, outcome, points, judge, streak, expected: float) -> baselines.Verdict | None:
    """Automatic acceptance of a level shift: after `level_shift_confirmations()` buckets in a row (`streak`, from
    `_shift_streaks`) that one new level explains (the latest judged against the old shape rescaled to the earlier
    ones passes), the table's baseline restarts from the first of them, or from the run of buckets right before
    them that already deviated the same way (`_shift_start`), and they train it (as if marked expected)."""
    rising = outcome.observed_value > expected
    streak = [*_shift_start(table=table, outcome=outcome, first=streak[0][0], rising=rising), *streak]
    since = streak[0][0]
    verdict = judge(history={**points, **dict(streak)}, level_since=since)
    if verdict.learning or verdict.is_anomaly:
        return None
    MonitoredTable.objects.filter(pk=table.pk).update(baseline_since=since)
    table.baseline_since = since
    CheckResult.objects.filter(
        table_id=table.id, kind=VOLUME, series=_series_of(outcome), bucket_start__in=[b for b, _ in streak]
    ).update(marked_expected=True)
    return verdict


def _may_continue(verdict: baselines.Verdict, sensitivity: float) -> bool:
    """A passing verdict that the narrower band of a bucket right after an anomalous one could turn into a failure:
    judged by its exact count tail, and beyond `baselines.run_limit` on one side."""
    tail = verdict.tail_probability
    return not verdict.is_anomaly and tail is not None and tail < baselines.run_limit(sensitivity)


def _previous_anomalies(
    candidates: list[tuple[MonitoredTable, Outcome, dict[datetime, float]]], *, rows: dict[int, list[tuple]]
) -> dict[int, str]:
    """{table id: "high" or "low"} of the (table, outcome, training points) candidates (`_may_continue`) whose bucket
    right before the outcome's was judged anomalous on that side (and not marked expected): the next bucket of a
    lasting anomaly is judged against a narrower band on that side (`baselines.run_limit`). Only buckets missing
    from the training points can be anomalous; their first judgements are among the streak rows `judge_reads`
    read (`rows`, by table id: the buckets right before each bucket under test), so this sends no statement."""
    after = {}
    for table, outcome, points in candidates:
        previous = outcome.bucket_start - timedelta(seconds=outcome.details.get("bucket_seconds", 3600))
        if previous in points:
            continue
        for bucket, anomalous, marked, value, expected, _ in rows.get(table.id, ()):
            if bucket == previous and anomalous and not marked and None not in (value, expected) and value != expected:
                after[table.id] = "high" if value > expected else "low"
    return after


def _day_of(outcome: Outcome) -> tuple[datetime, datetime]:
    """Midnight of the outcome's bucket (its own clock, as the seasonal buckets read it) and the bucket's start."""
    return outcome.bucket_start.replace(hour=0, minute=0, second=0, microsecond=0), outcome.bucket_start


def _quiet_days_marked(days: dict[int, tuple[Outcome, dict[datetime, float]]], *, marked: set[int]) -> set[int]:
    """The ids of {table id: (outcome, training points)} whose outcome's day already had a bucket pass as a quiet
    day (`marked`, read by `judge_reads`), counted only for days whose training points have a gap, as quiet-day
    buckets leave."""
    quiet = set()
    for table_id, (outcome, points) in days.items():
        if table_id not in marked:
            continue
        midnight, bucket = _day_of(outcome)
        width = timedelta(seconds=outcome.details.get("bucket_seconds", 3600))
        if (
            width < timedelta(days=1)
            and sum(1 for at in points if midnight <= at < bucket) < (bucket - midnight) / width
        ):
            quiet.add(table_id)
    return quiet


def _on_holiday(table: MonitoredTable, outcome: Outcome) -> bool:
    """The bucket falls on a date of its connection's holiday calendar, for a table marked quiet on holidays (the
    date of the bucket's own clock, as its seasonal buckets read it)."""
    return table.quiet_on_holidays and outcome.bucket_start.date() in table.connection.holidays


def _quiet_day_keep_out(*, table: MonitoredTable, outcome: Outcome, quiet_today: bool, holiday: bool = False) -> None:
    """A quiet day (a holiday) trains nothing, not even its ordinary buckets: its nights before the first quiet
    verdict are marked now, its later buckets as they are judged. Otherwise a holiday's nights, quieter than a
    working day's, would drag its weekday's level down and the same weekday a week later would alert. A date of the
    connection's holiday calendar (``holiday``) is a quiet day from midnight."""
    if outcome.details.get("quiet_day"):
        midnight, bucket = _day_of(outcome)
        earlier = list(
            CheckResult.objects.filter(
                table_id=table.id,
                kind=VOLUME,
                series=_series_of(outcome),
                bucket_start__gte=midnight,
                bucket_start__lt=bucket,
                started_at__gte=midnight,
                is_anomaly=False,
            )
        )
        earlier = [result for result in earlier if not result.details.get("quiet_day")]
        for result in earlier:
            result.details = {**result.details, "quiet_day": True, "quiet_day_of": bucket.isoformat()}
        CheckResult.objects.bulk_update(earlier, ["details"])
    elif quiet_today and not outcome.is_anomaly:
        outcome.details["quiet_day"] = True
        day = "a holiday of the connection's calendar" if holiday else "part of a quiet day"
        outcome.message = f"{outcome.message[:-1]}; {day}, kept out of training."
    if holiday:
        outcome.details["holiday"] = True


def _width_drift(outcome: Outcome, *, history: list[tuple[datetime, float]]) -> None:
    """Note in a rows-per-bucket outcome when its series' rate has drifted to another bucket width: the next
    run starts a new series at that width (monitors/checks/volume.py `_series`)."""
    details = outcome.details
    if not _series_of(outcome).startswith("rows:") or details.get("fixed_width"):
        return
    width = timedelta(seconds=details.get("bucket_seconds", 3600))
    drift = volume.width_after_drift(width=width, history=history)
    if drift is None:
        return
    new_width, rows_per_hour = drift
    details["width_change"] = {"to_seconds": int(new_width.total_seconds()), "rows_per_hour": round(rows_per_hour, 3)}
    change = f"{volume.width_label(new_width)} buckets from the next run (the rate is now {rows_per_hour:,.1f} rows/h)"
    details["context"] = f"{details['context']}; {change}" if details.get("context") else change


def volume_judge(*, runs) -> None:
    """Give each new volume outcome of a batch its verdict and expected band (in place)."""
    volume: dict[int, Outcome] = {}
    tables: dict[int, MonitoredTable] = {}
    for run in runs:
        for outcome in run.outcomes:
            if outcome.kind == VOLUME and outcome.status == Status.PASS and outcome.bucket_start is not None:
                volume[run.table.id] = outcome
                tables[run.table.id] = run.table
    confirmations = level_shift_confirmations()
    reads = judge_reads(volume=volume, tables=tables, confirmations=confirmations)
    for table_id, previous in reads.judged.items():
        _repeat(volume.pop(table_id), previous=previous, table=tables[table_id])
    if not volume:
        return
    history = reads.history
    training: dict[int, tuple[Outcome, dict[datetime, float]]] = {}
    for table_id, outcome in volume.items():
        points = dict(outcome.history)
        points.update(history.get(table_id, {}))
        training[table_id] = (outcome, {at: value for at, value in points.items() if at < outcome.bucket_start})
    quiet_days = _quiet_days_marked(training, marked=reads.quiet_day_marked)
    judged: dict[int, tuple] = {}
    for table_id, (outcome, points) in training.items():
        table = tables[table_id]
        _width_drift(outcome, history=sorted(points.items()))
        sensitivity = effective_sensitivity(table)
        daily = outcome.details.get("bucket_seconds", 3600) >= DAY_SECONDS

        holiday = _on_holiday(table, outcome)
        quiet_today = holiday or table_id in quiet_days

        def judge(
            *,
            history: dict,
            level_since,
            after_anomaly=None,
            table=table,
            outcome=outcome,
            sensitivity=sensitivity,
            daily=daily,
            quiet_today=quiet_today,
        ):
            return baselines.evaluate(
                history=sorted(history.items()),
                at=outcome.bucket_start,
                value=outcome.observed_value,
                sensitivity=sensitivity,
                direction=table.direction,
                seasonality=table.seasonality,
                min_relative_change=table.min_relative_change,
                min_absolute_change=table.min_absolute_change,
                min_history_points=MIN_DAILY_POINTS if daily else baselines.MIN_HISTORY_POINTS,
                unit="rows",
                counts=_series_of(outcome).startswith("rows:"),
                level_since=level_since,
                quiet_today=quiet_today,
                after_anomaly=after_anomaly,
            )

        verdict = judge(history=points, level_since=table.baseline_since)
        judged[table_id] = (verdict, points, judge, sensitivity, quiet_today, holiday)
    after = _previous_anomalies(
        [
            (tables[table_id], volume[table_id], points)
            for table_id, (verdict, points, _, sensitivity, *_) in judged.items()
            if _may_continue(verdict, sensitivity)
        ],
        rows=reads.streak_rows,
    )
    for table_id, side in after.items():
        _, points, judge, *rest = judged[table_id]
        verdict = judge(history=points, level_since=tables[table_id].baseline_since, after_anomaly=side)
        judged[table_id] = (verdict, points, judge, *rest)
    streaks = _shift_streaks(
        [
            (tables[table_id], volume[table_id], verdict.median)
            for table_id, (verdict, *_) in judged.items()
            if _may_shift(volume[table_id], verdict, confirmations)
        ],
        confirmations=confirmations,
        rows=reads.streak_rows,
    )
    for table_id, (verdict, points, judge, sensitivity, quiet_today, holiday) in judged.items():
        table, outcome = tables[table_id], volume[table_id]
        streak = streaks.get(table_id)
        accepted = streak is not None and _accept_level_shift(
            table=table, outcome=outcome, points=points, judge=judge, streak=streak, expected=verdict.median
        )
        _apply(outcome, accepted or verdict, sensitivity=sensitivity)
        if not verdict.learning:
            _quiet_day_keep_out(table=table, outcome=outcome, quiet_today=quiet_today, holiday=holiday)
        if accepted:
            outcome.details["level_shift_accepted"] = {
                "since": table.baseline_since.isoformat(),
                "confirmations": confirmations,
            }
            outcome.message = (
                f"{outcome.message[:-1]}; a new level since {table.baseline_since:%Y-%m-%d %H:%M} is accepted after "
                f"{confirmations} buckets in a row that it explains."
            )
