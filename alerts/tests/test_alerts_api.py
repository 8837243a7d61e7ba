import pytest
from django.utils import timezone

from alerts.models import Alert
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
