"""Query budget and rate: at most `max_queries_per_hour` queries per connection per clock hour, spaced at
least `1 / max_queries_per_second` seconds apart.

Each batch reserves its queries on a shared schedule (`QueryAllowance.next_query_at`) in Pulse's database,
so two processes never send at once and a cycle never bursts. Work that would exceed the budget is skipped
with the reason; no query is sent.

With both caps at their maxima (the defaults) they cannot bind: an `Allowance(shared=False)` then reserves
nothing in Pulse's database and the queries sent are counted with the replica time share's charge instead
(`TimeShare.count_queries`), so a batch writes the connection's shared row twice instead of four times.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime

from django.db import DatabaseError
from django.db import connection as pulse_db

from connections.guardrails.errors import GuardrailStop
from connections.models import QUERIES_PER_HOUR_MAX, QUERIES_PER_SECOND_MAX, Connection

_RESERVE = """
WITH seed AS (
    INSERT INTO connections_queryallowance (connection_id, window_start, queries_used, next_query_at)
    VALUES (%(id)s, %(window)s, 0, clock_timestamp())
    ON CONFLICT (connection_id) DO NOTHING
)
UPDATE connections_queryallowance SET
    queries_used = (CASE WHEN window_start = %(window)s THEN queries_used ELSE 0 END) + %(n)s,
    window_start = %(window)s,
    next_query_at = GREATEST(next_query_at, clock_timestamp()) + %(n)s * make_interval(secs => %(spacing)s)
WHERE connection_id = %(id)s
  AND (CASE WHEN window_start = %(window)s THEN queries_used ELSE 0 END) + %(n)s <= %(limit)s
RETURNING EXTRACT(EPOCH FROM (next_query_at - %(n)s * make_interval(secs => %(spacing)s) - clock_timestamp()))
"""

_REFUND = """
UPDATE connections_queryallowance SET queries_used = GREATEST(queries_used - %(n)s, 0)
WHERE connection_id = %(id)s AND window_start = %(window)s
"""


def _window(now: datetime) -> datetime:
    return now.replace(minute=0, second=0, microsecond=0)


def query_caps_bind(connection: Connection) -> bool:
    """Whether the hourly budget or the rate of `connection` can hold a query back (not at their maxima)."""
    return (
        connection.max_queries_per_hour < QUERIES_PER_HOUR_MAX
        or connection.max_queries_per_second < QUERIES_PER_SECOND_MAX
    )


def allowance_reserve(*, connection: Connection, queries: int, now: datetime) -> float | None:
    """Reserve `queries` from this hour's budget and the rate schedule.

    Returns the delay in seconds before the first of them may be sent, or None when the budget is spent.
    """
    params = {
        "id": connection.pk,
        "window": _window(now),
        "n": queries,
        "limit": connection.max_queries_per_hour,
        "spacing": connection.min_query_interval,
    }
    with pulse_db.cursor() as cursor:
        cursor.execute(_RESERVE, params)
        row = cursor.fetchone()
    if row is None:
        # The seed row may not have been visible to the UPDATE in the same statement: try once more.
        with pulse_db.cursor() as cursor:
            cursor.execute(_RESERVE, params)
            row = cursor.fetchone()
    return None if row is None else max(0.0, float(row[0]))


def allowance_refund(*, connection: Connection, queries: int, now: datetime) -> None:
    if queries > 0:
        with pulse_db.cursor() as cursor:
            cursor.execute(_REFUND, {"id": connection.pk, "window": _window(now), "n": queries})


@dataclass
class Allowance:
    """The queries a batch may send: reserved up front, spaced by the rate, topped up one at a time.

    `shared=False` (only for caps that cannot bind, see `query_caps_bind`): granted locally, only counted."""

    connection: Connection
    now: datetime
    shared: bool = True
    granted: int = 0
    used: int = 0
    _next_at: float = field(default_factory=time.monotonic)

    def reserve(self, queries: int) -> bool:
        if not self.shared:
            self.granted += queries
            return True
        delay = allowance_reserve(connection=self.connection, queries=queries, now=self.now)
        if delay is None:
            return False
        if self.used >= self.granted:
            self._next_at = max(self._next_at, time.monotonic() + delay)
        self.granted += queries
        return True

    def take(self) -> None:
        """Account for one query about to be sent; sleep as the rate requires.

        A top-up that cannot reach Pulse's database stops the remaining queries (`skipped`) instead of
        failing the batch: what was already read from the replica is still recorded.
        """
        if not self.shared:
            self.used += 1
            return
        if self.used >= self.granted:
            try:
                reserved = self.reserve(1)
            except DatabaseError:
                raise GuardrailStop(
                    "Pulse's database is unreachable: no further queries could be reserved", reason="bookkeeping"
                ) from None
            if not reserved:
                raise self.spent()
        wait = self._next_at - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self._next_at = max(self._next_at, time.monotonic()) + self.connection.min_query_interval
        self.used += 1

    def spent(self) -> GuardrailStop:
        return GuardrailStop(
            f"query budget of {self.connection.max_queries_per_hour}/h for this connection is spent", reason="budget"
        )

    @property
    def unused(self) -> int:
        """Queries reserved in Pulse's database but not sent: what `settle` (or a batch's recording) gives back."""
        return self.granted - self.used if self.shared else 0

    def settle(self) -> None:
        """Give back what was reserved but not sent."""
        if not self.shared:
            self.granted = self.used
            return
        allowance_refund(connection=self.connection, queries=self.unused, now=self.now)
        self.granted = self.used
