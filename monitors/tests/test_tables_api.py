from datetime import timedelta

import pytest
from django.utils import timezone

from connections.models import QueryAllowance
from monitors.models import CheckResult, MonitoredTable

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop(make_connection):
    return make_connection()


def create(client, connection, **fields):
    body = {"connection": connection.id, "table_name": "orders", **fields}
    return client.post("/api/tables", body, format="json")


def test_it_creates_a_table_after_looking_it_up_on_the_replica(owner_client, shop):
    response = create(owner_client, shop, timestamp_column="created_at")
    assert response.status_code == 201, response.data
    body = response.json()
    assert body["schema_name"] == "public"
    assert body["freshness_threshold_minutes"] == 60
    assert body["check_interval_seconds"] == 300
    assert body["failure_threshold"] == 2
    assert body["status"] == "unknown"
    assert MonitoredTable.objects.get().timestamp_column == "created_at"


def test_the_save_time_lookup_is_taken_from_the_connections_budget(owner_client, shop):
    assert create(owner_client, shop, timestamp_column="created_at").status_code == 201
    # the recovery check, the table lookup and its columns
    assert QueryAllowance.objects.get(connection=shop).queries_used == 3


def test_it_saves_nothing_when_the_connections_budget_is_spent(owner_client, make_connection):
    shop = make_connection(max_queries_per_hour=2)
    response = create(owner_client, shop, timestamp_column="created_at")
    assert response.status_code == 400
    assert "query budget of 2/h for this connection is spent" in str(response.data["connection"])
    assert not MonitoredTable.objects.exists()
    assert QueryAllowance.objects.get(connection=shop).queries_used == 0  # the reservation was given back


def test_it_accepts_a_date_column(owner_client, shop):
    assert create(owner_client, shop, table_name="customers", timestamp_column="signup_date").status_code == 201


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"table_name": "ordres"}, "table_name", 'table "public.ordres" not found on connection "shop-replica"'),
        ({"schema_name": "nope"}, "table_name", 'table "nope.orders" not found'),
        ({"schema_name": "private", "table_name": "salaries"}, "table_name", "is not readable by user"),
        ({"timestamp_column": "created"}, "timestamp_column", 'column "created" not found'),
        ({"timestamp_column": "amount"}, "timestamp_column", "not a date or timestamp type"),
        ({"table_name": ""}, "table_name", ""),
        ({"table_name": "x" * 64}, "table_name", ""),
        ({"table_name": "bad\x01name"}, "table_name", "control characters"),
        ({"check_interval_seconds": 9}, "check_interval_seconds", ""),
        ({"failure_threshold": 11}, "failure_threshold", ""),
        ({"failure_threshold": 0}, "failure_threshold", ""),
        ({"freshness_threshold_minutes": 0}, "freshness_threshold_minutes", ""),
        ({"freshness_threshold_minutes": None}, "freshness_threshold_minutes", ""),
        ({"check_interval_seconds": "often"}, "check_interval_seconds", ""),
        ({"status": "healthy"}, "status", "read-only"),
        ({"connection_id": 1}, "connection_id", "Unknown field"),
    ],
)
def test_it_rejects_bad_tables_naming_the_problem(owner_client, shop, fields, field, message):
    response = create(owner_client, shop, **fields)
    assert response.status_code == 400
    assert field in response.data, response.data
    assert message in str(response.data[field])
    assert not MonitoredTable.objects.exists()


def test_it_refuses_an_unknown_connection(owner_client, shop):
    response = owner_client.post("/api/tables", {"connection": 999999, "table_name": "orders"}, format="json")
    assert response.status_code == 400
    assert "connection" in response.data
    assert not MonitoredTable.objects.exists()


def test_it_treats_injection_attempts_as_names_not_sql(owner_client, shop):
    response = create(owner_client, shop, table_name='orders"; DROP TABLE orders; --')
    assert response.status_code == 400
    assert "not found" in str(response.data["table_name"])
    assert not MonitoredTable.objects.exists()


def test_it_reports_an_unreachable_replica_as_400(owner_client, make_connection):
    connection = make_connection(port=1)
    response = create(owner_client, connection)
    assert response.status_code == 400
    assert "cannot connect" in str(response.data["connection"])
    assert not MonitoredTable.objects.exists()


def test_it_refuses_a_duplicate_table(owner_client, shop):
    assert create(owner_client, shop).status_code == 201
    assert create(owner_client, shop).status_code == 400
    assert MonitoredTable.objects.count() == 1


def test_it_updates_and_revalidates_columns(owner_client, shop):
    table_id = create(owner_client, shop).json()["id"]
    bad = owner_client.patch(f"/api/tables/{table_id}", {"timestamp_column": "note"}, format="json")
    assert bad.status_code == 400
    ok = owner_client.patch(
        f"/api/tables/{table_id}/", {"timestamp_column": "created_at", "check_interval_seconds": 60}, format="json"
    )
    assert ok.status_code == 200
    table = MonitoredTable.objects.get()
    assert (table.timestamp_column, table.check_interval_seconds) == ("created_at", 60)


def test_it_deletes(owner_client, shop):
    table_id = create(owner_client, shop).json()["id"]
    assert owner_client.delete(f"/api/tables/{table_id}").status_code == 204
    assert not MonitoredTable.objects.exists()


def test_it_filters_by_connection(owner_client, shop, make_connection):
    other = make_connection(name="other")
    MonitoredTable.objects.create(connection=shop, table_name="orders")
    MonitoredTable.objects.create(connection=other, table_name="orders")
    assert owner_client.get(f"/api/tables?connection={shop.id}").json()["count"] == 1
    assert owner_client.get("/api/tables").json()["count"] == 2
    assert owner_client.get("/api/tables?connection=abc").status_code == 400


def test_it_lists_results_newest_first_filtered_by_kind(owner_client, shop):
    table = MonitoredTable.objects.create(connection=shop, table_name="orders")
    now = timezone.now()
    for minutes, kind in [(3, "volume"), (2, "freshness"), (1, "volume")]:
        CheckResult.objects.create(
            connection=shop,
            table=table,
            kind=kind,
            status="pass",
            observed_value=minutes,
            started_at=now - timedelta(minutes=minutes),
        )
    body = owner_client.get(f"/api/tables/{table.id}/results").json()
    assert (set(body), body["next"], body["previous"]) == ({"next", "previous", "results"}, None, None)  # no count
    assert [r["observed_value"] for r in body["results"]] == [1, 2, 3]
    volume = owner_client.get(f"/api/tables/{table.id}/results/?kind=volume").json()
    assert [r["observed_value"] for r in volume["results"]] == [1, 3]
    assert owner_client.get(f"/api/tables/{table.id}/results?kind=bogus").status_code == 400


def test_outsider_cannot_see_or_use_another_teams_tables(outsider_client, outsider, shop, teams):
    table = MonitoredTable.objects.create(connection=shop, table_name="orders")
    assert outsider_client.get("/api/tables").json()["count"] == 0
    for method, url in [
        ("get", f"/api/tables/{table.id}"),
        ("patch", f"/api/tables/{table.id}"),
        ("delete", f"/api/tables/{table.id}"),
        ("get", f"/api/tables/{table.id}/results"),
    ]:
        assert getattr(outsider_client, method)(url, {}, format="json").status_code == 404
    response = create(outsider_client, shop, table_name="customers")
    assert response.status_code == 400
    assert "connection" in response.data
    assert MonitoredTable.objects.count() == 1


def test_member_reads_but_cannot_write(member_client, shop):
    table = MonitoredTable.objects.create(connection=shop, table_name="orders")
    assert member_client.get("/api/tables").json()["count"] == 1
    assert member_client.get(f"/api/tables/{table.id}/results").status_code == 200
    assert create(member_client, shop, table_name="customers").status_code == 403
    assert member_client.patch(f"/api/tables/{table.id}", {"is_active": False}, format="json").status_code == 403
    assert member_client.delete(f"/api/tables/{table.id}").status_code == 403
    assert MonitoredTable.objects.get().is_active is True


@pytest.mark.parametrize("value", [99999999999999999999, -1, "1; DROP", 1.5, [1], {"id": 1}])
def test_it_answers_odd_connection_ids_with_400(owner_client, shop, value):
    response = owner_client.post("/api/tables", {"connection": value, "table_name": "orders"}, format="json")
    assert response.status_code == 400
    assert "connection" in response.data
    assert not MonitoredTable.objects.exists()


def test_deactivating_pauses_a_table_and_reactivating_makes_it_due(owner_client, shop):
    table = MonitoredTable.objects.create(
        connection=shop, table_name="orders", status="healthy", next_check_at=timezone.now() + timedelta(hours=1)
    )
    assert owner_client.patch(f"/api/tables/{table.id}", {"is_active": False}, format="json").json()["status"] == (
        "paused"
    )
    body = owner_client.patch(f"/api/tables/{table.id}", {"is_active": True}, format="json").json()
    assert body["status"] == "unknown" and body["next_check_at"] is None


def test_it_exposes_baseline_settings_with_validation(owner_client, shop):
    table_id = create(owner_client, shop).json()["id"]
    ok = owner_client.patch(
        f"/api/tables/{table_id}",
        {"sensitivity": 5, "direction": "drop", "seasonality": "hour_of_day", "min_relative_change": 0.1},
        format="json",
    )
    assert ok.status_code == 200 and ok.json()["direction"] == "drop"
    fields = ("sensitivity", "direction", "seasonality", "min_relative_change")
    saved = MonitoredTable.objects.values(*fields).get(pk=table_id)
    assert saved == {"sensitivity": 5, "direction": "drop", "seasonality": "hour_of_day", "min_relative_change": 0.1}
    for bad in ({"sensitivity": 0.5}, {"direction": "up"}, {"seasonality": "monthly"}, {"min_relative_change": -1}):
        response = owner_client.patch(f"/api/tables/{table_id}", bad, format="json")
        assert response.status_code == 400 and set(bad) <= set(response.data)
        assert MonitoredTable.objects.values(*fields).get(pk=table_id) == saved  # nothing saved


def test_a_sensitivity_preset_is_set_and_cleared_beside_the_numeric_sensitivity(owner_client, shop):
    body = create(owner_client, shop).json()
    assert body["sensitivity_preset"] == "" and body["min_absolute_change"] == 3.0
    assert body["volume_bucket_seconds"] == 3600 and body["volume_series"] == ""
    table_id = body["id"]
    high = owner_client.patch(f"/api/tables/{table_id}", {"sensitivity_preset": "high"}, format="json")
    assert high.status_code == 200 and high.json()["sensitivity_preset"] == "high"
    assert MonitoredTable.objects.get(pk=table_id).sensitivity_preset == "high"
    for bad in ({"sensitivity_preset": "extreme"}, {"sensitivity_preset": None}, {"volume_bucket_seconds": 60}):
        response = owner_client.patch(f"/api/tables/{table_id}", bad, format="json")
        assert response.status_code == 400 and set(bad) <= set(response.data)
    assert MonitoredTable.objects.get(pk=table_id).sensitivity_preset == "high"
    cleared = owner_client.patch(f"/api/tables/{table_id}", {"sensitivity_preset": ""}, format="json")
    assert cleared.status_code == 200 and MonitoredTable.objects.get(pk=table_id).sensitivity_preset == ""


def test_rebaseline_restarts_training_and_checks_since(owner_client, member_client, outsider_client, shop):
    table = MonitoredTable.objects.create(connection=shop, table_name="orders", backfilled_at=timezone.now())
    assert member_client.post(f"/api/tables/{table.id}/rebaseline").status_code == 403
    assert outsider_client.post(f"/api/tables/{table.id}/rebaseline").status_code == 404
    before = timezone.now()
    response = owner_client.post(f"/api/tables/{table.id}/rebaseline/", {}, format="json")
    assert response.status_code == 200
    table.refresh_from_db()
    assert before <= table.baseline_since <= timezone.now() and table.backfilled_at is None
    since = (timezone.now() - timedelta(days=2)).replace(microsecond=0)
    response = owner_client.post(f"/api/tables/{table.id}/rebaseline", {"since": since.isoformat()}, format="json")
    assert response.status_code == 200
    table.refresh_from_db()
    assert table.baseline_since == since
    MonitoredTable.objects.filter(id=table.id).update(backfilled_at=before)
    for bad in ({"since": "2000-01-01T00:00:00Z"}, {"since": "soon"}, {"from": since.isoformat()}):
        response = owner_client.post(f"/api/tables/{table.id}/rebaseline", bad, format="json")
        assert response.status_code == 400 and set(response.data) == ({"since"} if "since" in bad else {"from"})
        table.refresh_from_db()
        assert (table.baseline_since, table.backfilled_at) == (since, before)  # nothing saved


def test_mark_expected_only_for_anomalies_of_the_table(owner_client, member_client, shop):
    table = MonitoredTable.objects.create(connection=shop, table_name="orders")
    now = timezone.now()
    anomaly = CheckResult.objects.create(
        connection=shop,
        table=table,
        kind="volume",
        status="fail",
        observed_value=0,
        is_anomaly=True,
        started_at=now,
        bucket_start=now,
    )
    normal = CheckResult.objects.create(
        connection=shop, table=table, kind="volume", status="pass", observed_value=10, started_at=now
    )
    url = f"/api/tables/{table.id}/results/{anomaly.id}/mark-expected"
    assert member_client.post(url).status_code == 403
    response = owner_client.post(url)
    assert response.status_code == 200 and response.json()["marked_expected"] is True
    assert owner_client.post(f"/api/tables/{table.id}/results/{normal.id}/mark-expected").status_code == 400
    assert owner_client.post(f"/api/tables/{table.id}/results/999999/mark-expected").status_code == 400


def test_it_never_validates_against_a_server_that_is_not_a_replica(owner_client, make_connection, primary_settings):
    """Save-time catalog lookups use the same guarded session: a promoted or wrong target is refused."""
    primary = make_connection(name="was-a-replica", port=primary_settings["port"])
    response = create(owner_client, primary)
    assert response.status_code == 400
    assert "not a read replica" in str(response.data["connection"])
    assert not MonitoredTable.objects.exists()


def test_a_table_is_marked_quiet_on_its_connections_holidays(owner_client, shop):
    response = create(owner_client, shop)
    assert response.status_code == 201 and response.json()["quiet_on_holidays"] is False
    table_id = response.json()["id"]
    ok = owner_client.patch(f"/api/tables/{table_id}", {"quiet_on_holidays": True}, format="json")
    assert ok.status_code == 200 and ok.json()["quiet_on_holidays"] is True
    bad = owner_client.patch(f"/api/tables/{table_id}", {"quiet_on_holidays": "maybe"}, format="json")
    assert bad.status_code == 400 and "quiet_on_holidays" in bad.data
    assert MonitoredTable.objects.get().quiet_on_holidays is True
