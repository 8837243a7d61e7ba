"""Replica time share: what Pulse costs a replica, bounded as server time.

Each statement's duration (measured by the client around it: the server's time plus the round trip, an upper
bound) and each session's start-up count against a bucket of server time per connection, kept in Pulse's
database (`QueryAllowance.time_*`) so that every runchecks process shares it. The bucket fills at the share
(`replica_time_share_percent` of one backend: 5 % is 50 ms of server time per second) up to the burst
(`replica_time_burst_seconds`); Pulse's statements take from it and may leave it in debt by what the last of
them cost. While it is empty or in debt no new work starts: a wait of up to `SHARE_WAIT_MAX_SECONDS` is
slept, a longer one holds the work back (`skipped`, reason `time_share`, with the moment it may run).

Accounting is batched: a batch reads the bucket once when it starts (`admit`), spends what it found locally
with no round trip, and only goes back to Pulse's database when it has spent that much (`checkpoint`, between
tables) and when it ends (`settle`). Cheap catalog queries are therefore never held back in practice, while an
expensive custom query uses the share up and the checks after it wait.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import DatabaseError
from django.db import connection as pulse_db
from django.utils import timezone

from connections.guardrails.errors import GuardrailStop
from connections.models import Connection, QueryAllowance

logger = logging.getLogger(__name__)

SHARE_WAIT_MAX_SECONDS = 2.0
"""A batch sleeps for the share to refill for up to this long; longer, the work is held back (skipped)."""
RECENT_WINDOW_SECONDS = 60.0
"""The time constant of the "share used now" average (an exponentially decayed sum of charged time)."""

# One statement: seed the connection's row (full bucket), then refill the bucket for the time elapsed,
# take `spent` from it and add `spent` to the minute's decayed sum and the hour's total; add `queries` (sent
# under query caps that cannot bind, so never reserved: connections.guardrails.budget) to the hour's count.
_CHARGE = """
WITH seed AS (
    INSERT INTO connections_queryallowance (
        connection_id, window_start, queries_used, next_query_at,
        time_balance_ms, time_updated_at, time_recent_ms, time_hour_start, time_hour_ms
    )
    VALUES (%(id)s, date_trunc('hour', clock_timestamp()), 0, clock_timestamp(), 0, NULL, 0, NULL, 0)
    ON CONFLICT (connection_id) DO NOTHING
)
UPDATE connections_queryallowance a SET
    time_balance_ms = LEAST(
        %(capacity)s::float8,
        a.time_balance_ms
        + %(rate)s::float8 * GREATEST(0, COALESCE(EXTRACT(EPOCH FROM n.t - a.time_updated_at)::float8, 1e9))
    ) - %(spent)s::float8,
    time_recent_ms = a.time_recent_ms
        * exp(-LEAST(3600, GREATEST(0, COALESCE(EXTRACT(EPOCH FROM n.t - a.time_updated_at)::float8, 3600)))
              / %(window)s::float8)
        + %(spent)s::float8,
    time_hour_ms = CASE WHEN a.time_hour_start = date_trunc('hour', n.t) THEN a.time_hour_ms ELSE 0 END
        + %(spent)s::float8,
    time_hour_start = date_trunc('hour', n.t),
    time_updated_at = n.t,
    queries_used = CASE WHEN %(queries)s = 0 THEN a.queries_used
        WHEN a.window_start = date_trunc('hour', n.t) THEN a.queries_used + %(queries)s ELSE %(queries)s END,
    window_start = CASE WHEN %(queries)s = 0 THEN a.window_start ELSE date_trunc('hour', n.t) END
FROM (SELECT clock_timestamp() AS t) n
WHERE a.connection_id = %(id)s
RETURNING a.time_balance_ms, n.t
"""


def refill_rate_ms(connection: Connection) -> float:
    """Milliseconds of server time the bucket gains per second: the share of one backend."""
    return connection.replica_time_share_percent * 10.0


def capacity_ms(connection: Connection) -> float:
    return connection.replica_time_burst_seconds * 1000.0


def time_share_charge(*, connection: Connection, spent_ms: float, queries: int = 0) -> tuple[float, datetime]:
    """Charge `spent_ms` of server time to the connection's bucket (0 just reads it, refilled to now), and count
    `queries` sent without a reservation in this hour's query count.

    Returns the balance left (ms; negative is debt) and the moment of the charge (Pulse's database clock)."""
    params = {
        "id": connection.pk,
        "capacity": capacity_ms(connection),
        "rate": refill_rate_ms(connection),
        "spent": max(0.0, spent_ms),
        "window": RECENT_WINDOW_SECONDS,
        "queries": queries,
    }
    for _ in range(2):  # the seed row may not be visible to the UPDATE of the same statement: once more
        with pulse_db.cursor() as cursor:
            cursor.execute(_CHARGE, params)
            row = cursor.fetchone()
        if row is not None:
            return float(row[0]), row[1]
    raise DatabaseError("the replica time row of this connection could not be written")


def refill_wait_seconds(*, connection: Connection, balance_ms: float) -> float:
    """Seconds until a bucket at `balance_ms` is above zero again."""
    return max(0.0, -balance_ms) / refill_rate_ms(connection)


def held_back(*, connection: Connection, balance_ms: float, at: datetime) -> GuardrailStop:
    """The stop of work held back by the share, naming when it may run."""
    wait = refill_wait_seconds(connection=connection, balance_ms=balance_ms)
    retry_at = at + timedelta(seconds=max(wait, 1.0))
    return GuardrailStop(
        f"held back: the replica time share ({connection.replica_time_share_percent:g}% of one backend, "
        f"burst {connection.replica_time_burst_seconds:g} s) is used up; runs again at "
        f"{retry_at:%Y-%m-%d %H:%M:%S} UTC (in {max(wait, 1.0):.0f} s)",
        reason="time_share",
        retry_at=retry_at,
    )


@dataclass
class TimeShare:
    """One batch's (or lookup's) use of the connection's replica time share.

    `admit` before the work, `spend` after each statement (local), `checkpoint` between units of work (a round
    trip only once the batch has spent what it found in the bucket), `settle` at the end."""

    connection: Connection
    balance_ms: float = 0.0  # what the bucket held at the last read, minus what was charged then
    unsettled_ms: float = 0.0  # spent since the last charge
    unsettled_queries: int = 0  # sent without a reservation since the last charge (caps that cannot bind)
    spent_ms: float = 0.0  # spent in all
    round_trips: int = 0
    _read_at: datetime = field(default_factory=timezone.now)

    def spend(self, milliseconds: float) -> None:
        self.unsettled_ms += milliseconds
        self.spent_ms += milliseconds

    def count_queries(self, queries: int) -> None:
        """Queries sent without a reservation: counted in the hour's query count with the next charge."""
        self.unsettled_queries += queries

    def _sync(self) -> None:
        self.balance_ms, self._read_at = time_share_charge(
            connection=self.connection, spent_ms=self.unsettled_ms, queries=self.unsettled_queries
        )
        self.round_trips += 1
        self.unsettled_ms, self.unsettled_queries = 0.0, 0

    def admit(self) -> None:
        """Make sure the share has room now: charge what was spent, sleep a short refill, or GuardrailStop
        (reason `time_share`, with `retry_at`) when the wait would be longer than SHARE_WAIT_MAX_SECONDS.
        DatabaseError when Pulse's database cannot be reached (nothing was started)."""
        self._sync()
        if self.balance_ms > 0:
            return
        wait = refill_wait_seconds(connection=self.connection, balance_ms=self.balance_ms)
        if wait > SHARE_WAIT_MAX_SECONDS:
            raise held_back(connection=self.connection, balance_ms=self.balance_ms, at=self._read_at)
        time.sleep(wait)
        self.balance_ms = 0.0  # refilled to about zero: the next checkpoint reads the bucket again

    def checkpoint(self) -> None:
        """Between units of work: go back to the bucket only once what was found there is spent.

        Pulse's database unreachable here stops the remaining work (`skipped`, reason bookkeeping); what was
        already read from the replica is still recorded."""
        if self.unsettled_ms < self.balance_ms:
            return
        try:
            self.admit()
        except DatabaseError:
            raise GuardrailStop(
                "Pulse's database is unreachable: no replica time could be reserved", reason="bookkeeping"
            ) from None

    def settle(self) -> None:
        """Charge what is left unsettled (best effort: an unreachable database loses only this much)."""
        if self.unsettled_ms <= 0 and not self.unsettled_queries:
            return
        try:
            self._sync()
        except DatabaseError:
            logger.warning(
                "Pulse's database is unreachable: replica time of connection %s not charged", self.connection.pk
            )


@dataclass(frozen=True)
class ShareUse:
    """What a connection's replica time looks like now, for people (API, admin)."""

    limit_percent: float
    burst_seconds: float
    now_percent: float  # over about the last minute
    this_hour_seconds: float
    this_hour_percent: float  # of the hour's elapsed part
    available_seconds: float  # in the bucket now (negative: debt)
    queries_this_hour: int


def share_use(*, connection: Connection, allowance: QueryAllowance | None, now: datetime) -> ShareUse:
    """The share used now and this hour, from the connection's QueryAllowance row (None: never used)."""
    limit, burst = connection.replica_time_share_percent, connection.replica_time_burst_seconds
    if allowance is None or allowance.time_updated_at is None:
        return ShareUse(limit, burst, 0.0, 0.0, 0.0, burst, 0)
    elapsed = max(0.0, (now - allowance.time_updated_at).total_seconds())
    recent = allowance.time_recent_ms * math.exp(-elapsed / RECENT_WINDOW_SECONDS)
    hour_start = now.replace(minute=0, second=0, microsecond=0)
    hour_ms = allowance.time_hour_ms if allowance.time_hour_start == hour_start else 0.0
    hour_elapsed = max(60.0, (now - hour_start).total_seconds())
    available = min(capacity_ms(connection), allowance.time_balance_ms + refill_rate_ms(connection) * elapsed)
    queries = allowance.queries_used if allowance.window_start == hour_start else 0
    return ShareUse(
        limit_percent=limit,
        burst_seconds=burst,
        now_percent=round(recent / (RECENT_WINDOW_SECONDS * 1000) * 100, 3),
        this_hour_seconds=round(hour_ms / 1000, 3),
        this_hour_percent=round(hour_ms / (hour_elapsed * 1000) * 100, 3),
        available_seconds=round(available / 1000, 3),
        queries_this_hour=queries,
    )
