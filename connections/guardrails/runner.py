"""Running queries on a replica session under the guardrails.

- Timeouts: statement and lock timeouts end the check with an error "timed out after N ms"; not retried.
  A client-side deadline backs them up: cancel at the timeout + 1 s, close the session if that goes unanswered.
- User SQL runs with the session limits set again, alone (extended protocol), fetched bounded on the server.
- Recovery conflicts (SQLSTATE 40001 on a hot standby) are retried up to twice with jittered backoff;
  each try counts against the budget.
- Cost guard: a query whose planner estimate exceeds `max_query_cost` is not run.
- Replica time: each statement's duration beyond the session's round-trip floor (the quickest statement it
  has sent: network and protocol, not the server's work) is spent from the batch's `TimeShare` (share.py).
"""

from __future__ import annotations

import itertools
import math
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
from django.utils import timezone
from psycopg import errors, sql

from connections import replica
from connections.guardrails.budget import Allowance
from connections.guardrails.errors import CheckError, GuardrailStop, SessionLost
from connections.guardrails.share import TimeShare
from connections.models import Connection

RECOVERY_CONFLICT_RETRIES = 2
RECOVERY_CONFLICT_BACKOFF_SECONDS = 0.2
CLIENT_DEADLINE_GRACE_SECONDS = 1.0
"""The client cancels a statement this long after its statement_timeout, in case the server did not."""
CANCEL_WAIT_SECONDS = 2.0
"""How long a cancel request, and then the statement's end, may take before the session is closed."""
USER_ROW_MAX_BYTES = 4096
"""A row of a user's query larger than this (as text) is refused on the server, never sent to Pulse."""
USER_ROWS = 2
"""Rows of a user's query fetched at most: enough to tell one row from several."""


def session_limits(*, connection: Connection) -> sql.Composable:
    """Set the session's limits again (statement and lock timeouts, read-only, ...), whatever SQL changed them."""
    settings = replica.session_settings(statement_timeout_ms=connection.statement_timeout_ms)
    return sql.SQL("SELECT {}").format(
        sql.SQL(", ").join(
            sql.SQL("pg_catalog.set_config({}, {}, false)").format(sql.Literal(name), sql.Literal(value))
            for name, value in settings.items()
        )
    )


def _sever(fd: int) -> None:
    """Shut the session's socket down, so a read blocked on a server that never answers returns at once."""
    try:
        with socket.socket(fileno=os.dup(fd)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed


@dataclass
class Deadline:
    """What the client-side deadline of one statement did: nothing, cancelled it, or closed the session."""

    expired: bool = False
    severed: bool = False


class _Watchdog:
    """One thread that watches the deadlines of every statement in flight, so arming one costs a lock, not a
    thread. An expired deadline's action runs in a thread of its own (it may wait on the network)."""

    def __init__(self):
        self._condition = threading.Condition()
        self._deadlines: dict[int, tuple[float, Callable[[], None]]] = {}
        self._keys = itertools.count()
        self._wake_at = math.inf
        self._thread: threading.Thread | None = None

    def arm(self, *, at: float, action: Callable[[], None]) -> int:
        with self._condition:
            key = next(self._keys)
            self._deadlines[key] = (at, action)
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="pulse-statement-deadlines", daemon=True)
                self._thread.start()
            if at < self._wake_at:
                self._condition.notify()
            return key

    def disarm(self, key: int) -> bool:
        """Forget a deadline; False when it has already expired (its action was started)."""
        with self._condition:
            return self._deadlines.pop(key, None) is not None

    def _watch(self) -> None:
        with self._condition:
            while True:
                now = time.monotonic()
                for key in [key for key, (at, _) in self._deadlines.items() if at <= now]:
                    _, action = self._deadlines.pop(key)
                    threading.Thread(target=action, name="pulse-statement-cancel", daemon=True).start()
                self._wake_at = min((at for at, _ in self._deadlines.values()), default=math.inf)
                self._condition.wait(None if self._wake_at == math.inf else self._wake_at - now)


_WATCHDOG = _Watchdog()


@contextmanager
def statement_deadline(session: psycopg.Connection, *, timeout_ms: int) -> Iterator[Deadline]:
    """Bound one statement from the client side, whatever the server's settings say.

    At `timeout_ms` + a grace the statement is cancelled; if the server still does not answer (or the
    cancel request cannot reach it), the session's socket is shut down, so the statement ends with a
    broken session. Nothing of it outlives the block.
    """
    deadline = Deadline()
    finished, acted = threading.Event(), threading.Event()
    fd = session.pgconn.socket

    def expire() -> None:
        try:
            deadline.expired = True
            try:
                session.cancel_safe(timeout=CANCEL_WAIT_SECONDS)
                answered = finished.wait(CANCEL_WAIT_SECONDS)
            except psycopg.Error:  # the cancel request itself got no answer
                answered = finished.is_set()
            if not answered:
                deadline.severed = True
                _sever(fd)
        finally:
            acted.set()

    key = _WATCHDOG.arm(at=time.monotonic() + timeout_ms / 1000 + CLIENT_DEADLINE_GRACE_SECONDS, action=expire)
    try:
        yield deadline
    finally:
        finished.set()
        if not _WATCHDOG.disarm(key):
            acted.wait()


COST_ESTIMATE_MAX_AGE = timedelta(days=1)


def known_cost(*, cached: dict | None, key: str) -> float | None:
    """The planner's cost cached under `key` ({"cost", "at"}) if under COST_ESTIMATE_MAX_AGE old, else None."""
    entry = (cached or {}).get(key) if key else None
    if entry and timezone.now() - datetime.fromisoformat(entry["at"]) < COST_ESTIMATE_MAX_AGE:
        return entry["cost"]
    return None


@dataclass(frozen=True)
class UserRows:
    """What a user's query returned, fetched bounded: up to `USER_ROWS` rows, each under `USER_ROW_MAX_BYTES`."""

    rows: list[tuple]
    oversized: bool


_USER_QUERY = sql.SQL(
    "SELECT f.fits, t.* FROM (\n{query}\n) AS q"
    " CROSS JOIN LATERAL (SELECT pg_catalog.octet_length(q::text) <= {max_bytes} AS fits) AS f"
    " LEFT JOIN LATERAL (SELECT q.*) AS t ON f.fits"
    " LIMIT {rows}"
)


class QueryRunner:
    """Sends queries to one replica session under the guardrails.

    Every statement is bounded by a client-side deadline as well as the session's statement_timeout.
    Fixed templates run as single read-only statements (one round trip). A user's query runs by
    `fetch_user`: in a READ ONLY transaction, after the session limits are set again, as one statement
    of the extended protocol, and fetched bounded.
    """

    def __init__(
        self,
        *,
        session: psycopg.Connection,
        connection: Connection,
        allowance: Allowance,
        share: TimeShare | None = None,
    ):
        self.session = session
        self.connection = connection
        self.allowance = allowance
        self.share = share if share is not None else TimeShare(connection=connection)
        self.queries_sent = 0
        self.failed = False  # some statement failed (the session is then not kept for another batch)
        self._round_trip_ms = math.inf  # the quickest statement of this session so far

    def _spend(self, started: float) -> None:
        """Spend a statement's time on the replica: its duration less the session's round-trip floor."""
        elapsed = (time.perf_counter() - started) * 1000
        self._round_trip_ms = min(self._round_trip_ms, elapsed)
        self.share.spend(elapsed - self._round_trip_ms)

    def _send(self, cur: psycopg.Cursor, query: sql.Composable, params=None, *, counted=True, user_sql=False):
        """Execute one statement under the client-side deadline; `user_sql` forces the extended protocol,
        which refuses a second statement whatever the text hides."""
        if counted:
            self.allowance.take()
            self.queries_sent += 1
        started = time.perf_counter()
        with statement_deadline(self.session, timeout_ms=self.connection.statement_timeout_ms) as deadline:
            try:
                cur.execute(query, params, binary=True if user_sql else None)
            except psycopg.Error as exc:
                if deadline.severed:  # the replica stopped answering: not charged as its work
                    raise SessionLost(
                        f"timed out after {self.connection.statement_timeout_ms} ms: the replica did not answer "
                        "a cancel request, so the session was closed"
                    ) from None
                self._spend(started)
                if deadline.expired and isinstance(exc, errors.QueryCanceled):
                    raise CheckError(f"timed out after {self.connection.statement_timeout_ms} ms") from None
                raise
            self._spend(started)

    def _attempts(self, work, *, transaction: bool):
        """Run `work(cursor)`, retrying recovery conflicts; psycopg errors become CheckError or SessionLost, and
        mark the runner `failed`."""
        try:
            return self._retried(work, transaction=transaction)
        except (CheckError, SessionLost):
            self.failed = True
            raise

    def _retried(self, work, *, transaction: bool):
        for attempt in range(RECOVERY_CONFLICT_RETRIES + 1):
            try:
                with self.session.transaction() if transaction else nullcontext(), self.session.cursor() as cur:
                    return work(cur)
            except errors.SerializationFailure as exc:
                if attempt == RECOVERY_CONFLICT_RETRIES:
                    raise CheckError(
                        f"canceled by conflicts with recovery {attempt + 1} times: {replica.describe_error(exc)}"
                    ) from None
                time.sleep(RECOVERY_CONFLICT_BACKOFF_SECONDS * (attempt + 1) * (0.5 + random.random()))
            except errors.QueryCanceled:
                raise CheckError(f"timed out after {self.connection.statement_timeout_ms} ms") from None
            except errors.LockNotAvailable:
                raise CheckError(
                    f"timed out after {replica.lock_timeout_ms(self.connection.statement_timeout_ms)} ms "
                    "waiting for a lock"
                ) from None
            except psycopg.OperationalError as exc:
                if self.session.closed or self.session.broken:
                    raise SessionLost(f"connection lost: {replica.describe_error(exc)}") from None
                raise CheckError(replica.describe_error(exc)) from None
            except psycopg.Error as exc:
                raise CheckError(replica.describe_error(exc)) from None
        raise AssertionError("unreachable")

    def fetch(self, query: sql.Composable, params=None, *, rows: int = 1) -> list[tuple]:
        """Run one fixed, read-only query and return at most `rows` rows."""

        def work(cur):
            self._send(cur, query, params)
            return cur.fetchmany(rows) if cur.description else []

        return self._attempts(work, transaction=False)

    def fetchone(self, query: sql.Composable, params=None) -> tuple | None:
        found = self.fetch(query, params, rows=1)
        return found[0] if found else None

    def _cost(self, cur: psycopg.Cursor, query: sql.Composable, params=None) -> float:
        self._send(cur, sql.SQL("EXPLAIN (FORMAT JSON) ") + query, params, user_sql=True)
        return float(cur.fetchone()[0][0]["Plan"]["Total Cost"])

    def plan_cost(self, query: sql.Composable, params=None) -> float:
        """EXPLAIN `query` (nothing runs) and return the planner's total cost."""
        return self._attempts(lambda cur: self._cost(cur, query, params), transaction=False)

    def _refuse_over_limit(self, cost: float) -> None:
        if cost > self.connection.max_query_cost:
            raise GuardrailStop(
                f"not run: the planner estimates cost {cost:,.0f}, above this connection's limit of "
                f"{self.connection.max_query_cost:,.0f}",
                reason="cost",
            )

    def guard_cost(
        self,
        query: sql.Composable,
        params=None,
        *,
        cached: dict | None = None,
        key: str = "",
        bound: float | None = None,
    ) -> float:
        """Refuse (GuardrailStop) a query whose estimated cost exceeds the connection's limit.

        `cached` maps keys to {"cost", "at"}; a fresh estimate (under a day old) is reused. `bound`, an upper bound
        of the query's cost known without asking (from the table's size), spares the EXPLAIN when within the limit.
        """
        cost = known_cost(cached=cached, key=key)
        if cost is None and bound is not None and bound <= self.connection.max_query_cost:
            return bound
        if cost is None:
            cost = self.plan_cost(query, params)
            if cached is not None and key:
                cached[key] = {"cost": cost, "at": timezone.now().isoformat()}
        self._refuse_over_limit(cost)
        return cost

    def cost_allowed(self, *, cached: dict | None, key: str, bound: float | None = None) -> bool:
        """True when a fresh cached estimate under `key`, else `bound`, is within the connection's limit (nothing
        is sent)."""
        cost = known_cost(cached=cached, key=key)
        cost = bound if cost is None else cost
        return cost is not None and cost <= self.connection.max_query_cost

    def fetch_user(self, query: sql.Composable) -> UserRows:
        """Run a user's query (from `custom_sql_policy.composed`): cost-guarded, limits re-applied, fetched bounded.

        In one READ ONLY transaction: the session limits are set again (not counted as a query), the query
        is planned (GuardrailStop over the cost limit) and run wrapped so that the server returns at most
        `USER_ROWS` rows and blanks any row over `USER_ROW_MAX_BYTES`; `oversized` tells it did; the limits are
        set once more before the commit, so the fixed queries after it run under them too.
        """
        wrapped = _USER_QUERY.format(
            query=query, max_bytes=sql.Literal(USER_ROW_MAX_BYTES), rows=sql.Literal(USER_ROWS)
        )

        def work(cur):
            self._send(cur, session_limits(connection=self.connection), counted=False)
            self._refuse_over_limit(self._cost(cur, query))
            self._send(cur, wrapped, user_sql=True)
            found = cur.fetchmany(USER_ROWS)
            # Set again before the commit: what the query changed in the session (a function calling
            # set_config('default_transaction_read_only', 'off', false)) must not outlive it.
            self._send(cur, session_limits(connection=self.connection), counted=False)
            return UserRows(rows=[row[1:] for row in found], oversized=not all(row[0] for row in found))

        return self._attempts(work, transaction=True)
