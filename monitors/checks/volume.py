"""Volume: the table's row count, cheaply, and rows per time bucket when a timestamp column is set.

Row count: tables up to EXACT_COUNT_MAX_PAGES pages (64 KiB) are counted exactly with count(*); larger
ones are estimated from the catalog like the planner does: pg_class.reltuples / relpages scaled by the
relation's current size in pages (so what a check reads stays flat with the table's size).

Rows per bucket (timestamp column set): count(*) over the last complete bucket before the replica's
replay position, cost-guarded (large tables need an index on the column). The bucket is a day for a
`date` column; otherwise it is as wide as the table's rate needs (1 h, 2 h, 6 h or 1 day: the narrowest
expected to hold ROWS_PER_BUCKET rows), so that a silent bucket of a sparse table can be significant and a
quiet one cannot raise an alert. The same statement reads the newest timestamp, which the freshness
check of the run reuses. Each value belongs to a series, "rows:<column>:<width>" (or
"total_rows"), and trains only that series. A new series (the first run, a rebaseline, another timestamp
column) reads the table's own history, rows per hour over the training window in one GROUP BY query,
chooses the width from that rate and sums the hours into buckets, so anomalies are judged from the start.
When the rate drifts so that another width fits (`width_after_drift`, with hysteresis), the judged result says
so and the next run starts a new series at that width the same way. The same backfill statement reads the
newest timestamp of each hour: the load times freshness seeds its cadence with.
Without a timestamp column the series is the total row count, one value per hour. A small table with a
timestamp column is read in one scan (total, rows in the bucket and the newest timestamp, which the
freshness check of the same run reuses).

In a batch, every table whose series exists (or is new and was backfilled by the batch's backfill statement,
`batch_backfill`: its width is then chosen from those rows) and whose statement's cost is known within the limit
(a fresh estimate, or a bound from its size) is read by one statement for the whole batch (`batch_part`: a UNION
ALL of each table's fixed statement); a table it could not read (the statement failed) reads its own, as outside
a batch.
"""

import functools
import logging
import math
import string
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from psycopg import sql

from connections.guardrails import CheckError, GuardrailStop, known_cost
from monitors.checks.base import (
    CheckContext,
    Outcome,
    Status,
    fmt_number,
    format_quantity,
    known_empty,
    size_cost_bound,
    table_catalog,
    table_tuples,
)

KIND = "volume"
LABEL = "Volume"
SCOPE = "table"
CONFIGURABLE = False
QUERIES = 4
EXACT_COUNT_MAX_PAGES = 8
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
BACKFILL_WINDOW = timedelta(days=14)
BUCKET_WIDTHS = (HOUR, 2 * HOUR, 6 * HOUR, DAY)
ROWS_PER_BUCKET = 10
"""The narrowest width expected to hold this many rows is chosen: below ~9 expected rows even an empty bucket
is not significant (P(0) = e**-9 = 1e-4)."""
TOTAL_ROWS = "total_rows"
RATE_WINDOW = timedelta(days=7)
"""The width is re-chosen from the rate of the series' last week of training points..."""
RATE_MIN_SPAN = timedelta(days=3)
"""...once they cover three days (a new or rebaselined series keeps the width chosen from its backfill)."""

logger = logging.getLogger(__name__)

_COUNT = "SELECT count(*) FROM {relation}"
# The bucket's rows, and the newest timestamp (an index descent) for the freshness check of the same run: one
# statement instead of two.
_BUCKET_COUNT = (
    "SELECT count(*), (SELECT max({column}) FROM {relation}) FROM {relation} WHERE {column} >= %s AND {column} < %s"
)
# Small tables (up to EXACT_COUNT_MAX_PAGES): one scan gives the exact total, the bucket and the newest
# timestamp (which freshness then reuses), instead of three statements.
_SMALL_SCAN = "SELECT count(*), count(*) FILTER (WHERE {column} >= %s AND {column} < %s), max({column}) FROM {relation}"
# Rows per hour (or day), and the newest timestamp of each: the table's load times, which the freshness check of
# the first run learns its update cadence from (a weekly load included) instead of waiting weeks to see it.
_BACKFILL = (
    "SELECT date_trunc({unit}, {column}::timestamptz) AS bucket, count(*), max({column}) FROM {relation}"
    " WHERE {column} >= %s AND {column} < %s GROUP BY 1 ORDER BY 1"
)


# A table's part of a batch's statement (same columns for every part): its number, the exact total (small
# tables), the rows in the bucket and the newest timestamp (as timestamptz: a date is its UTC midnight, a
# timestamp is read as UTC, as `freshness.latest_timestamp` does).
_PART_BUCKET = (
    "(SELECT {number}, NULL::bigint, count(*), (SELECT max({column}) FROM {relation})::timestamptz"
    " FROM {relation} WHERE {column} >= %s AND {column} < %s)"
)
_PART_SMALL = (
    "(SELECT {number}, count(*), count(*) FILTER (WHERE {column} >= %s AND {column} < %s),"
    " max({column})::timestamptz FROM {relation})"
)
_PART_COUNT = "(SELECT {number}, count(*), NULL::bigint, NULL::timestamptz FROM {relation})"


def _template_cut(template: str) -> tuple[tuple[sql.SQL | None, str | None], ...]:
    """A fixed template cut once at its {names} into (SQL text, name) pairs, for `_template_fill`."""
    return tuple((sql.SQL(text) if text else None, name) for text, name, _, _ in string.Formatter().parse(template))


def _template_fill(cut: tuple, **values: sql.Composable) -> sql.Composed:
    """What `sql.SQL(template).format(**values)` returns, without parsing the template again (once per table)."""
    composed = []
    for text, name in cut:
        if text is not None:
            composed.append(text)
        if name is not None:
            composed.append(values[name])
    return sql.Composed(composed)


_CUT_BUCKET, _CUT_SMALL, _CUT_COUNT = (_template_cut(t) for t in (_PART_BUCKET, _PART_SMALL, _PART_COUNT))

# A table's part of a batch's backfill statement: the backfill's rows per hour (or day) with the table's number, the
# newest timestamp as timestamptz (as `freshness.latest_timestamp` reads the per-table statement's).
_PART_BACKFILL = (
    "(SELECT {number}, date_trunc({unit}, {column}::timestamptz), count(*), max({column})::timestamptz"
    " FROM {relation} WHERE {column} >= %s AND {column} < %s GROUP BY 2)"
)


@dataclass(frozen=True)
class BatchRead:
    """What a batch's statement read for one table: `kind` is the part ("bucket", "small" or "count")."""

    kind: str
    bucket_start: datetime | None
    total: int | None = None
    in_bucket: int | None = None
    latest: datetime | None = None


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
    read = ctx.facts.get("batch_read")
    if read is not None and read.total is not None:
        return read.total, "exact"
    query = sql.SQL(_COUNT).format(relation=ctx.relation)
    if pages_now is None or pages_now > EXACT_COUNT_MAX_PAGES:
        ctx.runner.guard_cost(query, cached=ctx.plan_costs, key="count", bound=size_cost_bound(ctx))
    return ctx.runner.fetchone(query)[0], "exact"


@functools.lru_cache(maxsize=256)  # a batch's tables share their few (column, width) pairs
def series_key(column: str, width: timedelta) -> str:
    """The identity of a rows-per-bucket series: what is counted (rows by `column`) and per how long."""
    hours = int(width.total_seconds()) // 3600
    return f"rows:{column}:{hours // 24}d" if hours % 24 == 0 else f"rows:{column}:{hours}h"


def width_label(width: timedelta) -> str:
    hours = int(width.total_seconds()) // 3600
    return "1-day" if hours == 24 else f"{hours}-hour"


def bucket_width_for_rate(rows_per_hour: float) -> timedelta:
    """The narrowest of BUCKET_WIDTHS expected to hold ROWS_PER_BUCKET rows (a day at most)."""
    for width in BUCKET_WIDTHS:
        if rows_per_hour * width.total_seconds() / 3600 >= ROWS_PER_BUCKET:
            return width
    return DAY


def width_after_drift(*, width: timedelta, history: list[tuple[datetime, float]]) -> tuple[timedelta, float] | None:
    """(the width, rows per hour): where a rows-per-bucket series of `width` should move, judged from the rate
    of its last RATE_WINDOW of training points (at least RATE_MIN_SPAN of them); None to keep it.

    Hysteresis, so a rate near a boundary never flaps: wider when its buckets hold fewer than half of
    ROWS_PER_BUCKET (to the narrowest width holding ROWS_PER_BUCKET), narrower only to a width expected to
    hold twice ROWS_PER_BUCKET."""
    if not history:
        return None
    since = history[-1][0] + width - RATE_WINDOW
    recent = [value for moment, value in history if moment >= since]
    span = len(recent) * width
    if span < RATE_MIN_SPAN:
        return None
    rows_per_hour = sum(recent) / (span.total_seconds() / 3600)
    per_bucket = rows_per_hour * width.total_seconds() / 3600
    if per_bucket < ROWS_PER_BUCKET / 2 and width < DAY:
        return bucket_width_for_rate(rows_per_hour), rows_per_hour
    for narrower in BUCKET_WIDTHS:
        if narrower >= width:
            break
        if rows_per_hour * narrower.total_seconds() / 3600 >= 2 * ROWS_PER_BUCKET:
            return narrower, rows_per_hour
    return None


def regroup(hourly: list[tuple[datetime, float]], *, width: timedelta, since: datetime, until: datetime):
    """Hourly counts summed into complete buckets of `width` inside [since, until)."""
    sums: dict[datetime, float] = {}
    for moment, count in hourly:
        start = _floor(moment, width)
        sums[start] = sums.get(start, 0.0) + count
    return [(start, total) for start, total in sorted(sums.items()) if start >= since and start + width <= until]


@functools.lru_cache(maxsize=1024)  # a batch's tables share the replica's `data_as_of` and a few widths
def _floor(moment: datetime, bucket: timedelta) -> datetime:
    """The start of the bucket holding `moment`: buckets are aligned on UTC midnight."""
    moment = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    hours = int(bucket.total_seconds()) // 3600
    return moment - timedelta(hours=moment.hour % hours) if hours <= 24 else moment


def _ceil(moment: datetime, bucket: timedelta) -> datetime:
    floor = _floor(moment, bucket)
    return floor if floor == moment else floor + bucket


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _backfill_start(table, *, bucket: timedelta, until: datetime) -> datetime:
    start = until - BACKFILL_WINDOW
    return max(start, _ceil(table.baseline_since, bucket)) if table.baseline_since else start


def _backfill(ctx: CheckContext, *, bucket: timedelta, until: datetime) -> list[tuple[datetime, float]]:
    """Rows per bucket from the table itself over the training window (zeros from the first busy bucket on)."""
    table = ctx.table
    start = _backfill_start(table, bucket=bucket, until=until)
    if start >= until:
        return []
    read = ctx.facts.get("backfill_read")
    if read is not None and read[:2] == (start, until):
        rows = read[2]
    else:
        query = sql.SQL(_BACKFILL).format(
            unit=sql.Literal("day" if bucket == DAY else "hour"),
            column=sql.Identifier(table.timestamp_column),
            relation=ctx.relation,
        )
        bound = size_cost_bound(ctx)
        ctx.runner.guard_cost(query, (start, until), cached=ctx.plan_costs, key="volume_backfill", bound=bound)
        rows = ctx.runner.fetch(query, (start, until), rows=100_000)
    ctx.facts["update_times"] = [newest for _, _, newest in rows]
    return _points(rows, bucket=bucket, until=until)


def _points(rows: list, *, bucket: timedelta, until: datetime) -> list[tuple[datetime, float]]:
    """The backfill's rows as counts per bucket up to `until`, zeros from the first busy bucket on."""
    counts = {_aware(b): float(n) for b, n, _ in rows}
    if not counts:
        return []
    points, moment = [], min(counts)
    while moment < until:
        points.append((moment, counts.get(moment, 0.0)))
        moment += bucket
    return points


def _new_series_width(table, *, column_type: str, counts: list) -> timedelta:
    """The bucket width of a new series: a day for a date column; the stored width when re-chosen as the rate
    drifted; else the width the backfilled hours' rate asks for (the stored one without any)."""
    stored = timedelta(seconds=table.volume_bucket_seconds or 3600)
    if column_type == "date":
        return DAY
    if _rechosen(table) or not counts:
        return stored
    return bucket_width_for_rate(sum(v for _, v in counts) / len(counts))


def _rechosen(table) -> bool:
    """The series is new because its width is re-chosen (the rate drifted), not because it was never backfilled."""
    return table.backfilled_at is not None and table.volume_series.startswith(f"rows:{table.timestamp_column}:")


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
        details.update(series=TOTAL_ROWS, bucket_seconds=3600, subject=f"{fmt_number(total)} rows in all ({method})")
        return Outcome(
            kind=KIND,
            status=Status.PASS,
            observed_value=total,
            bucket_start=hour,
            details=details,
            message=f"{fmt_number(total)} rows ({method})",
        )
    bucket, history = _series(ctx, column_type=column_type, details=details)
    bucket_end = _floor(ctx.data_as_of, bucket)
    bucket_start = bucket_end - bucket
    read = ctx.facts.get("batch_read")
    if read is not None and read.kind == "bucket" and read.bucket_start == bucket_start:
        ctx.facts["latest"] = read.latest
        return _bucketed(
            ctx, in_bucket=read.in_bucket, bucket=bucket, bucket_start=bucket_start, details=details, history=history
        )
    query = sql.SQL(_BUCKET_COUNT).format(relation=ctx.relation, column=sql.Identifier(table.timestamp_column))
    try:
        ctx.runner.guard_cost(
            query, (bucket_start, bucket_end), cached=ctx.plan_costs, key="volume_bucket", bound=size_cost_bound(ctx)
        )
    except GuardrailStop as refused:
        details.update(
            series=TOTAL_ROWS,
            bucket_seconds=3600,
            bucket_refused=str(refused),
            subject=f"{fmt_number(total)} rows in all ({method})",
            context=f"rows per bucket {refused}",
        )
        return Outcome(
            kind=KIND,
            status=Status.PASS,
            observed_value=total,
            bucket_start=hour,
            details=details,
            message=f"{fmt_number(total)} rows ({method}); rows per bucket {refused}",
        )
    in_bucket, ctx.facts["latest"] = ctx.runner.fetchone(query, (bucket_start, bucket_end))
    return _bucketed(
        ctx, in_bucket=in_bucket, bucket=bucket, bucket_start=bucket_start, details=details, history=history
    )


def _series(ctx: CheckContext, *, column_type: str, details: dict) -> tuple[timedelta, list | None]:
    """The bucket width of the table's series, and its backfilled history if the series is new.

    A new series (never backfilled, rebaselined, counted by another column than the stored one, or re-chosen
    as the rate drifted) reads rows per hour (per day for a date column) from the table over the training
    window; for a timestamp column the width is then chosen from that rate (or is the re-chosen one) and the
    hours are summed into buckets of it."""
    table = ctx.table
    unit = DAY if column_type == "date" else HOUR
    if column_type == "date":
        details["fixed_width"] = True  # a date column counts whole days: no narrower width exists
    known = _known_width(table, column_type=column_type)
    if known is not None:
        return known, None
    rechosen = unit == HOUR and _rechosen(table)
    until = _floor(ctx.data_as_of, unit)
    try:
        counts = _backfill(ctx, bucket=unit, until=until)
    except GuardrailStop as refused:
        details["backfill_refused"] = str(refused)
        return _new_series_width(table, column_type=column_type, counts=[]), []
    width = _new_series_width(table, column_type=column_type, counts=counts)
    if unit == HOUR and counts:
        since = _backfill_start(table, bucket=HOUR, until=until)
        counts = regroup(counts, width=width, since=since, until=_floor(ctx.data_as_of, width))
    if rechosen:
        details["width_rechosen_from"] = table.volume_series
    return width, counts


def _run_small(ctx: CheckContext, *, column_type: str) -> Outcome:
    """A small table with a timestamp column: total, bucket and newest timestamp in one scan."""
    table = ctx.table
    details: dict = {}
    bucket, history = _series(ctx, column_type=column_type, details=details)
    bucket_end = _floor(ctx.data_as_of, bucket)
    bucket_start = bucket_end - bucket
    read = ctx.facts.get("batch_read")
    if read is not None and read.kind == "small" and read.bucket_start == bucket_start:
        total, in_bucket, latest = read.total, read.in_bucket, read.latest
    else:
        query = sql.SQL(_SMALL_SCAN).format(relation=ctx.relation, column=sql.Identifier(table.timestamp_column))
        bound = size_cost_bound(ctx)
        ctx.runner.guard_cost(
            query, (bucket_start, bucket_end), cached=ctx.plan_costs, key="volume_small_scan", bound=bound
        )
        total, in_bucket, latest = ctx.runner.fetchone(query, (bucket_start, bucket_end))
    ctx.facts["latest"] = latest
    details.update(total_rows=total, method="exact")
    return _bucketed(
        ctx, in_bucket=in_bucket, bucket=bucket, bucket_start=bucket_start, details=details, history=history
    )


def _bucketed(
    ctx: CheckContext, *, in_bucket: int, bucket: timedelta, bucket_start: datetime, details: dict, history: list | None
) -> Outcome:
    """The volume outcome for rows in a bucket (with the backfilled history of a new series)."""
    total, method = details["total_rows"], details["method"]
    details.update(series=series_key(ctx.table.timestamp_column, bucket), bucket_seconds=int(bucket.total_seconds()))
    span = _span(bucket_start, bucket)
    context = f"{fmt_number(total)} rows in all ({method})"
    if "width_rechosen_from" in details:
        context += f"; a new series of {width_label(bucket)} buckets, re-chosen as the table's rate drifted"
    details.update(subject=f"{fmt_number(in_bucket)} rows {span}", context=context)
    outcome = Outcome(
        kind=KIND,
        status=Status.PASS,
        observed_value=in_bucket,
        bucket_start=bucket_start,
        details=details,
        message=f"{details['subject']}; {details['context']}",
    )
    if history is not None:
        outcome.history = [(moment, value) for moment, value in history if moment < bucket_start]
        details["backfilled"] = len(outcome.history)
    return outcome


@functools.lru_cache(maxsize=256)  # a batch's tables share their few buckets
def _span(bucket_start: datetime, bucket: timedelta) -> str:
    """When a bucket was, for people: its day for a day's bucket, else its day and hours (UTC)."""
    if bucket == DAY:
        return f"on {bucket_start:%Y-%m-%d}"
    return f"in {bucket_start:%Y-%m-%d %H:00}–{bucket_start + bucket:%H:00} UTC"


def _known_width(table, *, column_type: str) -> timedelta | None:
    """The bucket width of the table's series when it exists (backfilled, counted by this column), else None."""
    width = DAY if column_type == "date" else timedelta(seconds=table.volume_bucket_seconds or 3600)
    if table.backfilled_at is not None and table.volume_series == series_key(table.timestamp_column, width):
        return width
    return None


SMALL_COUNT_COST = 100.0
"""A bound on the planner's cost of counting a table of at most EXACT_COUNT_MAX_PAGES pages (never estimated)."""


def _width_after_backfill(ctx: CheckContext, *, catalog) -> timedelta | None:
    """The width a new series will have, from the rows the batch's backfill statement read for it (so its first
    bucket joins the batch's data statement); None without them. Should the check choose otherwise, its bucket
    would not match the statement's and it reads its own."""
    read = ctx.facts.get("backfill_read")
    if read is None:
        return None
    _, until, rows = read
    unit = DAY if catalog.timestamp_type == "date" else HOUR
    counts = _points(rows, bucket=unit, until=until)
    return _new_series_width(ctx.table, column_type=catalog.timestamp_type, counts=counts)


def batch_part(
    ctx: CheckContext, *, number: int, empty: bool = False
) -> tuple[sql.Composable | None, tuple, str, datetime | None, float] | None:
    """This table's part of its batch's statement: (SQL, parameters, kind, bucket start, cost estimate); None when
    the table must read on its own (no catalog entry, not readable, a new series, a cost estimate stale or over
    the limit), or reads nothing (a large table without a timestamp column: estimated from the catalog). An `empty`
    table's answer is known: its part has no SQL."""
    table, catalog = ctx.table, ctx.facts.get("catalog")
    if catalog is None or not catalog.readable:
        return None
    size = (catalog.reltuples, catalog.relpages, catalog.relkind, catalog.pages_now, catalog.timestamp_type)
    names = {"number": sql.Literal(number), "relation": ctx.relation}
    if not table.timestamp_column or catalog.timestamp_type is None:
        if not _is_small(size):
            return None
        return None if empty else _template_fill(_CUT_COUNT, **names), (), "count", None, SMALL_COUNT_COST
    width = _known_width(table, column_type=catalog.timestamp_type) or _width_after_backfill(ctx, catalog=catalog)
    if width is None:
        return None
    bucket_end = _floor(ctx.data_as_of, width)
    bucket_start = bucket_end - width
    small = _is_small(size)
    key = "volume_small_scan" if small else "volume_bucket"
    bound = size_cost_bound(ctx)
    if not ctx.runner.cost_allowed(cached=ctx.plan_costs, key=key, bound=bound):
        return None
    template = _CUT_SMALL if small else _CUT_BUCKET
    query = None if empty else _template_fill(template, column=sql.Identifier(table.timestamp_column), **names)
    cost = known_cost(cached=ctx.plan_costs, key=key)
    cost = bound if cost is None else cost
    return query, (bucket_start, bucket_end), "small" if small else "bucket", bucket_start, cost


def batch_read(contexts: list[CheckContext]) -> None:
    """Read every table of a batch that can be read together (into each context's facts): one statement, or
    more when the parts' cost estimates add up to more than the connection's `max_query_cost` (a statement
    never costs more than the cost guard lets one statement cost).

    Sent on the first context's runner. A statement that fails (GuardrailStop, CheckError) leaves its tables'
    facts unset: each of them then reads its own; SessionLost propagates."""
    runner = contexts[0].runner
    limit = runner.connection.max_query_cost
    statements, cost = [[]], 0.0
    for number, ctx in enumerate(contexts):
        empty = known_empty(ctx)
        part = batch_part(ctx, number=number, empty=empty)
        if part is None:
            continue
        if empty:  # no rows: what its part would return is known
            kind = part[2]
            total, in_bucket = (None if kind == "bucket" else 0), (None if kind == "count" else 0)
            ctx.facts["batch_read"] = BatchRead(kind=kind, bucket_start=part[3], total=total, in_bucket=in_bucket)
            continue
        if statements[-1] and cost + part[4] > limit:
            statements.append([])
            cost = 0.0
        statements[-1].append((number, part))
        cost += part[4]
    for together in filter(None, statements):
        query = sql.SQL(" UNION ALL ").join(part[0] for _, part in together)
        params = [value for _, part in together for value in part[1]]
        try:
            rows = runner.fetch(query, params, rows=len(together))
        except (GuardrailStop, CheckError) as exc:
            logger.info("a batch's data statement failed (%s): its %d tables read their own", exc, len(together))
            continue
        plans = {number: part for number, part in together}
        for number, total, in_bucket, latest in rows:
            contexts[number].facts["batch_read"] = BatchRead(
                kind=plans[number][2], bucket_start=plans[number][3], total=total, in_bucket=in_bucket, latest=latest
            )


BACKFILL_ROWS_PER_MS = 40
"""A batch's backfill statement reads at most this many table rows (by the tables' sizes) per millisecond of the
statement timeout: the planner's cost says nothing of time, and a statement over the timeout would be lost (its
tables then read their own)."""


def _backfill_part(
    ctx: CheckContext, *, number: int, empty: bool = False
) -> tuple[sql.Composable | None, tuple, int, float, float] | None:
    """This table's part of its batch's backfill statement: (SQL, parameters, rows returned at most, cost, rows
    read at most); None when
    its series exists, it has nothing to backfill, or its cost is not known to be within the limit (it then reads
    its own, cost-guarded). An `empty` table's part has no SQL (its rows are known: none)."""
    table, catalog = ctx.table, ctx.facts.get("catalog")
    if not table.timestamp_column or catalog is None or not catalog.readable:
        return None
    if catalog.timestamp_type != "date" and not (catalog.timestamp_type or "").startswith("timestamp"):
        return None  # no such column, or not a date or timestamp: its own statement gets the server's error
    if _known_width(table, column_type=catalog.timestamp_type) is not None:
        return None
    unit = DAY if catalog.timestamp_type == "date" else HOUR
    until = _floor(ctx.data_as_of, unit)
    start = _backfill_start(table, bucket=unit, until=until)
    bound = size_cost_bound(ctx)
    if start >= until or not ctx.runner.cost_allowed(cached=ctx.plan_costs, key="volume_backfill", bound=bound):
        return None
    cost = known_cost(cached=ctx.plan_costs, key="volume_backfill")
    query = None
    if not empty:
        query = sql.SQL(_PART_BACKFILL).format(
            number=sql.Literal(number),
            unit=sql.Literal("day" if unit == DAY else "hour"),
            column=sql.Identifier(table.timestamp_column),
            relation=ctx.relation,
        )
    buckets = math.ceil((until - start) / unit)
    return query, (start, until), buckets, bound if cost is None else cost, table_tuples(catalog)


def batch_backfill(contexts: list[CheckContext]) -> None:
    """Read the backfill of every table of a batch whose series is new (its first check) in set-based statements:
    a UNION ALL of each table's fixed part, as many tables in one statement as their costs let under the
    connection's `max_query_cost` and read at most BACKFILL_ROWS_PER_MS rows per millisecond of its statement
    timeout. Each table's rows go to its facts ("backfill_read": start, end, rows), which
    its volume check then uses instead of its own statement; a statement that fails (GuardrailStop, CheckError)
    leaves its tables' facts unset, and each of them reads its own. SessionLost propagates."""
    runner = contexts[0].runner
    limit, rows_limit = runner.connection.max_query_cost, runner.connection.statement_timeout_ms * BACKFILL_ROWS_PER_MS
    statements, cost, rows = [[]], 0.0, 0.0
    for number, ctx in enumerate(contexts):
        empty = known_empty(ctx)
        part = _backfill_part(ctx, number=number, empty=empty)
        if part is None:
            continue
        if empty:  # no rows: its part would return none
            ctx.facts["backfill_read"] = (*part[1], [])
            continue
        if statements[-1] and (cost + part[3] > limit or rows + part[4] > rows_limit):
            statements.append([])
            cost, rows = 0.0, 0.0
        statements[-1].append((number, part))
        cost, rows = cost + part[3], rows + part[4]
    for together in filter(None, statements):
        query = sql.SQL(" UNION ALL ").join(part[0] for _, part in together)
        params = [value for _, part in together for value in part[1]]
        try:
            rows = runner.fetch(query, params, rows=sum(part[2] for _, part in together))
        except (GuardrailStop, CheckError) as exc:
            logger.info("a batch's backfill statement failed (%s): its %d tables read their own", exc, len(together))
            continue
        read: dict[int, list] = {number: [] for number, _ in together}
        for number, bucket, count, newest in rows:
            read[number].append((bucket, count, newest))
        for number, part in together:
            contexts[number].facts["backfill_read"] = (*part[1], sorted(read[number], key=lambda row: row[0]))
