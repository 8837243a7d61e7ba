"""Concurrency: at most `max_concurrent_queries` sessions per replica, held as PostgreSQL advisory locks in
Pulse's database (released automatically if a process dies)."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import DatabaseError
from django.db import connection as pulse_db

from connections.guardrails.errors import GuardrailStop
from connections.models import Connection

SLOT_LOCK_NAMESPACE = 0x5055  # "PU": advisory lock keys are (namespace << 32) | (connection id * 64 + slot)


def _slot_key(connection_id: int, slot: int) -> int:
    return (SLOT_LOCK_NAMESPACE << 32) | (connection_id * 64 + slot)


def slot_try(cursor, *, connection: Connection, taken: frozenset[int] = frozenset()) -> int | None:
    """Take a free slot of the connection on the session of `cursor` (a cursor of Pulse's database); None if all
    are busy. A session may take an advisory lock it holds again: the slots it holds already are in `taken`."""
    for slot in range(connection.max_concurrent_queries):
        if slot in taken:
            continue
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [_slot_key(connection.pk, slot)])
        if cursor.fetchone()[0]:
            return slot
    return None


def slot_unlock(cursor, *, connection_id: int, slot: int) -> None:
    cursor.execute("SELECT pg_advisory_unlock(%s)", [_slot_key(connection_id, slot)])


def slots_busy(connection: Connection) -> GuardrailStop:
    return GuardrailStop(
        f"all {connection.max_concurrent_queries} concurrent session slots of this connection are busy",
        reason="concurrency",
    )


def slot_wait() -> None:
    """The pause between two tries for a slot."""
    time.sleep(0.05 + random.random() * 0.05)


@contextmanager
def replica_slot(*, connection: Connection, wait_seconds: float) -> Iterator[int]:
    """Hold one of the connection's `max_concurrent_queries` session slots, across all processes."""
    deadline = time.monotonic() + wait_seconds
    held = None
    while held is None:
        with pulse_db.cursor() as cursor:
            held = slot_try(cursor, connection=connection)
        if held is None:
            if time.monotonic() >= deadline:
                raise slots_busy(connection)
            slot_wait()
    try:
        yield held
    finally:
        try:
            with pulse_db.cursor() as cursor:
                slot_unlock(cursor, connection_id=connection.pk, slot=held)
        except DatabaseError:
            pass  # the session that held the lock is gone, and the lock with it
