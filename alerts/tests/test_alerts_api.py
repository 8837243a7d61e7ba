import pytest
from django.utils import timezone

from alerts.models import Alert
from connections.models import MaintenanceWindow
from monitors.models import MonitoredTable

pytestmark = pytest.mark.django_db


@pytest.fixture
def alert(make_connection):
    connection = make_connection()
    table = MonitoredTable.objects.create(connection=connection, table_name="orders")
    now = timezone.now()
    return Alert.objects.create(
        connection=connection, table=table, kind="freshness", message="stale", opened_at=now, last_seen_at=now
    )


def test_it_lists_and_filters_alerts(owner_client, alert):
    assert owner_client.get("/api/alerts").json()["count"] == 1
    assert owner_client.get("/api/alerts?status=open&kind=freshness").json()["count"] == 1
    assert owner_client.get("/api/alerts?status=resolved").json()["count"] == 0
    assert owner_client.get(f"/api/alerts?table={alert.table_id}").json()["count"] == 1
    assert owner_client.get(f"/api/alerts?connection={alert.connection_id + 1}").json()["count"] == 0
    assert owner_client.get(f"/api/alerts/{alert.id}/").json()["message"] == "stale"


@pytest.mark.parametrize("query", ["status=bogus", "kind=nope", "table=abc", "connection=1.5"])
def test_it_rejects_bad_filters(owner_client, alert, query):
    assert owner_client.get(f"/api/alerts?{query}").status_code == 400


def test_it_acknowledges_then_resolves(owner_client, alert):
    response = owner_client.post(f"/api/alerts/{alert.id}/acknowledge")
    assert response.status_code == 200
    assert response.json()["status"] == "acknowledged"
    response = owner_client.post(f"/api/alerts/{alert.id}/resolve/")
    assert response.status_code == 200
    assert response.json()["status"] == "resolved"
    alert.refresh_from_db()
    assert alert.resolved_at is not None


def test_it_refuses_to_acknowledge_a_resolved_alert(owner_client, alert):
    owner_client.post(f"/api/alerts/{alert.id}/resolve")
    response = owner_client.post(f"/api/alerts/{alert.id}/acknowledge")
    assert response.status_code == 400
    assert "resolved" in str(response.data)
    alert.refresh_from_db()
    assert alert.status == "resolved"
    assert not alert.events.filter(kind="acknowledged").exists()


def test_the_database_allows_one_unresolved_alert_per_problem(alert):
    from django.db import IntegrityError, transaction

    now = timezone.now()
    with pytest.raises(IntegrityError), transaction.atomic():
        Alert.objects.create(
            connection=alert.connection, table=alert.table, kind="freshness", opened_at=now, last_seen_at=now
        )
    Alert.objects.create(
        connection=alert.connection, table=None, kind="connection_error", opened_at=now, last_seen_at=now
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        Alert.objects.create(
            connection=alert.connection, table=None, kind="connection_error", opened_at=now, last_seen_at=now
        )
    alert.status = "resolved"
    alert.save()
    Alert.objects.create(
        connection=alert.connection, table=alert.table, kind="freshness", opened_at=now, last_seen_at=now
    )


def test_outsider_gets_404_everywhere(outsider_client, alert):
    assert outsider_client.get("/api/alerts").json()["count"] == 0
    assert outsider_client.get(f"/api/alerts/{alert.id}").status_code == 404
    assert outsider_client.post(f"/api/alerts/{alert.id}/acknowledge").status_code == 404
    assert outsider_client.post(f"/api/alerts/{alert.id}/resolve").status_code == 404
    alert.refresh_from_db()
    assert alert.status == "open"


def test_member_reads_but_cannot_change(member_client, alert):
    assert member_client.get(f"/api/alerts/{alert.id}").status_code == 200
    assert member_client.post(f"/api/alerts/{alert.id}/acknowledge").status_code == 403
    assert member_client.post(f"/api/alerts/{alert.id}/resolve").status_code == 403
    alert.refresh_from_db()
    assert alert.status == "open"


def test_alerts_are_read_only_through_the_api(owner_client, alert):
    assert owner_client.post("/api/alerts", {}, format="json").status_code == 405
    assert owner_client.delete(f"/api/alerts/{alert.id}").status_code == 405
    assert list(Alert.objects.values_list("id", flat=True)) == [alert.id]  # nothing created, nothing deleted


@pytest.mark.parametrize(
    "url",
    [
        "/api/alerts/99999999999999999999",
        "/api/alerts/abc",
        "/api/alerts?table=99999999999999999999",
        "/api/alerts?page=abc",
        "/api/alerts?page=99999999999999999999",
        "/api/tables/99999999999999999999/results",
        "/api/connections/-1",
    ],
)
def test_it_never_answers_odd_ids_with_500(owner_client, alert, url):
    assert 400 <= owner_client.get(url).status_code < 500


def test_it_snoozes_by_minutes_or_until_and_lists_events(owner_client, alert):
    response = owner_client.post(f"/api/alerts/{alert.id}/snooze", {"minutes": 30}, format="json")
    assert response.status_code == 200
    snoozed_until = timezone.datetime.fromisoformat(response.json()["snoozed_until"])
    assert 29 * 60 < (snoozed_until - timezone.now()).total_seconds() <= 30 * 60
    alert.refresh_from_db()
    assert alert.snoozed_until == snoozed_until
    until = (timezone.now() + timezone.timedelta(hours=2)).replace(microsecond=0)
    response = owner_client.post(f"/api/alerts/{alert.id}/snooze/", {"until": until.isoformat()}, format="json")
    assert response.status_code == 200
    alert.refresh_from_db()
    assert alert.snoozed_until == until
    owner_client.post(f"/api/alerts/{alert.id}/acknowledge")
    events = owner_client.get(f"/api/alerts/{alert.id}/events").json()
    assert [e["kind"] for e in events["results"]] == ["snoozed", "snoozed", "acknowledged"]
    assert events["results"][-1]["actor"] == "owner"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"minutes": 0},
        {"minutes": "soon"},
        {"minutes": 60 * 24 * 31},
        {"until": "yesterday"},
        {"until": "2000-01-01T00:00:00Z"},
        {"minutes": 5, "until": "2999-01-01T00:00:00Z"},
        {"hours": 1},
    ],
)
def test_it_rejects_bad_snoozes(owner_client, alert, body):
    response = owner_client.post(f"/api/alerts/{alert.id}/snooze", body, format="json")
    assert response.status_code == 400
    alert.refresh_from_db()
    assert alert.snoozed_until is None


def test_outsider_and_member_cannot_snooze_or_read_events(outsider_client, member_client, alert):
    assert outsider_client.post(f"/api/alerts/{alert.id}/snooze", {"minutes": 5}, format="json").status_code == 404
    assert outsider_client.get(f"/api/alerts/{alert.id}/events").status_code == 404
    assert member_client.post(f"/api/alerts/{alert.id}/snooze", {"minutes": 5}, format="json").status_code == 403
    assert member_client.get(f"/api/alerts/{alert.id}/events").status_code == 200
    alert.refresh_from_db()
    assert alert.snoozed_until is None and not alert.events.filter(kind="snoozed").exists()


def test_maintenance_windows_crud_and_scoping(owner_client, outsider_client, member_client, alert):
    body = {
        "connection": alert.connection_id,
        "starts_at": "2030-01-01T00:00:00Z",
        "ends_at": "2030-01-01T02:00:00Z",
        "reason": "upgrade",
    }
    created = owner_client.post("/api/maintenance-windows", body, format="json")
    assert created.status_code == 201, created.data
    window_id = created.json()["id"]
    assert owner_client.get(f"/api/maintenance-windows?connection={alert.connection_id}").json()["count"] == 1
    bad = owner_client.post("/api/maintenance-windows", {**body, "ends_at": "2029-12-31T00:00:00Z"}, format="json")
    assert bad.status_code == 400 and "ends_at" in bad.data
    assert list(MaintenanceWindow.objects.values_list("id", flat=True)) == [window_id]  # nothing saved
    assert outsider_client.get(f"/api/maintenance-windows/{window_id}").status_code == 404
    assert outsider_client.post("/api/maintenance-windows", body, format="json").status_code == 400
    assert member_client.delete(f"/api/maintenance-windows/{window_id}").status_code == 403
    assert owner_client.delete(f"/api/maintenance-windows/{window_id}/").status_code == 204
