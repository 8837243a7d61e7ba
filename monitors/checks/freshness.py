"""Freshness: age of max(timestamp_column), measured against the replica's replay position."""

from datetime import UTC, date, datetime, time

from psycopg import sql

from monitors.checks.base import CheckContext, Outcome

KIND = "freshness"
QUERIES = 2  # the max() and, at most daily, its EXPLAIN for the cost guard
_LATEST = "SELECT max({column}) FROM {relation}"


def latest_timestamp(value) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime.combine(value, time.min, tzinfo=UTC)
    raise TypeError(f"unexpected timestamp value {value!r}")


def run(ctx: CheckContext, check=None) -> Outcome:
    table = ctx.table
    query = sql.SQL(_LATEST).format(column=sql.Identifier(table.timestamp_column), relation=ctx.relation)
    ctx.runner.guard_cost(query, cached=ctx.plan_costs, key="freshness")
    latest = latest_timestamp(ctx.runner.fetchone(query)[0])
    limit_seconds = table.freshness_threshold_minutes * 60
    if latest is None:
        return Outcome(
            kind="freshness",
            status="fail",
            expected_upper=limit_seconds,
            message=f"{table.qualified_name} has no rows: nothing to judge freshness by",
        )
    age = max(0.0, (ctx.data_as_of - latest).total_seconds())
    minutes = age / 60
    if age > limit_seconds:
        status = "fail"
        message = (
            f"newest {table.timestamp_column} is {minutes:,.0f} min old (limit {table.freshness_threshold_minutes} min)"
        )
    else:
        status = "pass"
        message = f"newest {table.timestamp_column} is {minutes:,.1f} min old"
    return Outcome(
        kind="freshness",
        status=status,
        observed_value=round(age, 3),
        expected_upper=limit_seconds,
        message=message,
        details={"latest": latest.isoformat(), "data_as_of": ctx.data_as_of.isoformat()},
    )
