"""Check kinds: one module each. A kind declares its queries, how it judges, and what it records.

Every kind exposes `run(ctx, check=None) -> Outcome` and `QUERIES` (how many queries a run usually
sends, for the budget reservation). Queries are fixed `psycopg.sql` templates; names are identifiers
that were looked up in the replica's catalog when the table was saved.
"""

from monitors.checks import custom_sql, freshness, null_rate, row_count, schema_change, volume
from monitors.checks.base import CheckContext, Outcome

BUILT_IN = {"schema_change": schema_change, "volume": volume, "freshness": freshness}
CONFIGURABLE = {"null_rate": null_rate, "row_count": row_count, "custom_sql": custom_sql}

__all__ = ["BUILT_IN", "CONFIGURABLE", "CheckContext", "Outcome"]
