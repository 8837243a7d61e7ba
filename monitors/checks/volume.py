"""Volume: the table's row count, cheaply, and rows per time bucket when a timestamp column is set.

Row count: tables up to EXACT_COUNT_MAX_PAGES pages (1 MiB) are counted exactly with count(*); larger
ones are estimated from the catalog like the planner does: pg_class.reltuples / relpages scaled by the
relation's current size in pages.

Rows per bucket (timestamp column set): count(*) over the last complete bucket before the replica's
replay position — an hour, or a day for a `date` column — cost-guarded (large tables need an index on
the column); the same statement reads the newest timestamp, which the freshness check of the run reuses.
The first run (and the first after a rebaseline) also reads the table's own history,
rows per bucket over the training window in one GROUP BY query, so anomalies are judged from the start.
Without a timestamp column the series is the total row count, one value per hour. A small table with a
timestamp column is read in one scan (total, rows in the bucket and the newest timestamp, which the
freshness check of the same run reuses).
"""

import math
from datetime import UTC, datetime, timedelta

from psycopg import sql

from connections.guardrails import GuardrailStop
from monitors.checks.base import CheckContext, Outcome, Status, fmt_number, format_quantity, table_catalog

KIND = "volume"
LABEL = "Volume"
SCOPE = "table"
CONFIGURABLE = False
QUERIES = 4
EXACT_COUNT_MAX_PAGES = 128
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
BACKFILL_WINDOW = timedelta(days=14)

_COUNT = "SELECT count(*) FROM {relation}"
# The bucket's rows, and the newest timestamp (an index descent) for the freshness check of the same run: one
# statement instead of two.
_BUCKET_COUNT = (
    "SELECT count(*), (SELECT max({column}) FROM {relation}) FROM {relation} WHERE {column} >= %s AND {column} < %s"
)
# Small tables (up to EXACT_COUNT_MAX_PAGES): one scan gives the exact total, the bucket and the newest
# timestamp (which freshness then reuses), instead of three statements.
_SMALL_SCAN = "SELECT count(*), count(*) FILTER (WHERE {column} >= %s AND {column} < %s), max({column}) FROM {relation}"
_BACKFILL = (
    "SELECT date_trunc({unit}, {column}::timestamptz) AS bucket, count(*) FROM {relation}"
    " WHERE {column} >= %s AND {column} < %s GROUP BY 1 ORDER BY 1"
)


def format_value(value: float) -> str:
    """Rows, whole: an expected band of 915.28 rows reads as 915."""
    return format_quantity(round(value)) if math.isfinite(value) else format_quantity(value)


def _size(ctx: CheckContext) -> tuple:
    """(reltuples, relpages, relkind, pages now, timestamp column type) from the table's catalog entry."""
    catalog = table_catalog(ctx)
    if catalog is None:
        raise GuardrailStop(f"{ctx.table.qualified_name} no longer exists on the replica", reason="missing")
    return catalog.reltuples, catalog.relpages, catalog.relkind, catalog.pages_now, catalog.timestamp_type


def _is_small(size: tuple) -> bool:
    _, _, relkind, pages_now, _ = size
    return relkind in ("r", "m", "p") and pages_now is not None and pages_now <= EXACT_COUNT_MAX_PAGES


def row_count(ctx: CheckContext, size: tuple | None = None) -> tuple[float, str]:
    """Total rows and how they were measured (`exact` or `estimate`)."""
    reltuples, relpages, relkind, pages_now, _ = size or _size(ctx)
    estimable = relkind in ("r", "m", "p") and relpages and reltuples is not None and reltuples >= 0
    if estimable and pages_now is not None and pages_now > EXACT_COUNT_MAX_PAGES:
        return round(reltuples / relpages * pages_now), "estimate"
    query = sql.SQL(_COUNT).format(relation=ctx.relation)
    if pages_now is None or pages_now > EXACT_COUNT_MAX_PAGES:
        ctx.runner.guard_cost(query, cached=ctx.plan_costs, key="count")
    return ctx.runner.fetchone(query)[0], "exact"


def _floor(moment: datetime, bucket: timedelta) -> datetime:
    moment = moment.astimezone(UTC)
    if bucket == DAY:
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return moment.replace(minute=0, second=0, microsecond=0)


def _ceil(moment: datetime, bucket: timedelta) -> datetime:
    floor = _floor(moment, bucket)
    return floor if floor == moment else floor + bucket


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _backfill(ctx: CheckContext, *, bucket: timedelta, until: datetime) -> list[tuple[datetime, float]]:
    """Rows per bucket from the table itself over the training window (zeros from the first busy bucket on)."""
    table = ctx.table
    start = until - BACKFILL_WINDOW
    if table.baseline_since:
        start = max(start, _ceil(table.baseline_since, bucket))
    if start >= until:
        return []
    query = sql.SQL(_BACKFILL).format(
        unit=sql.Literal("day" if bucket == DAY else "hour"),
        column=sql.Identifier(table.timestamp_column),
        relation=ctx.relation,
    )
    ctx.runner.guard_cost(query, (start, until), cached=ctx.plan_costs, key="volume_backfill")
    counts = {_aware(b): float(n) for b, n in ctx.runner.fetch(query, (start, until), rows=100_000)}
    if not counts:
        return []
    points, moment = [], min(counts)
    while moment < until:
        points.append((moment, counts.get(moment, 0.0)))
        moment += bucket
    return points


def run(ctx: CheckContext, check=None) -> Outcome:
    table = ctx.table
    size = _size(ctx)
    column_type = size[4]
    if table.timestamp_column and column_type is not None and _is_small(size):
        try:
            return _run_small(ctx, column_type=column_type)
        except GuardrailStop as refused:
            if refused.reason != "cost":
                raise  # too expensive to scan at once: measure the parts separately below
    total, method = row_count(ctx, size)
    details = {"total_rows": total, "method": method}
    hour = _floor(ctx.data_as_of, HOUR)
    if not table.timestamp_column or column_type is None:
        details["series"] = "total_rows"
        return Outcome(
            kind=KIND,
            status=Status.PASS,
            observed_value=total,
            bucket_start=hour,
            details=details,
            message=f"{fmt_number(total)} rows ({method})",
        )
    bucket = DAY if column_type == "date" else HOUR
    bucket_end = _floor(ctx.data_as_of, bucket)
    bucket_start = bucket_end - bucket
    query = sql.SQL(_BUCKET_COUNT).format(relation=ctx.relation, column=sql.Identifier(table.timestamp_column))
    try:
        ctx.runner.guard_cost(query, (bucket_start, bucket_end), cached=ctx.plan_costs, key="volume_bucket")
    except GuardrailStop as refused:
        details.update(series="total_rows", bucket_refused=str(refused))
        return Outcome(
            kind=KIND,
            status=Status.PASS,
            observed_value=total,
            bucket_start=hour,
            details=details,
            message=f"{fmt_number(total)} rows ({method}); rows per bucket {refused}",
        )
    in_bucket, ctx.facts["latest"] = ctx.runner.fetchone(query, (bucket_start, bucket_end))
    return _bucketed(ctx, in_bucket=in_bucket, bucket=bucket, bucket_start=bucket_start, details=details)


def _run_small(ctx: CheckContext, *, column_type: str) -> Outcome:
    """A small table with a timestamp column: total, bucket and newest timestamp in one scan."""
    table = ctx.table
    bucket = DAY if column_type == "date" else HOUR
    bucket_end = _floor(ctx.data_as_of, bucket)
    bucket_start = bucket_end - bucket
    query = sql.SQL(_SMALL_SCAN).format(relation=ctx.relation, column=sql.Identifier(table.timestamp_column))
    ctx.runner.guard_cost(query, (bucket_start, bucket_end), cached=ctx.plan_costs, key="volume_small_scan")
    total, in_bucket, latest = ctx.runner.fetchone(query, (bucket_start, bucket_end))
    ctx.facts["latest"] = latest
    details = {"total_rows": total, "method": "exact"}
    return _bucketed(ctx, in_bucket=in_bucket, bucket=bucket, bucket_start=bucket_start, details=details)


def _bucketed(ctx: CheckContext, *, in_bucket: int, bucket: timedelta, bucket_start: datetime, details: dict):
    """The volume outcome for rows in a bucket (and the first run's backfill of the table's own history)."""
    table = ctx.table
    bucket_end = bucket_start + bucket
    total, method = details["total_rows"], details["method"]
    details["series"] = "rows_per_day" if bucket == DAY else "rows_per_hour"
    outcome = Outcome(
        kind=KIND,
        status=Status.PASS,
        observed_value=in_bucket,
        bucket_start=bucket_start,
        details=details,
        message=f"{fmt_number(in_bucket)} rows in {bucket_start:%Y-%m-%d %H:00}–{bucket_end:%H:00} UTC; "
        f"{fmt_number(total)} rows in all ({method})",
    )
    if table.backfilled_at is None:
        try:
            outcome.history = _backfill(ctx, bucket=bucket, until=bucket_start)
            details["backfilled"] = len(outcome.history)
        except GuardrailStop as refused:
            details["backfilled"] = 0
            details["backfill_refused"] = str(refused)
    return outcome
