"""Connection state changes: pause/resume (one rule for the API and the admin), breaker, error streak, lag claim."""

import threading
import time
from datetime import timedelta

import psycopg
import pytest
from django.db import connection as pulse_db
from django.db import transaction
from django.utils import timezone

from connections import state
from connections.models import Connection

pytestmark = pytest.mark.django_db

BREAKER_OPEN_UNTIL = timezone.now() + timedelta(days=1)
STORED_STATE = ("is_active", "status", "last_error", "consecutive_failures", "backoff_until", "team_id")


def failing_connection(make_connection, name):
    """A connection whose breaker is open after failed contacts."""
    return make_connection(
        name=name,
        status=Connection.Status.ERROR,
        last_error="cannot connect: connection refused",
        consecutive_failures=5,
        backoff_until=BREAKER_OPEN_UNTIL,
    )


def stored(connection):
    connection.refresh_from_db()
    return tuple(getattr(connection, field) for field in STORED_STATE)


def admin_save(client, admin_form, connection, **changes):
    response = client.post(f"/admin/connections/connection/{connection.id}/change/", admin_form(connection, **changes))
    assert response.status_code == 302, response.content.decode()[:2000]


def api_save(client, connection, body):
    response = client.patch(f"/api/connections/{connection.id}", body, format="json")
    assert response.status_code == 200, response.data


# --- pause and resume ---------------------------------------------------------------------------------------


def test_pausing_and_resuming_store_the_same_state_through_the_api_and_the_admin(
    client, staff, owner_client, make_connection, admin_form
):
    through_api = failing_connection(make_connection, "via-api")
    through_admin = failing_connection(make_connection, "via-admin")
    client.force_login(staff)

    api_save(owner_client, through_api, {"is_active": False})
    admin_save(client, admin_form, through_admin, is_active=None)  # an unticked checkbox is not posted
    paused = stored(through_api)
    assert paused == stored(through_admin)
    assert paused[:2] == (False, Connection.Status.PAUSED)
    assert paused[2:5] == ("cannot connect: connection refused", 5, BREAKER_OPEN_UNTIL)

    api_save(owner_client, through_api, {"is_active": True})
    admin_save(client, admin_form, through_admin)
    resumed = stored(through_api)
    assert resumed == stored(through_admin)
    assert resumed[:5] == (True, Connection.Status.UNKNOWN, "", 0, None)


def test_an_edit_of_an_active_connection_leaves_its_status_alone_through_the_api_and_the_admin(
    client, staff, owner_client, make_connection, admin_form
):
    through_api = failing_connection(make_connection, "via-api")
    through_admin = failing_connection(make_connection, "via-admin")
    client.force_login(staff)
    before = stored(through_admin)

    api_save(owner_client, through_api, {"max_query_cost": 5000})
    admin_save(client, admin_form, through_admin, max_query_cost=5000)
    assert stored(through_api) == stored(through_admin) == before
    assert through_admin.max_query_cost == 5000


def test_a_probed_connection_starts_afresh_and_an_inactive_one_is_paused(make_connection):
    connection = failing_connection(make_connection, "probed")
    state.connection_activation_apply(connection=connection, probed=True)
    assert (connection.status, connection.last_error, connection.consecutive_failures, connection.backoff_until) == (
        Connection.Status.OK,
        "",
        0,
        None,
    )
    connection.is_active = False
    state.connection_activation_apply(connection=connection, probed=True)
    assert connection.status == Connection.Status.PAUSED
    assert Connection.objects.get(pk=connection.pk).status == Connection.Status.ERROR  # the caller saves


def test_neither_the_api_nor_the_admin_moves_a_connection_to_another_team(
    client, staff, owner_client, make_connection, teams, admin_form
):
    staff.groups.add(teams[1])
    connection = make_connection()
    before = stored(connection)

    response = owner_client.patch(f"/api/connections/{connection.id}", {"team": teams[1].id}, format="json")
    assert response.status_code == 400
    assert response.data["team"] == [state.TEAM_MOVE_REFUSED]
    assert stored(connection) == before

    client.force_login(staff)
    url = f"/admin/connections/connection/{connection.id}/change/"
    response = client.post(url, admin_form(connection, team=teams[1].id, name="moved"))
    assert response.status_code == 200
    assert state.TEAM_MOVE_REFUSED in response.content.decode()
    assert stored(connection) == before
    assert connection.name == "shop-replica"


def test_a_new_connection_may_go_to_any_of_the_users_teams_in_the_admin(
    client, staff, make_connection, teams, admin_form
):
    staff.groups.add(teams[1])
    template = make_connection()
    client.force_login(staff)
    form = admin_form(template, name="second-team", team=teams[1].id, password="reader-s3cret-pw")
    response = client.post("/admin/connections/connection/add/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Connection.objects.get(name="second-team").team_id == teams[1].id


# --- circuit breaker ----------------------------------------------------------------------------------------


def test_the_breaker_opens_after_repeated_failures_and_backs_off_exponentially(make_connection):
    shop = make_connection()
    now = timezone.now()
    for _ in range(state.BREAKER_THRESHOLD - 1):
        state.contact_failed(connection=shop, status="error", error="cannot connect", now=now)
    shop.refresh_from_db()
    assert shop.backoff_until is None and shop.status == "error"
    backoffs = []
    for _ in range(10):
        state.contact_failed(connection=shop, status="error", error="cannot connect", now=now)
        shop.refresh_from_db()
        backoffs.append(shop.backoff_until - now)
    assert backoffs[0] == timedelta(seconds=30)
    assert backoffs[1] == timedelta(seconds=60)
    assert backoffs[-1] == state.BREAKER_MAX_BACKOFF
    state.contact_succeeded(connection=shop, now=now)
    shop.refresh_from_db()
    assert (shop.consecutive_failures, shop.backoff_until, shop.status) == (0, None, Connection.Status.OK)


def test_the_backoff_doubles_from_the_threshold_up_to_the_maximum():
    assert [state.backoff_for(n) for n in range(state.BREAKER_THRESHOLD)] == [None] * state.BREAKER_THRESHOLD
    assert state.backoff_for(state.BREAKER_THRESHOLD) == state.BREAKER_BASE_BACKOFF
    assert state.backoff_for(state.BREAKER_THRESHOLD + 2) == 4 * state.BREAKER_BASE_BACKOFF
    assert state.backoff_for(100) == state.BREAKER_MAX_BACKOFF


def test_the_breaker_stays_at_its_maximum_through_a_long_outage(make_connection):
    """Days of failed contacts (one every 30 minutes) never overflow the backoff."""
    shop = make_connection(consecutive_failures=500)
    now = timezone.now()
    state.contact_failed(connection=shop, status="error", error="cannot connect", now=now)
    shop.refresh_from_db()
    assert (shop.consecutive_failures, shop.backoff_until) == (501, now + state.BREAKER_MAX_BACKOFF)


def test_a_healthy_connection_is_written_at_most_every_refresh_interval(make_connection):
    now = timezone.now()
    shop = make_connection(status=Connection.Status.OK, last_checked_at=now)
    state.contact_succeeded(connection=shop, now=now + state.CONTACT_REFRESH / 2)
    assert Connection.objects.get(pk=shop.pk).last_checked_at == now
    later = now + state.CONTACT_REFRESH
    state.contact_succeeded(connection=shop, now=later)
    assert Connection.objects.get(pk=shop.pk).last_checked_at == later


@pytest.mark.django_db(transaction=True)
def test_a_contact_another_batch_already_recorded_neither_writes_nor_locks_the_row(make_connection):
    """A batch whose connection object was read before another batch refreshed the row leaves the row alone: it
    is not locked for the rest of the batch's transaction, so other batches need not wait for it."""
    now = timezone.now()
    shop = make_connection(status=Connection.Status.OK, last_checked_at=now - 2 * state.CONTACT_REFRESH)
    Connection.objects.filter(pk=shop.pk).update(last_checked_at=now)  # the other batch's refresh, committed
    params = pulse_db.get_connection_params()
    with transaction.atomic():
        state.contact_succeeded(connection=shop, now=now + timedelta(seconds=1))
        with psycopg.connect(**params, autocommit=True) as other:
            other.execute("SET lock_timeout = '1s'")
            other.execute("UPDATE connections_connection SET last_error = '' WHERE id = %s", [shop.pk])
    assert Connection.objects.get(pk=shop.pk).last_checked_at == now

    # A row that does need the write (the connection had failed) is written and locked as before.
    Connection.objects.filter(pk=shop.pk).update(status=Connection.Status.ERROR)
    shop.refresh_from_db()
    with transaction.atomic():
        state.contact_succeeded(connection=shop, now=now + timedelta(seconds=2))
        with psycopg.connect(**params, autocommit=True) as other, pytest.raises(psycopg.errors.LockNotAvailable):
            other.execute("SET lock_timeout = '100ms'")
            other.execute("UPDATE connections_connection SET last_error = '' WHERE id = %s", [shop.pk])
    stored = Connection.objects.get(pk=shop.pk)
    assert (stored.status, stored.last_checked_at) == (Connection.Status.OK, now + timedelta(seconds=2))


# --- error streak -------------------------------------------------------------------------------------------


def test_the_error_streak_counts_batches_in_a_row_and_resets(make_connection):
    shop = make_connection()
    other = make_connection(name="other")
    assert state.connection_error_streak_bump(connection=shop) == 1
    assert state.connection_error_streak_bump(connection=Connection.objects.get(pk=shop.pk)) == 2
    assert state.connection_error_streak_bump(connection=other) == 1
    assert Connection.objects.get(pk=shop.pk).error_streak == 2

    state.connection_error_streak_reset(connection=shop)
    assert shop.error_streak == 0
    assert Connection.objects.get(pk=shop.pk).error_streak == 0
    assert Connection.objects.get(pk=other.pk).error_streak == 1
    assert state.connection_error_streak_bump(connection=shop) == 1


# --- replication-lag claim ----------------------------------------------------------------------------------


def test_the_lag_check_is_claimed_once_per_interval(make_connection):
    shop = make_connection()
    now = timezone.now()
    interval = timedelta(seconds=30)
    first, second = Connection.objects.get(pk=shop.pk), Connection.objects.get(pk=shop.pk)
    assert state.connection_lag_check_claim(connection=first, now=now, interval=interval) is True
    assert state.connection_lag_check_claim(connection=second, now=now, interval=interval) is False
    assert Connection.objects.get(pk=shop.pk).lag_checked_at == now
    later = now + interval
    assert state.connection_lag_check_claim(connection=second, now=later, interval=interval) is True
    assert Connection.objects.get(pk=shop.pk).lag_checked_at == later


def test_a_connection_known_to_be_claimed_is_refused_without_asking_the_database(make_connection):
    now = timezone.now()
    shop = make_connection()
    stale = Connection.objects.get(pk=shop.pk)
    stale.lag_checked_at = now  # this process saw a recent claim; the database has none
    assert state.connection_lag_check_claim(connection=stale, now=now, interval=timedelta(seconds=30)) is False
    assert Connection.objects.get(pk=shop.pk).lag_checked_at is None


def _waiting_on_a_lock() -> int:
    with pulse_db.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_two_processes_racing_for_the_lag_check_one_wins(make_connection):
    """Both see the check as due; the second UPDATE waits for the first's row lock, then finds it claimed."""
    shop = make_connection()
    now = timezone.now()
    interval = timedelta(seconds=30)
    outcomes: dict[str, bool] = {}
    first_claimed, commit_first = threading.Event(), threading.Event()

    def claim(name, *, hold):
        try:
            with transaction.atomic():
                outcomes[name] = state.connection_lag_check_claim(
                    connection=Connection.objects.get(pk=shop.pk), now=now, interval=interval
                )
                if hold:
                    first_claimed.set()
                    commit_first.wait(30)
        finally:
            pulse_db.close()

    first = threading.Thread(target=claim, args=("first",), kwargs={"hold": True})
    second = threading.Thread(target=claim, args=("second",), kwargs={"hold": False})
    first.start()
    try:
        assert first_claimed.wait(30)
        second.start()
        deadline = time.monotonic() + 30
        while not _waiting_on_a_lock() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _waiting_on_a_lock() == 1  # the second claim is blocked on the first's uncommitted claim
    finally:
        commit_first.set()
        first.join()
        if second.is_alive() or second.ident:
            second.join()
    assert outcomes == {"first": True, "second": False}
    assert Connection.objects.get(pk=shop.pk).lag_checked_at == now
