"""Custom SQL: one read-only SELECT returning one number, cost-guarded by EXPLAIN, compared to min/max."""

import math
from decimal import Decimal

from monitors import custom_sql as custom_sql_rules
from monitors.checks.base import CheckContext, Outcome, judge_bounds

KIND = "custom_sql"
QUERIES = 2


def run(ctx: CheckContext, check=None) -> Outcome:

    problem = custom_sql_rules.static_problem(check.sql)
    if problem:
        return Outcome(kind="custom_sql", status="error", message=f"refused: {problem}")
    query = custom_sql_rules.composed(check.sql)
    ctx.runner.guard_cost(query)
    rows = ctx.runner.fetch(query, rows=2, explicit_transaction=True)
    if (
        len(rows) != 1
        or len(rows[0]) != 1
        or not isinstance(rows[0][0], int | float | Decimal)
        or isinstance(rows[0][0], bool)
    ):
        return Outcome(
            kind="custom_sql",
            status="error",
            message="custom SQL must return exactly one row with one numeric column",
        )
    value = float(rows[0][0])
    if not math.isfinite(value):
        return Outcome(kind="custom_sql", status="error", message=f"custom SQL returned {value}, not a finite number")
    status, message = judge_bounds(value, low=check.min_value, high=check.max_value, what="value")
    return Outcome(
        kind="custom_sql",
        status=status,
        observed_value=value,
        expected_lower=check.min_value,
        expected_upper=check.max_value,
        message=message,
    )
