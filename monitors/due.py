"""When the first active table becomes claimable, and the line a pass that found nothing to check reports.

Plain SQL and no Django: the runner asks it through Django's connection (claims.tables_next_due), and
`manage.py runchecks --once` asks it before Django starts (pulse_project/idle_start.py), so both say the
same thing from the same statement.
"""

from __future__ import annotations

from datetime import datetime, tzinfo

from common.durations import format_duration

# The latest of a table's lease expiry, its connection's backoff and (unless forced) its due time, as in the
# claim's conditions (claims._DUE); GREATEST skips NULLs, so a table never checked is claimable `now`.
_FIRST_CLAIMABLE = """
SELECT min(COALESCE(GREATEST(t.lease_expires_at, c.backoff_until{due}), %(now)s))
FROM monitors_monitoredtable t JOIN connections_connection c ON c.id = t.connection_id
WHERE t.is_active AND c.is_active AND t.status <> 'missing'
  AND (%(ids)s::bigint[] IS NULL OR t.id = ANY(%(ids)s::bigint[]))
"""
FIRST_CLAIMABLE_SQL = {
    force: _FIRST_CLAIMABLE.format(due="" if force else ", t.next_check_at") for force in (False, True)
}


def first_claimable(
    cursor, *, now: datetime, force: bool = False, table_ids: list[int] | None = None
) -> datetime | None:
    """When the first active table (of `table_ids`, if given) becomes claimable; None without any.

    `cursor`: a DB-API cursor on Pulse's database with `%(name)s` parameters (Django's or psycopg's)."""
    cursor.execute(FIRST_CLAIMABLE_SQL[force], {"now": now, "ids": table_ids})
    return cursor.fetchone()[0]


def idle_line(
    *, first: datetime | None, now: datetime, zone: tzinfo, forced: bool, some_tables: bool, once: bool
) -> str:
    """What a pass that claimed nothing reports: why, and when the first table becomes claimable (in `zone`).

    `some_tables`: the pass was limited to tables given by id; `once`: a --once pass (it suggests --all)."""
    if first is None:
        return "nothing to check: no active table on an active connection" + (
            " among the tables given" if some_tables else ""
        )
    wait = (first - now).total_seconds()
    when = "now" if wait <= 0 else f"in {format_duration(wait)} (at {first.astimezone(zone):%H:%M:%S %Z})"
    if forced:
        return f"nothing to check now: the tables are leased or their connection is backing off; claimable {when}"
    line = f"nothing due: the next table is due {when}"
    return f"{line}; --all checks every active table now" if once else line
