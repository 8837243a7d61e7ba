"""Guardrails held in Pulse's database: budget, rate, concurrency slots, circuit breaker."""

import threading
import time
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.db import connection as pulse_db
from django.utils import timezone

from connections import guardrails
from connections.guardrails import lookup
from connections.models import QueryAllowance

pytestmark = pytest.mark.django_db


def test_the_hourly_budget_runs_out_and_renews_next_hour(make_connection):
    shop = make_connection(max_queries_per_hour=10, max_queries_per_second=100_000)
    now = timezone.now().replace(minute=10)
    assert guardrails.allowance_reserve(connection=shop, queries=6, now=now) is not None
    assert guardrails.allowance_reserve(connection=shop, queries=5, now=now) is None
    assert guardrails.allowance_reserve(connection=shop, queries=4, now=now) is not None
    assert guardrails.allowance_reserve(connection=shop, queries=1, now=now) is None
    assert QueryAllowance.objects.get(connection=shop).queries_used == 10
    assert guardrails.allowance_reserve(connection=shop, queries=1, now=now + timedelta(hours=1)) is not None


def test_unused_reservations_are_refunded(make_connection):
    shop = make_connection(max_queries_per_hour=10, max_queries_per_second=100_000)
    allowance = guardrails.Allowance(connection=shop, now=timezone.now())
    assert allowance.reserve(8)
    allowance.take()
    allowance.settle()
    assert QueryAllowance.objects.get(connection=shop).queries_used == 1


def test_take_raises_once_the_budget_is_spent(make_connection):
    shop = make_connection(max_queries_per_hour=2, max_queries_per_second=100_000)
    allowance = guardrails.Allowance(connection=shop, now=timezone.now())
    allowance.take()
    allowance.take()
    with pytest.raises(guardrails.GuardrailStop, match="query budget of 2/h"):
        allowance.take()


def test_the_rate_spaces_reservations_across_callers(make_connection):
    """The shared schedule, read from where it is stored (no wall-clock tolerance): 1 query/s, so the second
    caller's query is due exactly one interval after the first caller's five, and at most 5 s from now."""
    shop = make_connection(max_queries_per_second=1)
    now = timezone.now()
    first = guardrails.allowance_reserve(connection=shop, queries=5, now=now)
    after_first = QueryAllowance.objects.get(connection=shop).next_query_at
    second = guardrails.allowance_reserve(connection=shop, queries=1, now=now)
    after_second = QueryAllowance.objects.get(connection=shop).next_query_at
    assert 0 <= first < 1  # nothing reserved before: the first five may start at once (no spacing owed)
    assert after_second - after_first == timedelta(seconds=1)  # queued behind the five, one interval apart
    assert 0 < second <= 5  # waits for the first five to have been sent


def test_queries_within_a_batch_are_spaced_by_the_rate(make_connection):
    shop = make_connection(max_queries_per_second=20)
    allowance = guardrails.Allowance(connection=shop, now=timezone.now())
    allowance.reserve(5)
    started = time.monotonic()
    for _ in range(5):
        allowance.take()
    assert time.monotonic() - started >= 4 * 0.05 * 0.9


@contextmanager
def slots_held_elsewhere(connection, count):
    """Hold `count` of the connection's slots from other threads (other database sessions); yields their numbers."""
    holding, release = threading.Event(), threading.Event()
    held_slots = []

    def hold():
        try:
            with guardrails.replica_slot(connection=connection, wait_seconds=1) as slot:
                held_slots.append(slot)
                if len(held_slots) == count:
                    holding.set()
                release.wait(5)
        finally:
            pulse_db.close()

    threads = [threading.Thread(target=hold) for _ in range(count)]
    for thread in threads:
        thread.start()
    try:
        assert holding.wait(5)
        yield held_slots
    finally:
        release.set()
        for thread in threads:
            thread.join()


@pytest.mark.django_db(transaction=True)
def test_concurrency_slots_hold_across_database_sessions(make_connection):
    shop = make_connection(max_concurrent_queries=2)
    with (
        slots_held_elsewhere(shop, 2) as held_slots,
        pytest.raises(guardrails.GuardrailStop, match="2 concurrent session slots"),
        guardrails.replica_slot(connection=shop, wait_seconds=0.2),
    ):
        pass
    assert sorted(held_slots) == [0, 1]
    with guardrails.replica_slot(connection=shop, wait_seconds=0.2) as slot:
        assert slot in (0, 1)


@pytest.mark.django_db(transaction=True)
def test_a_lookup_session_waits_for_a_free_slot_and_gives_up_naming_it(make_connection, monkeypatch):
    shop = make_connection(max_concurrent_queries=1)
    monkeypatch.setattr(lookup, "LOOKUP_SLOT_WAIT_SECONDS", 0.2)
    with (
        slots_held_elsewhere(shop, 1),
        pytest.raises(guardrails.GuardrailStop, match="1 concurrent session slots"),
        guardrails.lookup_session(connection=shop, queries=1),
    ):
        pass
    assert not QueryAllowance.objects.filter(connection=shop, queries_used__gt=0).exists()
    with guardrails.lookup_session(connection=shop, queries=1) as session:
        assert session.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
    assert QueryAllowance.objects.get(connection=shop).queries_used == 2


def test_a_recovery_conflict_is_retried_and_each_try_counts(make_connection, replica_pair, replica_settings):
    """The primary vacuums rows a standby query still needs: PostgreSQL cancels it (40001); Pulse retries."""
    from psycopg import sql

    from connections import replica

    with replica_pair.primary.connect("shop") as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS victims (id int)")
        conn.execute("TRUNCATE victims")
        conn.execute("INSERT INTO victims SELECT generate_series(1, 1000)")
        conn.execute("GRANT SELECT ON victims TO pulse_reader")
    replica_pair.wait_for_replay()
    shop = make_connection(max_queries_per_second=100_000, statement_timeout_ms=20_000)
    allowance = guardrails.Allowance(connection=shop, now=timezone.now())
    session = replica.connect(conninfo=shop.conninfo(), statement_timeout_ms=shop.statement_timeout_ms)
    runner = guardrails.QueryRunner(session=session, connection=shop, allowance=allowance)

    # The first try counts 1000 rows, then holds its snapshot while it sleeps; once the standby shows it sleeping
    # (a controlled event, not a race against the clock) the primary deletes and vacuums the rows. Sleeping, not
    # merely "active": an active backend may still be reading the Bind of the extended protocol with its snapshot
    # taken at Parse, and a recovery conflict then terminates the session (FATAL) instead of cancelling the query.
    # Replaying the vacuum cancels the query (40001); the retry sees the empty table and does not sleep.
    query = sql.SQL(
        "SELECT c.n FROM (SELECT count(*) AS n FROM victims) c,"
        " LATERAL (SELECT pg_sleep(CASE WHEN c.n > 0 THEN 15 ELSE 0 END)) s"
    )

    def vacuum_under_the_query():
        with replica_pair.standby.connect("shop") as standby:
            while not standby.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE state = 'active' AND wait_event = 'PgSleep'"
                " AND query LIKE '%count(*) AS n FROM victims%' AND pid <> pg_backend_pid())"
            ).fetchone()[0]:
                time.sleep(0.05)
        with replica_pair.primary.connect("shop") as conn:
            conn.execute("DELETE FROM victims")
            conn.execute("VACUUM victims")

    thread = threading.Thread(target=vacuum_under_the_query)
    thread.start()
    try:
        rows = runner.fetchone(query)
    finally:
        thread.join(30)
        session.close()
    assert rows == (0,)  # the retry saw the vacuumed table
    assert runner.queries_sent == 2 and allowance.used == 2


def test_every_statement_runs_read_only(make_connection):
    from psycopg import sql

    from connections import replica

    shop = make_connection()
    session = replica.connect(conninfo=shop.conninfo(), statement_timeout_ms=shop.statement_timeout_ms)
    runner = guardrails.QueryRunner(
        session=session, connection=shop, allowance=guardrails.Allowance(connection=shop, now=timezone.now())
    )
    try:
        assert runner.fetchone(sql.SQL("SHOW transaction_read_only")) == ("on",)
        assert runner.fetch_user(sql.SQL("SELECT current_setting('transaction_read_only') = 'on'")).rows == [(True,)]
        assert runner.fetchone(sql.SQL("SHOW application_name")) == ("pulse",)
        assert runner.fetchone(sql.SQL("SHOW statement_timeout")) == ("5s",)
        assert runner.fetchone(sql.SQL("SHOW idle_in_transaction_session_timeout")) == ("10s",)
        with pytest.raises(guardrails.CheckError, match="read-only"):
            runner.fetchone(sql.SQL("CREATE TEMP TABLE nope (id int)"))
    finally:
        session.close()


@pytest.fixture
def runner(make_connection):
    from connections import replica

    shop = make_connection(max_queries_per_second=100_000)
    session = replica.connect(conninfo=shop.conninfo(), statement_timeout_ms=shop.statement_timeout_ms)
    try:
        yield guardrails.QueryRunner(
            session=session, connection=shop, allowance=guardrails.Allowance(connection=shop, now=timezone.now())
        )
    finally:
        session.close()


def test_user_sql_runs_with_the_session_limits_set_again(runner):
    from psycopg import sql

    # As if earlier SQL had changed the session's settings (a function that lies about its volatility could).
    runner.fetch(sql.SQL("SET statement_timeout = 0"))
    runner.fetch(sql.SQL("SET standard_conforming_strings = off"))
    runner.fetch(sql.SQL("SET default_transaction_read_only = off"))
    found = runner.fetch_user(
        sql.SQL("SELECT current_setting('statement_timeout') || ' ' || octet_length('a\\b') || ' ' || "
                "current_setting('transaction_read_only')")
    )  # fmt: skip
    assert found.rows == [("5s 3 on",)]  # with standard strings, 'a\b' is three characters
    assert runner.queries_sent == 5  # the three SETs, EXPLAIN and the query: setting the limits is not counted
    # The limits were set for the session, not only for that transaction.
    assert runner.fetchone(sql.SQL("SHOW statement_timeout")) == ("5s",)
    assert runner.fetchone(sql.SQL("SHOW default_transaction_read_only")) == ("on",)


def test_user_sql_is_fetched_bounded_on_the_server(runner):
    from psycopg import sql

    many = runner.fetch_user(sql.SQL("SELECT g FROM generate_series(1, 1000) g"))
    assert many.rows == [(1,), (2,)] and not many.oversized
    wide = runner.fetch_user(sql.SQL("SELECT repeat('x', 5000)"))
    assert wide.oversized and wide.rows == [(None,)]
    fits = runner.fetch_user(sql.SQL("SELECT repeat('x', 4000), 1"))
    assert not fits.oversized and fits.rows == [("x" * 4000, 1)]


def test_user_sql_goes_alone_through_the_extended_protocol(runner):
    from psycopg import sql

    with pytest.raises(guardrails.CheckError, match="multiple commands"):
        runner.fetch_user(sql.SQL("SELECT 1; SET statement_timeout = 0"))
    assert runner.fetchone(sql.SQL("SHOW statement_timeout")) == ("5s",)


def test_user_sql_over_the_cost_limit_is_not_run(runner):
    from psycopg import sql

    runner.connection.max_query_cost = 1
    with pytest.raises(guardrails.GuardrailStop, match="planner estimates cost"):
        runner.fetch_user(sql.SQL("SELECT count(*) FROM orders"))
    assert runner.queries_sent == 1  # EXPLAIN only


def test_the_client_cancels_a_statement_whose_server_timeout_was_lifted(runner):
    from psycopg import sql

    runner.connection.statement_timeout_ms = 300
    runner.fetch(sql.SQL("SET statement_timeout = 0"))  # as SQL that lies about itself could
    with pytest.raises(guardrails.CheckError, match=r"^timed out after 300 ms$"):
        runner.fetch(sql.SQL("SELECT pg_sleep(60)"))
    assert not runner.session.broken  # cancelled, not cut off: the session goes on
    assert runner.fetchone(sql.SQL("SELECT 1")) == (1,)
