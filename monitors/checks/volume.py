"""Volume: the table's row count, cheaply, and rows per time bucket when a timestamp column is set.

Row count: tables up to EXACT_COUNT_MAX_PAGES pages (1 MiB) are counted exactly with count(*); larger
ones are estimated from the catalog like the planner does: pg_class.reltuples / relpages scaled by the
relation's current size in pages.

Rows per bucket (timestamp column set): count(*) over the last complete bucket before the replica's
replay position — an hour, or a day for a `date` column — cost-guarded (large tables need an index on
the column). The first run (and the first after a rebaseline) also reads the table's own history,
rows per bucket over the training window in one GROUP BY query, so anomalies are judged from the start.
Without a timestamp column the series is the total row count, one value per hour.
"""

from datetime import UTC, datetime, timedelta

from psycopg import sql

from connections.guardrails import GuardrailStop
from monitors.checks.base import CheckContext, Outcome, fmt_number

KIND = "volume"
QUERIES = 4
EXACT_COUNT_MAX_PAGES = 128
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
BACKFILL_WINDOW = timedelta(days=14)

_SIZE = sql.SQL(
    "SELECT c.reltuples, c.relpages, c.relkind,"
    " CASE WHEN c.relkind IN ('r', 'm', 'p') THEN pg_catalog.pg_relation_size(c.oid)"
    " / current_setting('block_size')::bigint END,"
    " (SELECT pg_catalog.format_type(a.atttypid, NULL) FROM pg_catalog.pg_attribute a"
    "  WHERE a.attrelid = c.oid AND a.attname = %s AND NOT a.attisdropped)"
    " FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname = %s AND c.relname = %s"
)
_COUNT = "SELECT count(*) FROM {relation}"
_BUCKET_COUNT = "SELECT count(*) FROM {relation} WHERE {column} >= %s AND {column} < %s"
_BACKFILL = (
    "SELECT date_trunc({unit}, {column}::timestamptz) AS bucket, count(*) FROM {relation}"
    " WHERE {column} >= %s AND {column} < %s GROUP BY 1 ORDER BY 1"
)


def _size(ctx: CheckContext) -> tuple:
    table = ctx.table
    row = ctx.runner.fetchone(_SIZE, (table.timestamp_column or "", table.schema_name, table.table_name))
    if row is None:
        raise GuardrailStop(f"{table.qualified_name} no longer exists on the replica", reason="missing")
    return row


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
    total, method = row_count(ctx, size)
    column_type = size[4]
    details = {"total_rows": total, "method": method}
    hour = _floor(ctx.data_as_of, HOUR)
    if not table.timestamp_column or column_type is None:
        details["series"] = "total_rows"
        return Outcome(
            kind=KIND,
            status="pass",
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
            status="pass",
            observed_value=total,
            bucket_start=hour,
            details=details,
            message=f"{fmt_number(total)} rows ({method}); rows per bucket {refused}",
        )
    in_bucket = ctx.runner.fetchone(query, (bucket_start, bucket_end))[0]
    details["series"] = "rows_per_day" if bucket == DAY else "rows_per_hour"
    outcome = Outcome(
        kind=KIND,
        status="pass",
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
