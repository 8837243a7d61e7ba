"""Null rate of a column: pg_stats.null_frac (as of the last ANALYZE), or a bounded sample when the table
has no statistics yet (TABLESAMPLE SYSTEM sized for about SAMPLE_ROWS rows, cost-guarded)."""

from psycopg import sql

from monitors.checks.base import CheckContext, Outcome, Status, judge_bounds
from monitors.checks.volume import row_count

KIND = "null_rate"
LABEL = "Null rate"
SCOPE = "table"
CONFIGURABLE = True
QUERIES = 3
SAMPLE_ROWS = 10_000
_STATS = sql.SQL("SELECT null_frac FROM pg_catalog.pg_stats WHERE schemaname = %s AND tablename = %s AND attname = %s")
_SAMPLE = "SELECT count(*) FILTER (WHERE {column} IS NULL), count(*) FROM {relation} TABLESAMPLE SYSTEM (%s)"


def format_value(value: float) -> str:
    """A fraction of NULLs, as a percentage."""
    return f"{value * 100:.4g}% NULL"


def run(ctx: CheckContext, check=None) -> Outcome:
    table = ctx.table
    row = ctx.runner.fetchone(_STATS, (table.schema_name, table.table_name, check.column))
    if row is not None and row[0] is not None:
        fraction, method = float(row[0]), "pg_stats"
    else:
        total, _ = row_count(ctx)
        percent = 100.0 if total <= SAMPLE_ROWS else max(0.01, 100.0 * SAMPLE_ROWS / total)
        query = sql.SQL(_SAMPLE).format(column=sql.Identifier(check.column), relation=ctx.relation)
        ctx.runner.guard_cost(query, (percent,))
        nulls, sampled = ctx.runner.fetchone(query, (percent,))
        if not sampled:
            return Outcome(kind=KIND, status=Status.PASS, message="no rows to sample", details={"method": "sample"})
        fraction, method = nulls / sampled, f"sample of {sampled:,} rows"
    status, message = judge_bounds(
        round(fraction, 6), low=check.min_value, high=check.max_value, what=f"null fraction of {check.column}"
    )
    return Outcome(
        kind=KIND,
        status=status,
        observed_value=round(fraction, 6),
        expected_lower=check.min_value,
        expected_upper=check.max_value,
        message=f"{message} ({method})",
        details={"method": method},
    )
