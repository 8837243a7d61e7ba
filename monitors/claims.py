"""Claiming due tables so that several runchecks processes share the work without doing any twice.

A claim takes due tables of ONE connection with `SELECT … FOR UPDATE SKIP LOCKED` and gives them a
lease (a token and an expiry). One connection per claim: a worker never runs one connection's slow
batch before another connection's tables it happened to claim with it.

Leases are short and follow the work: a claim lives `lease` seconds (default 15) unless renewed, and
the process's `LeaseKeeper` renews every lease it holds every `lease / 3` seconds (a conditional UPDATE
on the token) for as long as the batch may take (its time limit, derived from the statement timeout
and the batch's planned queries). A process that dies stops renewing, so its tables are claimable again
at most `lease` seconds later. Results are recorded against the lease (see recording.py).
"""

import functools
import logging
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import DatabaseError
from django.db import connection as pulse_db
from django.utils import timezone

from connections.models import Connection
from monitors.database import binary_cursor, model_loaded
from monitors.due import first_claimable
from monitors.models import Check, MonitoredTable

logger = logging.getLogger(__name__)

# A table's due time as the claim indexes hold it (monitors.models.DueAt): never checked sorts first.
_DUE_AT = "COALESCE({t}.next_check_at, '-infinity'::timestamptz)"
_DUE = """{t}.is_active AND {c}.is_active AND {t}.status <> 'missing'
      AND ({t}.lease_expires_at IS NULL OR {t}.lease_expires_at < %(now)s)
      AND ({c}.backoff_until IS NULL OR {c}.backoff_until <= %(now)s)
      {due}
      AND (%(ids)s::bigint[] IS NULL OR {t}.id = ANY(%(ids)s::bigint[]))
      AND {t}.id > COALESCE((SELECT w.after_id FROM unnest(%(walked)s::bigint[], %(walked_to)s::bigint[])
                             AS w(connection_id, after_id) WHERE w.connection_id = {t}.connection_id), 0)
      AND NOT ({t}.connection_id = ANY(%(busy)s::bigint[]))"""


# The claimed rows come back whole from the claim's RETURNING (every concrete column, in the model's field order),
# read in binary (timestamps decoded in C; Django's text loader parses them in Python), JSON columns as their text,
# and are built as the ORM builds them (its converters, then `from_db`'s instance): no second query loads them.
_TABLE_FIELDS = MonitoredTable._meta.concrete_fields
_RETURNED_COLUMNS = ", ".join(
    f"monitors_monitoredtable.{pulse_db.ops.quote_name(f.column)}"
    + ("::text" if f.get_internal_type() == "JSONField" else "")
    for f in _TABLE_FIELDS
)


@functools.cache
def _table_converters() -> list[tuple[int, list, object]]:
    """The ORM's converters of the returned columns (e.g. json text -> Python): (position, converters, column)."""
    converters = []
    for position, field in enumerate(_TABLE_FIELDS):
        column = field.get_col(MonitoredTable._meta.db_table)
        found = pulse_db.ops.get_db_converters(column) + column.get_db_converters(pulse_db)
        if found:
            converters.append((position, found, column))
    return converters


def _table_from_row(row: tuple) -> MonitoredTable:
    """A claimed table, built from its returned columns exactly as the ORM builds a loaded row."""
    values = list(row)
    for position, converters, column in _table_converters():
        for converter in converters:
            values[position] = converter(values[position], column, pulse_db)
    return model_loaded(MonitoredTable, values, db=pulse_db.alias)


def _claim_sql(*, force: bool) -> str:
    """One statement: find the connection of the most overdue table nobody is claiming right now, then lease up
    to `limit` of that connection's due tables (skipping rows another process is claiming right now).

    Both steps read an index in due order (`table_due`, `table_due_per_connection`) and stop at the rows they
    need, so a claim costs the same with 100 or 100,000 tables due; a forced pass walks the tables in id order."""

    def due(t: str) -> str:
        return "" if force else f"AND {_DUE_AT.format(t=t)} <= %(now)s"

    def order(t: str) -> str:
        return f"ORDER BY {t}.id" if force else f"ORDER BY {_DUE_AT.format(t=t)}, {t}.id"

    return f"""
UPDATE monitors_monitoredtable SET lease_token = %(token)s, lease_expires_at = %(expires)s
WHERE id IN (
    SELECT t.id FROM monitors_monitoredtable t JOIN connections_connection c ON c.id = t.connection_id
    WHERE {_DUE.format(t="t", c="c", due=due("t"))}
      AND t.connection_id = (
        SELECT f.connection_id FROM monitors_monitoredtable f JOIN connections_connection fc ON fc.id = f.connection_id
        WHERE {_DUE.format(t="f", c="fc", due=due("f"))}
        {order("f")}
        LIMIT 1
        FOR UPDATE OF f SKIP LOCKED
      )
    {order("t")}
    LIMIT %(limit)s
    FOR UPDATE OF t SKIP LOCKED
)
RETURNING {_RETURNED_COLUMNS}, EXISTS (
    SELECT 1 FROM monitors_check ch WHERE ch.table_id = monitors_monitoredtable.id AND ch.is_active
)
"""


_CLAIM = {force: _claim_sql(force=force) for force in (False, True)}


def tables_next_due(*, now: datetime, force: bool = False, table_ids: list[int] | None = None) -> datetime | None:
    """When the first active table (of `table_ids`, if given) becomes claimable: the latest of its due time
    (not with `force`), its lease's expiry and its connection's backoff, as in `_DUE`; None without any."""
    with pulse_db.cursor() as cursor:
        return first_claimable(cursor, now=now, force=force, table_ids=table_ids)


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
    walked: dict[int, int] | None = None,
    exclude_connections: list[int] | None = None,
) -> Claim:
    """Lease up to `limit` tables of one connection whose check is due (or, with `force`, every active
    table not leased).

    `walked`: connection id -> the highest table id this pass already claimed on it. A forced pass takes a
    connection's tables in id order, so it takes each table once by walking past these ids (one number per
    connection instead of a growing list of every claimed id);
    `exclude_connections`: connections this pass found busy (all session slots taken).
    """
    token = uuid.uuid4()
    # Errors as Django's own cursor raises them (OperationalError when the database went away), marking the
    # connection so that `close_old_connections` replaces it: a raw psycopg error would leave a dead connection.
    with binary_cursor() as cursor, pulse_db.wrap_database_errors:
        cursor.execute(
            _CLAIM[force],
            {
                "token": token,
                "expires": now + lease,
                "now": now,
                "ids": table_ids,
                "walked": list((walked or {}).keys()),
                "walked_to": list((walked or {}).values()),
                "busy": list(exclude_connections or []),
                "limit": limit,
            },
            binary=True,
        )
        rows = cursor.fetchall()
    claimed = [(_table_from_row(row[:-1]), row[-1]) for row in rows]  # (table, has active checks)
    tables = sorted((table for table, _ in claimed), key=lambda t: (t.connection_id, t.id))
    connections = Connection.objects.in_bulk({t.connection_id for t in tables})
    with_checks = [table.id for table, has_checks in claimed if has_checks]
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


# Rows locked right now (a batch recording its results, which ends their lease anyway) are skipped, and the
# others are locked in id order: a renewal never waits on, nor deadlocks with, a recording transaction.
_RENEW = """
UPDATE monitors_monitoredtable SET lease_expires_at = %s
WHERE id IN (
    SELECT id FROM monitors_monitoredtable WHERE lease_token = ANY(%s) ORDER BY id FOR UPDATE SKIP LOCKED
)
"""


def leases_renew(*, tokens: list[uuid.UUID], lease: timedelta) -> int:
    """Extend the leases still held under `tokens` (a lease already taken over is left alone)."""
    if not tokens:
        return 0
    with pulse_db.cursor() as cursor:
        cursor.execute(_RENEW, [timezone.now() + lease, tokens])
        return cursor.rowcount


class LeaseKeeper:
    """Renews this process's leases in a thread while their batches run, each up to its time limit.

    A batch that overruns its limit (a worker stuck beyond every timeout) is no longer renewed, so its
    tables go to another worker; a process that dies renews nothing.
    """

    def __init__(self, *, lease: timedelta):
        self.lease = lease
        self.every = lease.total_seconds() / 3
        self._held: dict[uuid.UUID, float] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, token: uuid.UUID, *, seconds: float) -> None:
        """Keep renewing `token` for at most `seconds` from now."""
        with self._lock:
            self._held[token] = time.monotonic() + seconds
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="pulse-lease-keeper", daemon=True)
                self._thread.start()

    def drop(self, token: uuid.UUID) -> None:
        with self._lock:
            self._held.pop(token, None)

    def renew(self) -> int:
        """Renew every lease still within its time limit now; returns the number of tables renewed."""
        now = time.monotonic()
        with self._lock:
            for token in [t for t, until in self._held.items() if until <= now]:
                logger.warning("a batch overran its time limit; its lease %s is no longer renewed", token)
                del self._held[token]
            tokens = list(self._held)
        return leases_renew(tokens=tokens, lease=self.lease)

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=self.every + 5)

    def _run(self) -> None:
        try:
            while not self._stopping.wait(self.every):
                try:
                    self.renew()
                    if not self._held:
                        pulse_db.close()  # idle: hold no connection to Pulse's database
                except DatabaseError:
                    # Pulse's database is away: try again next round, on a fresh connection.
                    logger.warning("renewing leases failed; retrying in %.0f s", self.every)
                    pulse_db.close()
        finally:
            pulse_db.close()
