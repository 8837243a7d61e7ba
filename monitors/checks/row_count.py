"""Row count: the table's rows (measured as the volume check does) against static min/max bounds."""

from monitors.checks.base import CheckContext, Outcome, format_quantity, judge_bounds
from monitors.checks.volume import row_count

KIND = "row_count"
LABEL = "Row count"
SCOPE = "table"
CONFIGURABLE = True
QUERIES = 2


def format_value(value: float) -> str:
    return format_quantity(value)


def run(ctx: CheckContext, check=None) -> Outcome:
    total, method = row_count(ctx)
    status, message = judge_bounds(total, low=check.min_value, high=check.max_value, what="row count")
    return Outcome(
        kind=KIND,
        status=status,
        observed_value=total,
        expected_lower=check.min_value,
        expected_upper=check.max_value,
        message=f"{message} ({method})",
        details={"method": method},
    )
