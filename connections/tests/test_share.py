"""connections.guardrails.share: the replica time share, charged in Pulse's database and shared by every process."""

import threading
from datetime import timedelta

import pytest
from django.db import connection as pulse_db
from django.utils import timezone
from psycopg import sql

from connections import guardrails, replica
from connections.guardrails.share import held_back
from connections.models import QueryAllowance

pytestmark = pytest.mark.django_db


def set_bucket(connection, *, balance_ms: float, seconds_ago: float = 0.0):
    """Put the connection's bucket at `balance_ms`, as last charged `seconds_ago`."""
    guardrails.time_share_charge(connection=connection, spent_ms=0)
    QueryAllowance.objects.filter(connection=connection).update(
        time_balance_ms=balance_ms, time_updated_at=timezone.now() - timedelta(seconds=seconds_ago)
    )


def test_a_new_connection_starts_with_a_full_burst_and_charges_take_from_it(make_connection):
    shop = make_connection(replica_time_burst_seconds=3)
    balance, _ = guardrails.time_share_charge(connection=shop, spent_ms=250)
    assert balance == pytest.approx(2750)
    row = QueryAllowance.objects.get(connection=shop)
    assert (row.time_hour_ms, row.time_recent_ms) == (250, 250)


def test_the_bucket_refills_at_the_share_up_to_the_burst(make_connection):
    # 0.1% of one backend is 1 ms of server time per second.
    shop = make_connection(replica_time_share_percent=0.1, replica_time_burst_seconds=0.5)
    set_bucket(shop, balance_ms=-300, seconds_ago=100)
    balance, _ = guardrails.time_share_charge(connection=shop, spent_ms=0)
    assert balance == pytest.approx(-200, abs=2)
    set_bucket(shop, balance_ms=0, seconds_ago=3600)
    balance, _ = guardrails.time_share_charge(connection=shop, spent_ms=0)
    assert balance == 500  # an hour's refill, capped at the burst


@pytest.mark.django_db(transaction=True)
def test_charges_from_concurrent_sessions_add_up_exactly(make_connection):
    shop = make_connection(replica_time_share_percent=0.1, replica_time_burst_seconds=3600)  # refills 1 ms/s
    errors = []

    def charge_many():
        try:
            for _ in range(40):
                guardrails.time_share_charge(connection=shop, spent_ms=7.5)
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            pulse_db.close()

    threads = [threading.Thread(target=charge_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    row = QueryAllowance.objects.get(connection=shop)
    assert row.time_hour_ms == pytest.approx(4 * 40 * 7.5)
    assert row.time_balance_ms <= 3_600_000 - 4 * 40 * 7.5 + 50  # nothing refunded, a little refilled


def test_a_batch_reads_the_bucket_once_while_it_has_room(make_connection):
    shop = make_connection(replica_time_burst_seconds=3)
    share = guardrails.TimeShare(connection=shop)
    share.admit()
    for _ in range(100):
        share.spend(1.0)
        share.checkpoint()
    share.settle()
    assert share.round_trips == 2  # admit and settle: 100 ms fit in what the bucket held
    assert QueryAllowance.objects.get(connection=shop).time_hour_ms == pytest.approx(100)


def test_an_expensive_statement_uses_the_share_up_and_what_follows_is_held_back(make_connection):
    shop = make_connection(replica_time_share_percent=0.1, replica_time_burst_seconds=0.1)
    share = guardrails.TimeShare(connection=shop)
    share.admit()
    session = replica.connect(conninfo=shop.conninfo(), statement_timeout_ms=shop.statement_timeout_ms)
    try:
        runner = guardrails.QueryRunner(
            session=session,
            connection=shop,
            allowance=guardrails.Allowance(connection=shop, now=timezone.now()),
            share=share,
        )
        runner.fetchone(sql.SQL("SELECT 1"))  # the session's round-trip floor, as a batch's first statement
        runner.fetchone(sql.SQL("SELECT pg_sleep(0.3)"))
    finally:
        session.close()
    assert share.spent_ms >= 290
    with pytest.raises(guardrails.GuardrailStop) as stop:
        share.checkpoint()  # 200 ms of debt at 1 ms/s: far more than the short wait a batch sleeps
    assert stop.value.reason == "time_share"
    assert "runs again at" in str(stop.value)
    row = QueryAllowance.objects.get(connection=shop)
    assert row.time_balance_ms < -190
    assert stop.value.retry_at == pytest.approx(
        row.time_updated_at + timedelta(seconds=-row.time_balance_ms), abs=timedelta(seconds=1)
    )


def test_a_statement_is_charged_beyond_the_sessions_round_trip_floor(make_connection):
    shop = make_connection()
    share = guardrails.TimeShare(connection=shop)
    session = replica.connect(conninfo=shop.conninfo(), statement_timeout_ms=shop.statement_timeout_ms)
    try:
        runner = guardrails.QueryRunner(
            session=session,
            connection=shop,
            allowance=guardrails.Allowance(connection=shop, now=timezone.now()),
            share=share,
        )
        runner.fetchone(sql.SQL("SELECT 1"))
        assert share.spent_ms == 0  # the quickest statement is the floor: network and protocol
        runner.fetchone(sql.SQL("SELECT pg_sleep(0.1)"))
    finally:
        session.close()
    assert 90 <= share.spent_ms < 5000  # the sleep, less the floor


def test_a_short_refill_is_slept_not_held_back(make_connection):
    shop = make_connection(replica_time_share_percent=100, replica_time_burst_seconds=1)
    set_bucket(shop, balance_ms=-50)  # at 1,000 ms per second: refilled in 50 ms
    share = guardrails.TimeShare(connection=shop)
    share.admit()
    assert share.round_trips == 1


def test_the_share_used_now_and_this_hour(make_connection):
    shop = make_connection(replica_time_share_percent=5, replica_time_burst_seconds=3)
    guardrails.time_share_charge(connection=shop, spent_ms=1200)
    row = QueryAllowance.objects.get(connection=shop)
    use = guardrails.share_use(connection=shop, allowance=row, now=row.time_updated_at)
    assert use.now_percent == pytest.approx(2.0)  # 1.2 s over a minute
    assert use.this_hour_seconds == pytest.approx(1.2)
    assert use.available_seconds == pytest.approx(1.8)
    later = guardrails.share_use(connection=shop, allowance=row, now=row.time_updated_at + timedelta(minutes=3))
    assert later.now_percent < 0.2  # decays once Pulse is quiet
    assert guardrails.share_use(connection=shop, allowance=None, now=timezone.now()).available_seconds == 3


def test_the_held_back_message_names_the_share_and_the_moment(make_connection):
    shop = make_connection(replica_time_share_percent=2, replica_time_burst_seconds=1)
    at = timezone.now()
    stop = held_back(connection=shop, balance_ms=-2000, at=at)  # 20 ms per second: 100 s
    assert stop.retry_at == at + timedelta(seconds=100)
    assert "2% of one backend" in str(stop) and "in 100 s" in str(stop)
