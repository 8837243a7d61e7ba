"""Lists count up to a cap (common.pagination): exact below it, `count_capped` above it, and pages go on."""

import pytest
from django.utils import timezone

from alerts.models import Alert
from common import pagination
from monitors.models import MonitoredTable

pytestmark = pytest.mark.django_db


@pytest.fixture
def small_pages(monkeypatch):
    """A cap of 3 and pages of 2, so a handful of alerts crosses the cap."""
    monkeypatch.setattr(pagination, "COUNT_CAP", 3)
    monkeypatch.setattr(pagination.CappedCountPagination, "page_size", 2)


def make_alerts(connection, n):
    table = MonitoredTable.objects.create(connection=connection, table_name=f"t{connection.id}")
    now = timezone.now()
    return [
        Alert.objects.create(
            connection=connection,
            table=table,
            kind="freshness",
            message=f"alert {i}",
            status=Alert.Status.RESOLVED,  # one unresolved alert per problem at most
            opened_at=now - timezone.timedelta(minutes=i),
            last_seen_at=now,
            resolved_at=now,
        )
        for i in range(n)
    ]


def test_below_the_cap_the_count_is_exact_with_links(owner_client, make_connection, small_pages):
    make_alerts(make_connection(), 3)
    first = owner_client.get("/api/alerts").json()
    assert (first["count"], first["count_capped"], first["previous"]) == (3, False, None)
    assert first["next"].endswith("/api/alerts?page=2") and len(first["results"]) == 2
    second = owner_client.get("/api/alerts?page=2").json()
    assert (second["count"], second["next"], len(second["results"])) == (3, None, 1)
    assert second["previous"].endswith("/api/alerts")
    assert owner_client.get("/api/alerts?page=3").status_code == 404


def test_above_the_cap_pages_go_on_until_next_is_null(
    owner_client, outsider_client, make_connection, teams, small_pages
):
    alerts = make_alerts(make_connection(), 7)
    make_alerts(make_connection(team=teams[1], name="theirs"), 5)
    seen, url, pages = [], "/api/alerts", 0
    while url:
        page = owner_client.get(url).json()
        assert (page["count"], page["count_capped"]) == (3, True)
        seen += [row["id"] for row in page["results"]]
        url, pages = page["next"], pages + 1
    assert pages == 4 and seen == [alert.id for alert in alerts]  # newest first, every one once, none of theirs
    last = owner_client.get("/api/alerts?page=4").json()
    assert last["previous"].endswith("/api/alerts?page=3") and len(last["results"]) == 1
    assert owner_client.get("/api/alerts?page=5").status_code == 404
    theirs = outsider_client.get("/api/alerts").json()
    assert (theirs["count"], theirs["count_capped"]) == (3, True)
    assert not {row["id"] for row in theirs["results"]} & set(seen)
    assert owner_client.get(f"/api/alerts?connection={alerts[0].connection_id}&page=2").json()["count_capped"]


@pytest.mark.parametrize("page", ["abc", "0", "-1", "1.5", "last", "٣"])
def test_a_page_that_is_not_a_whole_number_from_1_is_refused_naming_it(owner_client, make_connection, page):
    make_alerts(make_connection(), 1)
    response = owner_client.get("/api/alerts", {"page": page})
    assert response.status_code == 400
    assert list(response.json()) == ["page"]


def test_the_browsable_api_shows_pages_past_the_cap(owner_client, make_connection, small_pages):
    make_alerts(make_connection(), 7)
    response = owner_client.get("/api/alerts?page=4", HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    assert b"alert 6" in response.content and b"?page=3" in response.content


def test_the_schema_describes_the_capped_count(owner_client):
    schema = owner_client.get("/api/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    listing = schema["components"]["schemas"]["PaginatedAlertList"]
    assert listing["properties"]["count_capped"]["type"] == "boolean"
    assert "10,000" in listing["properties"]["count"]["description"]
