"""Claiming due tables so that several runchecks processes share the work without doing any twice.

A claim takes due tables with `SELECT … FOR UPDATE SKIP LOCKED` and gives them a lease (a token and an
expiry). Results are recorded only while the lease is still the claimer's (see recording.py), so a
table is checked once per due time; a process killed mid-check loses its lease when it expires and
another process takes the table.
"""

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection as pulse_db

from connections.models import Connection
from monitors.models import Check, MonitoredTable

# One statement: pick due tables (skipping rows another process is claiming right now) and lease them.
_CLAIM = """
UPDATE monitors_monitoredtable SET lease_token = %(token)s, lease_expires_at = %(expires)s
WHERE id IN (
    SELECT t.id FROM monitors_monitoredtable t JOIN connections_connection c ON c.id = t.connection_id
    WHERE t.is_active AND c.is_active
      AND (t.lease_expires_at IS NULL OR t.lease_expires_at < %(now)s)
      AND (c.backoff_until IS NULL OR c.backoff_until <= %(now)s)
      AND (%(force)s OR t.next_check_at IS NULL OR t.next_check_at <= %(now)s)
      AND (%(ids)s::bigint[] IS NULL OR t.id = ANY(%(ids)s::bigint[]))
      AND t.id > %(after)s
    ORDER BY CASE WHEN %(force)s THEN NULL ELSE t.next_check_at END NULLS FIRST, t.id
    LIMIT %(limit)s
    FOR UPDATE OF t SKIP LOCKED
)
RETURNING id, EXISTS (
    SELECT 1 FROM monitors_check ch WHERE ch.table_id = monitors_monitoredtable.id AND ch.is_active
)
"""


@dataclass(frozen=True)
class Claim:
    token: uuid.UUID
    claimed_at: datetime
    tables: list[MonitoredTable]


def tables_claim_due(
    *,
    now: datetime,
    lease: timedelta,
    limit: int,
    force: bool = False,
    table_ids: list[int] | None = None,
    after_id: int | None = None,
) -> Claim:
    """Lease up to `limit` tables whose check is due (or, with `force`, every active table not leased).

    Forced passes walk the tables in id order: `after_id` is the last id the pass has claimed.
    """
    token = uuid.uuid4()
    with pulse_db.cursor() as cursor:
        cursor.execute(
            _CLAIM,
            {
                "token": token,
                "expires": now + lease,
                "now": now,
                "force": force,
                "ids": table_ids,
                "after": after_id if after_id is not None else 0,
                "limit": limit,
            },
        )
        rows = cursor.fetchall()
    ids = [table_id for table_id, _ in rows]
    tables = list(MonitoredTable.objects.filter(id__in=ids, lease_token=token).order_by("connection_id", "id"))
    connections = Connection.objects.in_bulk({t.connection_id for t in tables})
    with_checks = [table_id for table_id, has_checks in rows if has_checks]
    active_checks = defaultdict(list)
    if with_checks:
        for check in Check.objects.filter(table_id__in=with_checks, is_active=True).order_by("id"):
            active_checks[check.table_id].append(check)
    for table in tables:
        table.connection = connections[table.connection_id]  # one object per connection, shared by its tables
        table.active_checks = active_checks[table.id]
    return Claim(token=token, claimed_at=now, tables=tables)


def lease_release(*, table_ids: list[int], token: uuid.UUID) -> int:
    """Give tables back unchecked (e.g. on shutdown before they ran); their due time is unchanged."""
    return MonitoredTable.objects.filter(id__in=table_ids, lease_token=token).update(
        lease_token=None, lease_expires_at=None
    )
