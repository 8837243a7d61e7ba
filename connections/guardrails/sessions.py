"""Replica sessions of the checks' batches, and the warm ones the runchecks daemon keeps between batches.

A new backend costs the replica a start-up and ~780 blocks of catalog caches, and each table it has not seen
~46 blocks more; a session kept from one batch to the next of the same connection costs neither. A batch
takes a `Checkout`: one of the connection's concurrency slots and, from a daemon's `SessionKeeper`, the warm
session kept in it (else the batch opens one). `one_off_checkout` (runchecks --once) keeps nothing.

The keeper's rules:
- A kept session keeps holding its slot: the keeper takes its slots on a session of Pulse's database of its
  own (one per process, shared by the workers), so other processes count the kept session as busy. A process
  keeps at most `max_concurrent_queries - 1` idle sessions of a connection (none when the cap is 1), and keeps
  one only while another slot is free in every process (`_another_slot_free`), so daemons on several hosts
  never hold every slot idle: one stays free for their batches and the save-time lookups (a Test, a save).
- Closed: idle longer than the idle limit (`expire_idle`: at every checkout and daemon tick), once it has read
  more than KEPT_SESSION_TABLES_MAX distinct tables (a backend's catalog caches only grow), after a batch in
  which any statement failed, on a replica no longer in recovery, when the connection's settings changed (host,
  credentials, timeouts: anything its sessions are opened with), when the keeper's session of Pulse's database
  failed (its slots are gone with it), and at stop (`close`).
- Checked at reuse: the keeper's session of Pulse's database must still answer (else its slots are gone: every idle
  session is closed), and the session settings are set again (`session_limits`, also what user SQL may have changed),
  which tells a session the replica ended (a restart, pg_terminate_backend): then a new one is opened in the
  same slot, and the batch loses nothing.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

import psycopg
from django.db import DEFAULT_DB_ALIAS
from django.db import Error as PulseDatabaseError  # OperationalError, and InterfaceError (a closed session)
from django.db import connections as pulse_databases

from connections.guardrails.runner import session_limits, statement_deadline
from connections.guardrails.slots import replica_slot, slot_try, slot_unlock, slot_wait, slots_busy
from connections.models import Connection

logger = logging.getLogger(__name__)


def session_fingerprint(connection: Connection) -> str:
    """A digest of what the connection's sessions are opened with (never the secret itself): when it changes,
    a kept session is closed."""
    opened_with = (
        sorted(connection.conninfo().items()),
        connection.statement_timeout_ms,
        connection.require_replica,
    )
    return hashlib.sha256(repr(opened_with).encode()).hexdigest()


@dataclass
class Checkout:
    """A slot of a connection for one batch, and its session: a kept one (`warm`), or None until the batch opens
    one. The batch sets `keep` when the session may serve the next batch."""

    connection_id: int
    slot: int
    fingerprint: str = ""
    session: psycopg.Connection | None = None
    warm: bool = False
    keep: bool = False
    generation: int = 0  # the keeper's session of Pulse's database that holds the slot
    idle_since: float = 0.0
    tables_seen: set = field(default_factory=set)  # ids of the tables its session has read (kept sessions)

    def close_session(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None


@contextmanager
def one_off_checkout(*, connection: Connection, wait_seconds: float) -> Iterator[Checkout]:
    """A slot for one batch, its session closed at the end (nothing is kept)."""
    with replica_slot(connection=connection, wait_seconds=wait_seconds) as slot:
        checkout = Checkout(connection_id=connection.pk, slot=slot)
        try:
            yield checkout
        finally:
            checkout.close_session()


KEPT_SESSION_TABLES_MAX = 5_000
"""A kept session that has read more distinct tables than this is closed after its batch: a backend keeps every
table it has seen in its catalog caches (a few kB each) for as long as it lives."""


def kept_max(connection: Connection) -> int:
    """Idle sessions of a connection a process may keep: all its slots but one."""
    return connection.max_concurrent_queries - 1


def session_answers(session: psycopg.Connection, *, connection: Connection) -> bool:
    """Set the session settings again on a kept session; False when it no longer answers."""
    if session.closed or session.broken:
        return False
    try:
        with statement_deadline(session, timeout_ms=connection.statement_timeout_ms), session.cursor() as cur:
            cur.execute(session_limits(connection=connection))
    except psycopg.Error:
        return False
    return True


class SessionKeeper:
    """One daemon process's kept replica sessions, by connection, and the session of Pulse's database that holds
    their slots. Thread-safe: the workers share it."""

    def __init__(self, *, idle_seconds: float, clock: Callable[[], float] = time.monotonic):
        self.idle_seconds = idle_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._idle: dict[int, list[Checkout]] = {}
        self._held: dict[int, set[int]] = {}  # connection id -> the slots the keeper's session holds (in use or idle)
        self._holder = None  # a Django database wrapper of its own, on Pulse's database
        self._generation = 0
        self._closed = False

    def kept(self, connection_id: int | None = None) -> list[Checkout]:
        """The idle sessions kept now (of one connection, or of all)."""
        with self._lock:
            if connection_id is not None:
                return list(self._idle.get(connection_id, []))
            return [checkout for idle in self._idle.values() for checkout in idle]

    @contextmanager
    def checkout(self, *, connection: Connection, wait_seconds: float) -> Iterator[Checkout]:
        """A slot of `connection` for one batch, with a kept session when one is idle and still answers."""
        self.expire_idle()
        fingerprint = session_fingerprint(connection)
        checkout = self._take_kept(connection, fingerprint) or self._take_slot(connection, fingerprint, wait_seconds)
        try:
            yield checkout
        finally:
            self._give_back(checkout, connection=connection, fingerprint=fingerprint)

    def expire_idle(self) -> int:
        """Close the sessions idle for `idle_seconds` or longer; how many."""
        now = self.clock()
        with self._lock:
            expired = [c for idle in self._idle.values() for c in idle if now - c.idle_since >= self.idle_seconds]
            for checkout in expired:
                self._idle[checkout.connection_id].remove(checkout)
        for checkout in expired:
            self._release(checkout)
        return len(expired)

    def close(self) -> None:
        """Close every kept session, release their slots and the session of Pulse's database (daemon stop)."""
        with self._lock:
            self._closed = True
            kept = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for checkout in kept:
            self._release(checkout)
        with self._lock:
            self._holder_close()

    def _take_kept(self, connection: Connection, fingerprint: str) -> Checkout | None:
        with self._lock:
            if self._idle.get(connection.pk) and not self._holder_answers():
                self._holder_lost()  # the slots went with it: the idle sessions are closed
            idle = self._idle.get(connection.pk, [])
            stale = [c for c in idle if c.fingerprint != fingerprint or c.generation != self._generation]
            fresh = [c for c in idle if c not in stale]
            checkout = fresh.pop() if fresh else None
            self._idle[connection.pk] = fresh
        for old in stale:
            self._release(old)
        if checkout is None:
            return None
        checkout.keep = False
        checkout.warm = session_answers(checkout.session, connection=connection)
        if not checkout.warm:
            logger.info("a kept session of connection %s no longer answers: a new one is opened", connection.pk)
            checkout.close_session()  # the slot stays taken: the batch opens a new session in it
            checkout.tables_seen = set()
        return checkout

    def _take_slot(self, connection: Connection, fingerprint: str, wait_seconds: float) -> Checkout:
        deadline = time.monotonic() + wait_seconds
        while True:
            with self._lock:
                try:
                    with self._holder_cursor() as cursor:
                        held = self._held.setdefault(connection.pk, set())
                        slot = slot_try(cursor, connection=connection, taken=frozenset(held))
                except PulseDatabaseError:
                    self._holder_lost()
                    raise
                if slot is not None:
                    held.add(slot)
                generation = self._generation
            if slot is not None:
                return Checkout(connection_id=connection.pk, slot=slot, fingerprint=fingerprint, generation=generation)
            if time.monotonic() >= deadline:
                raise slots_busy(connection)
            slot_wait()

    def _give_back(self, checkout: Checkout, *, connection: Connection, fingerprint: str) -> None:
        session = checkout.session
        with self._lock:
            keep = (
                checkout.keep
                and not self._closed
                and session is not None
                and not session.closed
                and not session.broken
                and checkout.generation == self._generation
                and checkout.fingerprint == fingerprint
                and len(self._idle.get(connection.pk, [])) < kept_max(connection)
                and len(checkout.tables_seen) <= KEPT_SESSION_TABLES_MAX
                and self._another_slot_free(connection)
            )
            if keep:
                checkout.idle_since = self.clock()
                self._idle.setdefault(connection.pk, []).append(checkout)
        if not keep:
            self._release(checkout)

    def _another_slot_free(self, connection: Connection) -> bool:
        """Some slot of the connection is free in every process (tried and let go at once): keeping the session
        then leaves one for the other processes' batches and the save-time lookups. Under `_lock`."""
        try:
            with self._holder_cursor() as cursor:
                free = slot_try(cursor, connection=connection, taken=frozenset(self._held.get(connection.pk, ())))
                if free is not None:
                    slot_unlock(cursor, connection_id=connection.pk, slot=free)
        except PulseDatabaseError:
            self._holder_lost()
            return False
        return free is not None

    def _release(self, checkout: Checkout) -> None:
        """Close the checkout's session and give its slot back (unless it went with a lost session of Pulse's
        database)."""
        checkout.close_session()
        with self._lock:
            if checkout.generation != self._generation or self._holder is None:
                return
            self._held.get(checkout.connection_id, set()).discard(checkout.slot)
            try:
                with self._holder_cursor() as cursor:
                    slot_unlock(cursor, connection_id=checkout.connection_id, slot=checkout.slot)
            except PulseDatabaseError:
                self._holder_lost()

    def _holder_cursor(self):
        """A cursor on the keeper's own session of Pulse's database (opened when first needed). Under `_lock`."""
        if self._holder is None:
            self._holder = pulse_databases.create_connection(DEFAULT_DB_ALIAS)
            self._holder.inc_thread_sharing()  # the workers' threads share it, one at a time (under `_lock`)
        return self._holder.cursor()

    def _holder_answers(self) -> bool:
        """The keeper's session of Pulse's database still answers, and so still holds its slots. Under `_lock`."""
        try:
            with self._holder_cursor() as cursor:
                cursor.execute("SELECT 1")
        except PulseDatabaseError:
            return False
        return True

    def _holder_lost(self) -> None:
        """The session of Pulse's database failed, and the slots it held with it: the idle sessions are closed,
        and those in use are not kept. Under `_lock`."""
        logger.warning("the session holding the kept replica sessions' slots failed: they are closed")
        self._holder_close()
        self._generation += 1
        self._held.clear()
        for idle in self._idle.values():
            for checkout in idle:
                checkout.close_session()
        self._idle.clear()

    def _holder_close(self) -> None:
        if self._holder is not None:
            with suppress(PulseDatabaseError):  # gone already
                self._holder.close()
            self._holder = None
