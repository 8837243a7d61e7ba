"""Custom SQL: one read-only SELECT returning one number, cost-guarded, fetched bounded, compared to min/max."""

import math
from decimal import Decimal

from connections.guardrails import USER_ROW_MAX_BYTES
from monitors.checks.base import CheckContext, Outcome, Status, format_quantity, judge_bounds

KIND = "custom_sql"
LABEL = "Custom SQL check"
SCOPE = "table"
CONFIGURABLE = True
QUERIES = 2


def format_value(value: float) -> str:
    return format_quantity(value)


def run(ctx: CheckContext, check=None) -> Outcome:
    from monitors import custom_sql_policy  # its SQL parser (pglast) loads only where a custom check runs

    # Stored checks are read again: one saved before today's rules (or behind the API's back) is refused here.
    problem = custom_sql_policy.static_problem(check.sql)
    if problem:
        return Outcome(kind=KIND, status=Status.ERROR, message=f"refused: {problem}")
    found = ctx.runner.fetch_user(custom_sql_policy.composed(check.sql))
    if found.oversized:
        return Outcome(
            kind=KIND,
            status=Status.ERROR,
            message=f"custom SQL returned a row larger than {USER_ROW_MAX_BYTES:,} bytes; it must return one number",
        )
    rows = found.rows
    if (
        len(rows) != 1
        or len(rows[0]) != 1
        or not isinstance(rows[0][0], int | float | Decimal)
        or isinstance(rows[0][0], bool)
    ):
        return Outcome(
            kind=KIND,
            status=Status.ERROR,
            message="custom SQL must return exactly one row with one numeric column",
        )
    value = float(rows[0][0])
    if not math.isfinite(value):
        return Outcome(kind=KIND, status=Status.ERROR, message=f"custom SQL returned {value}, not a finite number")
    status, message = judge_bounds(value, low=check.min_value, high=check.max_value, what="value")
    return Outcome(
        kind=KIND,
        status=status,
        observed_value=value,
        expected_lower=check.min_value,
        expected_upper=check.max_value,
        message=message,
    )
