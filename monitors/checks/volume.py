"""Volume: the table's row count, cheaply, and rows in the last complete hour when a timestamp column is set.

Row count: tables up to EXACT_COUNT_MAX_PAGES pages (10 MiB) are counted exactly with count(*); larger
ones are estimated from the catalog like the planner does: pg_class.reltuples / relpages scaled by the
relation's current size in pages. Rows per hour: count(*) over the last complete hour bucket before the
replica's replay position, cost-guarded (it needs an index on the timestamp column on large tables).
"""

from datetime import timedelta

from psycopg import sql

from connections.guardrails import GuardrailStop
from monitors.checks.base import CheckContext, Outcome, fmt_number

KIND = "volume"
QUERIES = 4
EXACT_COUNT_MAX_PAGES = 1280
BUCKET = timedelta(hours=1)

_SIZE = sql.SQL(
    "SELECT c.reltuples, c.relpages, c.relkind,"
    " CASE WHEN c.relkind IN ('r', 'm', 'p') THEN pg_catalog.pg_relation_size(c.oid)"
    " / current_setting('block_size')::bigint END"
    " FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname = %s AND c.relname = %s"
)
_COUNT = "SELECT count(*) FROM {relation}"
_BUCKET_COUNT = "SELECT count(*) FROM {relation} WHERE {column} >= %s AND {column} < %s"


def row_count(ctx: CheckContext) -> tuple[float, str]:
    """Total rows and how they were measured (`exact` or `estimate`)."""
    table = ctx.table
    row = ctx.runner.fetchone(_SIZE, (table.schema_name, table.table_name))
    if row is None:
        raise GuardrailStop(f"{table.qualified_name} no longer exists on the replica", reason="missing")
    reltuples, relpages, relkind, pages_now = row
    estimable = relkind in ("r", "m", "p") and relpages and reltuples is not None and reltuples >= 0
    if estimable and pages_now is not None and pages_now > EXACT_COUNT_MAX_PAGES:
        return round(reltuples / relpages * pages_now), "estimate"
    query = sql.SQL(_COUNT).format(relation=ctx.relation)
    if pages_now is None or pages_now > EXACT_COUNT_MAX_PAGES:
        ctx.runner.guard_cost(query, cached=ctx.plan_costs, key="count")
    return ctx.runner.fetchone(query)[0], "exact"


def run(ctx: CheckContext, check=None) -> Outcome:
    table = ctx.table
    total, method = row_count(ctx)
    details = {"total_rows": total, "method": method}
    if not table.timestamp_column:
        return Outcome(
            kind="volume",
            status="pass",
            observed_value=total,
            details=details,
            message=f"{fmt_number(total)} rows ({method})",
        )
    bucket_end = ctx.data_as_of.replace(minute=0, second=0, microsecond=0)
    bucket_start = bucket_end - BUCKET
    query = sql.SQL(_BUCKET_COUNT).format(relation=ctx.relation, column=sql.Identifier(table.timestamp_column))
    try:
        ctx.runner.guard_cost(query, (bucket_start, bucket_end), cached=ctx.plan_costs, key="volume_bucket")
    except GuardrailStop as refused:
        details["bucket_refused"] = str(refused)
        return Outcome(
            kind="volume",
            status="pass",
            observed_value=total,
            details=details,
            message=f"{fmt_number(total)} rows ({method}); rows per hour {refused}",
        )
    in_bucket = ctx.runner.fetchone(query, (bucket_start, bucket_end))[0]
    return Outcome(
        kind="volume",
        status="pass",
        observed_value=in_bucket,
        bucket_start=bucket_start,
        details=details,
        message=f"{fmt_number(in_bucket)} rows in {bucket_start:%Y-%m-%d %H:00}–{bucket_end:%H:00} UTC; "
        f"{fmt_number(total)} rows in all ({method})",
    )
