"""Save-time lookups (the catalog lookup and EXPLAIN behind the API and admin): one replica session under
the same budget, rate, replica time share and concurrency slots as the checks."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from django.utils import timezone

from connections import replica
from connections.guardrails.budget import Allowance
from connections.guardrails.share import TimeShare
from connections.guardrails.slots import replica_slot
from connections.models import Connection

LOOKUP_SLOT_WAIT_SECONDS = 5.0


@contextmanager
def lookup_session(*, connection: Connection, queries: int) -> Iterator[psycopg.Connection]:
    """A replica session for a one-off lookup of `queries` statements, under the connection's guardrails.

    The statements and the session's recovery check are taken from the hourly budget and spaced by
    the rate, inside one of the connection's concurrency slots, and the session's whole time on the replica
    is charged to the time share; GuardrailStop when one of them says no.
    """
    allowance = Allowance(connection=connection, now=timezone.now())
    if not allowance.reserve(queries + 1):
        raise allowance.spent()
    share = TimeShare(connection=connection)
    try:
        with replica_slot(connection=connection, wait_seconds=LOOKUP_SLOT_WAIT_SECONDS):
            share.admit()
            for _ in range(queries + 1):
                allowance.take()
            started = time.perf_counter()
            try:
                with replica.session_for(connection) as session:
                    yield session
            finally:
                share.spend((time.perf_counter() - started) * 1000)
                share.settle()
    finally:
        allowance.settle()
