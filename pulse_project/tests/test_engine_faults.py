"""The check engine against faults made real on the test pair, each one a controlled event:
replay paused on the standby (replication lag), a lock replayed from the primary (the lock timeout), a replica
that goes down and comes back (the circuit breaker, with the backoff's end as explicit time), and a password
no configured key can decrypt."""

import logging
import time
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from django.utils import timezone

from conftest import READER, SAMPLE_DB
from connections import replica, state
from connections.models import Connection
from monitors.batch import batch_run
from monitors.claims import tables_claim_due
from monitors.models import CheckResult, MonitoredTable
from monitors.recording import results_ignore
from pulse_project.testing.daemons import TableLock

pytestmark = pytest.mark.django_db


def run_batch(*tables, now=None):
    """Claim the tables (as of `now`) and check them in one batch, as runchecks does; None when not claimable."""
    claim = tables_claim_due(
        now=now or timezone.now(),
        lease=timedelta(minutes=5),
        limit=100,
        force=True,
        table_ids=[t.id for t in tables],
    )
    if not claim.tables:
        return None
    connection = claim.tables[0].connection
    return batch_run(connection=connection, claim=claim, tables=claim.tables, on_recorded=results_ignore)


# --- replication lag: replay paused on the standby -----------------------------------------------------------


@pytest.fixture
def lag_table(replica_pair):
    with replica_pair.primary.connect(SAMPLE_DB) as conn:
        conn.execute("CREATE TABLE lag_events (id serial, at timestamptz NOT NULL)")
        conn.execute(f"GRANT SELECT ON lag_events TO {READER}")
        conn.execute("INSERT INTO lag_events (at) VALUES (now())")
    replica_pair.wait_for_replay()
    yield "lag_events"
    with replica_pair.primary.connect(SAMPLE_DB) as conn:
        conn.execute("DROP TABLE lag_events")
    replica_pair.wait_for_replay()


@pytest.fixture
def replay_paused(replica_pair):
    """Pause WAL replay on the shared standby; resumed (and caught up) whatever the test did."""
    with replica_pair.standby.connect() as conn:
        conn.execute("SELECT pg_wal_replay_pause()")
        while conn.execute("SELECT pg_get_wal_replay_pause_state()").fetchone()[0] != "paused":
            time.sleep(0.02)
    try:
        yield
    finally:
        with replica_pair.standby.connect() as conn:
            conn.execute("SELECT pg_wal_replay_resume()")
        replica_pair.wait_for_replay(timeout=60)


def test_paused_replay_is_reported_as_lag_and_freshness_is_judged_at_the_replay_position(
    make_connection, replica_pair, lag_table, replay_paused
):
    shop = make_connection(replication_lag_threshold_seconds=2)
    table = MonitoredTable.objects.create(connection=shop, table_name=lag_table, timestamp_column="at")
    with replica_pair.standby.connect() as conn:
        replayed_at = conn.execute("SELECT pg_last_xact_replay_timestamp()").fetchone()[0]
    # The primary moves on; the standby receives the WAL but does not replay it.
    with replica_pair.primary.connect(SAMPLE_DB) as conn:
        conn.execute("INSERT INTO lag_events (at) VALUES (now())")
        target = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]
    with replica_pair.standby.connect() as conn:
        while not conn.execute("SELECT pg_last_wal_receive_lsn() >= %s::pg_lsn", (target,)).fetchone()[0]:
            time.sleep(0.02)
    # The lag only grows while replay is paused: waiting past the threshold is not a race.
    while (timezone.now() - replayed_at).total_seconds() <= 3:
        time.sleep(0.1)

    results = {r.kind: r for r in run_batch(table)}
    lag, freshness = results["replication_lag"], results["freshness"]
    assert lag.status == "fail" and lag.observed_value > 3 and lag.expected_upper == 2
    assert lag.details["caught_up"] is False and lag.details["lag_bytes"] > 0
    assert "behind (limit 2 s)" in lag.message
    # Freshness is measured at the replay position, not at the wall clock: the lag is not counted as staleness.
    assert freshness.details["data_as_of"] == replayed_at.isoformat()
    with replica_pair.standby.connect(SAMPLE_DB) as conn:
        newest_replayed = conn.execute("SELECT max(at) FROM lag_events").fetchone()[0]
    assert freshness.details["latest"] == newest_replayed.isoformat()
    assert freshness.observed_value == round((replayed_at - newest_replayed).total_seconds(), 3)
    assert freshness.observed_value < lag.observed_value - 3
    assert freshness.status == "pass"


# --- the lock-timeout path ------------------------------------------------------------------------------------


def test_a_read_blocked_by_a_replayed_lock_gives_up_at_the_lock_timeout(make_connection, replica_pair):
    shop = make_connection(statement_timeout_ms=1000)  # lock_timeout 500 ms, before the statement timeout
    orders = MonitoredTable.objects.create(connection=shop, table_name="orders", timestamp_column="created_at")
    customers = MonitoredTable.objects.create(connection=shop, table_name="customers")
    lock = TableLock(replica_pair, SAMPLE_DB, "orders")
    try:
        results = run_batch(orders, customers)
    finally:
        lock.release()
    by_table = {(r.table_id, r.kind): r for r in results if r.table_id}
    blocked = [r for (table_id, kind), r in by_table.items() if table_id == orders.id and kind != "schema_change"]
    assert blocked and all(
        r.status == "error" and r.message == "timed out after 500 ms waiting for a lock" for r in blocked
    ), [(r.kind, r.message) for r in blocked]
    # The session survives a lock timeout: the next table of the batch is checked normally.
    assert {r.status for (table_id, _), r in by_table.items() if table_id == customers.id} == {"pass"}
    shop.refresh_from_db()
    assert shop.status == "ok"


# --- the circuit breaker, end to end ---------------------------------------------------------------------------


def test_the_breaker_opens_after_failed_contacts_and_closes_once_its_backoff_ends(make_connection, own_pair):
    shop = make_connection(port=own_pair.standby.port)
    table = MonitoredTable.objects.create(connection=shop, table_name="orders")
    own_pair.standby.stop()
    for failures in range(1, state.BREAKER_THRESHOLD + 1):
        results = run_batch(table)
        assert results and all(r.status == "error" and "connection refused" in r.message for r in results)
        shop.refresh_from_db()
        assert shop.consecutive_failures == failures
    assert shop.status == "error" and shop.backoff_until is not None
    opened_until = shop.backoff_until

    own_pair.standby.start()
    # While the breaker is open nothing is claimed: the replica is not contacted, even though it is back.
    assert run_batch(table, now=opened_until - timedelta(seconds=1)) is None
    assert CheckResult.objects.filter(table=table).exclude(status="error").count() == 0
    # The backoff ends (explicit time: the claim as of its end); the next batch closes the breaker.
    results = run_batch(table, now=opened_until)
    assert results and {r.status for r in results} == {"pass"}
    shop.refresh_from_db()
    assert (shop.status, shop.consecutive_failures, shop.backoff_until, shop.last_error) == (
        Connection.Status.OK,
        0,
        None,
        "",
    )


# --- a password no configured key can decrypt -------------------------------------------------------------------


def test_an_undecryptable_password_errors_the_batch_clearly_without_leaking_it(
    settings, make_connection, caplog, replica_settings
):
    settings.PULSE_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    shop = make_connection()
    token = Connection.objects.get(pk=shop.pk).password_encrypted
    table = MonitoredTable.objects.create(connection=shop, table_name="orders")
    settings.PULSE_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]  # the key was replaced, not rotated
    with caplog.at_level(logging.DEBUG):
        results = run_batch(table)
    assert results and all(
        r.status == "error" and "cannot be decrypted with the configured PULSE_ENCRYPTION_KEY" in r.message
        for r in results
    ), [r.message for r in results]
    shop.refresh_from_db()
    assert shop.status == "error" and "cannot be decrypted" in shop.last_error
    for text in [caplog.text, shop.last_error, *(r.message for r in results)]:
        assert replica_settings["password"] not in text and token not in text
    with pytest.raises(ValueError, match="cannot be decrypted"), replica.session_for(shop):
        pass


# --- a replica session lost mid-batch ----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_session_terminated_mid_batch_records_every_planned_check_and_loses_none(
    make_connection, replica_pair, monkeypatch
):
    """The batch is held on `orders` by a replayed lock (a controlled event), then its replica session is
    terminated on the standby: what ran before is kept, everything after is recorded as an error. Each table
    reads its own (as when the batch's combined statements failed; their own loss is in monitors' tests)."""
    import threading

    from monitors import batch as batch_module
    from pulse_project.testing.daemons import pulse_sessions_waiting_on_a_lock, wait_for

    monkeypatch.setattr(batch_module, "_read_together", lambda contexts: None)

    shop = make_connection(statement_timeout_ms=60_000)  # lock_timeout 30 s: the lock holds the batch
    before = MonitoredTable.objects.create(connection=shop, table_name="customers")
    held = MonitoredTable.objects.create(connection=shop, table_name="orders")
    after = MonitoredTable.objects.create(connection=shop, table_name="stale_events")
    lock = TableLock(replica_pair, SAMPLE_DB, "orders")
    outcome = {}

    def batch():
        from django.db import connection as pulse_db

        try:
            outcome["results"] = run_batch(before, held, after)
        finally:
            pulse_db.close()

    worker = threading.Thread(target=batch)
    worker.start()
    try:
        assert wait_for(lambda: pulse_sessions_waiting_on_a_lock(replica_pair.standby) == 1, timeout=30)
        with replica_pair.standby.connect() as admin:
            terminated = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = 'pulse' AND wait_event_type = 'Lock'"
            ).fetchone()[0]
        assert terminated == 1
        worker.join(60)
    finally:
        lock.release()
    assert not worker.is_alive()
    stored = {(r.table_id, r.kind): r for r in CheckResult.objects.filter(connection=shop, table__isnull=False)}
    assert {r.status for (table_id, _), r in stored.items() if table_id == before.id} == {"pass"}
    lost = [r for (table_id, _), r in stored.items() if table_id in (held.id, after.id)]
    assert {kind for (table_id, kind) in stored if table_id == after.id} == {"schema_change", "volume"}
    assert lost and all(r.status == "error" and "connection lost" in r.message for r in lost), [
        (r.table_id, r.kind, r.message) for r in lost
    ]
    assert len(outcome["results"]) == CheckResult.objects.filter(connection=shop).count()  # recorded, none lost
    shop.refresh_from_db()
    assert shop.status == "error" and "connection lost" in shop.last_error
    for table in (before, held, after):
        table.refresh_from_db()
        assert table.lease_token is None  # every table given back
