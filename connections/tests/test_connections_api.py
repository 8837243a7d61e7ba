import pytest
from django.db import connection as pulse_db

from connections import guardrails
from connections.models import Connection

pytestmark = pytest.mark.django_db


def payload(replica_settings, **overrides):
    return {"name": "shop-replica", **replica_settings, **overrides}


def test_it_creates_a_connection_to_a_replica_with_the_team_inferred(owner_client, replica_settings, teams):
    response = owner_client.post("/api/connections", payload(replica_settings), format="json")
    assert response.status_code == 201, response.data
    body = response.json()
    assert body["team"] == teams[0].id
    assert body["has_password"] is True
    assert "password" not in body and "password_encrypted" not in body
    assert body["status"] == "ok"
    stored = Connection.objects.get(pk=body["id"])
    assert stored.get_password() == replica_settings["password"]


def test_it_encrypts_the_password_at_rest(owner_client, replica_settings):
    response = owner_client.post("/api/connections/", payload(replica_settings), format="json")
    assert response.status_code == 201
    with pulse_db.cursor() as cursor:
        cursor.execute("SELECT row_to_json(c)::text FROM connections_connection c WHERE id = %s", [response.data["id"]])
        raw_row = cursor.fetchone()[0]
    assert replica_settings["password"] not in raw_row
    assert "gAAAAA" in raw_row  # a Fernet token


def test_it_never_returns_the_password(owner_client, make_connection, replica_settings):
    connection = make_connection()
    for response in (
        owner_client.get("/api/connections"),
        owner_client.get(f"/api/connections/{connection.id}"),
        owner_client.patch(f"/api/connections/{connection.id}", {"name": "renamed"}, format="json"),
    ):
        assert response.status_code == 200
        assert replica_settings["password"] not in response.content.decode()
        assert connection.password_encrypted not in response.content.decode()
    connection.refresh_from_db()
    assert connection.name == "renamed" and connection.get_password() == replica_settings["password"]


def test_it_refuses_the_primary(owner_client, primary_settings):
    response = owner_client.post("/api/connections", payload(primary_settings), format="json")
    assert response.status_code == 400
    assert "not a read replica" in str(response.data)
    assert not Connection.objects.exists()


def test_it_accepts_a_primary_only_when_a_superuser_turns_require_replica_off(
    superuser_client, primary_settings, teams
):
    body = payload(primary_settings, require_replica=False, team=teams[0].id)
    response = superuser_client.post("/api/connections", body, format="json")
    assert response.status_code == 201, response.data
    assert Connection.objects.get(pk=response.data["id"]).require_replica is False


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"password": "wrong"}, "password authentication failed"),
        ({"database": "nosuchdb"}, 'database "nosuchdb" does not exist'),
        ({"port": 1}, "cannot connect"),
        ({"username": "nobody"}, "authentication failed"),
        ({"sslmode": "require"}, "TLS required"),
    ],
)
def test_it_names_the_cause_when_the_replica_cannot_be_reached(owner_client, replica_settings, override, expected):
    response = owner_client.post("/api/connections", payload(replica_settings, **override), format="json")
    assert response.status_code == 400
    assert expected in str(response.data)
    assert not Connection.objects.exists()


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"port": "abc"}, "port"),
        ({"port": 70000}, "port"),
        ({"statement_timeout_ms": 50}, "statement_timeout_ms"),
        ({"statement_timeout_ms": 60001}, "statement_timeout_ms"),
        ({"sslmode": "sometimes"}, "sslmode"),
        ({"name": "x" * 101}, "name"),
        ({"host": "h" * 256}, "host"),
        ({"max_concurrent_queries": 0}, "max_concurrent_queries"),
        ({"require_replica": "maybe"}, "require_replica"),
        ({"team": 999999}, "team"),
        ({"status": "ok"}, "status"),
        ({"colour": "blue"}, "colour"),
        ({"name": "nul\x00byte"}, "name"),
    ],
)
def test_it_rejects_bad_input_naming_the_field(owner_client, replica_settings, override, field):
    response = owner_client.post("/api/connections", payload(replica_settings, **override), format="json")
    assert response.status_code == 400
    assert field in response.data
    assert not Connection.objects.exists()


def test_it_rejects_a_foreign_team(owner_client, replica_settings, teams):
    response = owner_client.post("/api/connections", payload(replica_settings, team=teams[1].id), format="json")
    assert response.status_code == 400
    assert "team" in response.data
    assert not Connection.objects.exists()


def test_it_requires_a_team_when_the_user_has_several(owner_client, owner, replica_settings, teams):
    owner.groups.add(teams[1])
    response = owner_client.post("/api/connections", payload(replica_settings), format="json")
    assert response.status_code == 400
    assert "team" in response.data
    assert not Connection.objects.exists()


def test_it_rejects_a_duplicate_name_in_the_team(owner_client, make_connection, replica_settings):
    make_connection(name="shop-replica")
    response = owner_client.post("/api/connections", payload(replica_settings), format="json")
    assert response.status_code == 400
    assert Connection.objects.count() == 1


@pytest.mark.parametrize("body", ["not json", "[1, 2]", "null", '{"port": {"$gt": 1}}'])
def test_it_answers_malformed_bodies_with_400(owner_client, body):
    response = owner_client.post("/api/connections", body, content_type="application/json")
    assert response.status_code == 400
    assert not Connection.objects.exists()


def test_it_updates_and_reprobes_when_credentials_change(owner_client, make_connection, replica_settings):
    connection = make_connection()
    bad = owner_client.patch(f"/api/connections/{connection.id}", {"password": "wrong"}, format="json")
    assert bad.status_code == 400
    connection.refresh_from_db()
    assert connection.get_password() == replica_settings["password"]
    good = owner_client.patch(
        f"/api/connections/{connection.id}/", {"statement_timeout_ms": 2000, "name": "renamed"}, format="json"
    )
    assert good.status_code == 200
    connection.refresh_from_db()
    assert (connection.statement_timeout_ms, connection.name) == (2000, "renamed")


def test_it_keeps_the_password_when_patching_other_fields(owner_client, make_connection, replica_settings):
    connection = make_connection()
    response = owner_client.patch(f"/api/connections/{connection.id}", {"port": connection.port}, format="json")
    assert response.status_code == 200
    connection.refresh_from_db()
    assert connection.get_password() == replica_settings["password"]


def test_it_deletes(owner_client, make_connection):
    connection = make_connection()
    assert owner_client.delete(f"/api/connections/{connection.id}").status_code == 204
    assert not Connection.objects.exists()


def test_it_tests_a_stored_connection(owner_client, make_connection):
    connection = make_connection(status=Connection.Status.UNKNOWN)
    response = owner_client.post(f"/api/connections/{connection.id}/test")
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True and body["in_recovery"] is True and body["error"] is None
    assert body["server_version"].startswith("15")
    connection.refresh_from_db()
    assert connection.status == "ok"


def test_it_reports_a_failing_stored_connection(owner_client, make_connection, primary_settings):
    connection = make_connection(port=primary_settings["port"])
    response = owner_client.post(f"/api/connections/{connection.id}/test/")
    assert response.status_code == 200
    assert response.json()["ok"] is False
    assert response.json()["in_recovery"] is False
    connection.refresh_from_db()
    assert connection.status == "not_replica"


def test_deactivating_pauses_a_connection(owner_client, make_connection):
    connection = make_connection(status=Connection.Status.OK)
    body = owner_client.patch(f"/api/connections/{connection.id}", {"is_active": False}, format="json").json()
    assert body["status"] == "paused"
    body = owner_client.patch(f"/api/connections/{connection.id}", {"is_active": True}, format="json").json()
    assert body["status"] == "unknown"


def test_it_exposes_guardrail_settings_with_validation(owner_client, make_connection):
    connection = make_connection()
    url = f"/api/connections/{connection.id}"
    ok = owner_client.patch(
        url,
        {
            "max_queries_per_second": 5,
            "max_query_cost": 1e6,
            "replication_lag_threshold_seconds": 60,
            "connection_error_threshold": 5,
        },
        format="json",
    )
    assert ok.status_code == 200 and ok.json()["connection_error_threshold"] == 5
    fields = ("max_queries_per_second", "max_query_cost", "connection_error_threshold", "backoff_until")
    saved = Connection.objects.values(*fields).get(pk=connection.pk)
    assert saved["connection_error_threshold"] == 5 and saved["backoff_until"] is None
    for bad in (
        {"max_queries_per_second": 0},
        {"max_query_cost": -1},
        {"connection_error_threshold": 0},
        {"backoff_until": "2030-01-01T00:00:00Z"},
    ):
        response = owner_client.patch(url, bad, format="json")
        assert response.status_code == 400 and set(bad) <= set(response.data)
        assert Connection.objects.values(*fields).get(pk=connection.pk) == saved  # nothing saved


def test_the_detail_shows_the_replica_time_share_used_now_and_this_hour(owner_client, make_connection):
    connection = make_connection(replica_time_share_percent=4, replica_time_burst_seconds=2)
    fresh = owner_client.get(f"/api/connections/{connection.id}").json()["replica_time"]
    assert fresh == {
        "limit_percent": 4.0,
        "burst_seconds": 2.0,
        "now_percent": 0.0,
        "this_hour_seconds": 0.0,
        "this_hour_percent": 0.0,
        "available_seconds": 2.0,
        "queries_this_hour": 0,
    }
    guardrails.time_share_charge(connection=connection, spent_ms=1500)
    used = owner_client.get(f"/api/connections/{connection.id}").json()["replica_time"]
    assert used["this_hour_seconds"] == 1.5
    assert 2.0 < used["now_percent"] <= 2.5  # 1.5 s over the last minute, decaying
    assert 0.5 <= used["available_seconds"] < 0.6


def test_the_replica_time_share_is_validated(owner_client, make_connection):
    connection = make_connection()
    url = f"/api/connections/{connection.id}"
    for change in (
        {"replica_time_share_percent": 0},
        {"replica_time_share_percent": 101},
        {"replica_time_burst_seconds": -1},
    ):
        response = owner_client.patch(url, change, format="json")
        assert response.status_code == 400 and next(iter(change)) in response.json()
    assert owner_client.patch(url, {"replica_time": {"now_percent": 0}}, format="json").status_code == 400
    connection.refresh_from_db()
    assert connection.replica_time_share_percent == 5.0


def test_the_holiday_calendar_is_saved_in_order_once_and_bad_dates_are_refused(owner_client, make_connection):
    connection = make_connection()
    url = f"/api/connections/{connection.id}"
    ok = owner_client.patch(url, {"holidays": ["2026-12-25", "2026-12-24", "2026-12-25"]}, format="json")
    assert ok.status_code == 200 and ok.json()["holidays"] == ["2026-12-24", "2026-12-25"]
    connection.refresh_from_db()
    assert [d.isoformat() for d in connection.holidays] == ["2026-12-24", "2026-12-25"]
    for bad in (
        {"holidays": ["2026-13-01"]},
        {"holidays": ["Christmas"]},
        {"holidays": "2026-12-25"},
        {"holidays": [None]},
        {"holidays": None},
        {"holidays": [["2026-12-25"]]},
        {"holidays": [{"date": "2026-12-25"}]},
        {"holidays": ["2026-01-01"] * 1001},
    ):
        response = owner_client.patch(url, bad, format="json")
        assert response.status_code == 400 and "holidays" in response.data
        connection.refresh_from_db()
        assert [d.isoformat() for d in connection.holidays] == ["2026-12-24", "2026-12-25"]  # nothing saved


def test_another_teams_holiday_calendar_cannot_be_changed(outsider_client, make_connection):
    connection = make_connection()
    response = outsider_client.patch(f"/api/connections/{connection.id}", {"holidays": ["2026-12-25"]}, format="json")
    assert response.status_code == 404
    connection.refresh_from_db()
    assert connection.holidays == []
