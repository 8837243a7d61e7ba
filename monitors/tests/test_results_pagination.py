"""A table's results by cursor (common.pagination.TimeOrderedPagination): newest first, every result once across
`next` links even where several share a time, `previous` back, `?page=N` as before, a bad cursor refused (400)."""

import base64
from datetime import timedelta

import pytest
from django.utils import timezone

from common.pagination import TimeOrderedPagination
from monitors.models import CheckResult, MonitoredTable

pytestmark = pytest.mark.django_db


@pytest.fixture
def small_pages(monkeypatch):
    monkeypatch.setattr(TimeOrderedPagination, "page_size", 3)


@pytest.fixture
def shop(make_connection):
    return make_connection()


def make_results(table, times: list[int], kind="volume"):
    """One result per entry of `times` (minutes ago; repeats share a time), observed_value its index."""
    now = timezone.now().replace(microsecond=0)
    return [
        CheckResult.objects.create(
            connection=table.connection,
            table=table,
            kind=kind,
            status="pass",
            observed_value=index,
            started_at=now - timedelta(minutes=minutes),
        )
        for index, minutes in enumerate(times)
    ]


def follow(client, url, link="next"):
    pages = []
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.content
        pages.append(response.json())
        url = pages[-1][link]
    return pages


def newest_first(results):
    return [r.id for r in sorted(results, key=lambda r: (r.started_at, r.id), reverse=True)]


def test_next_links_give_every_result_once_newest_first_with_ties(owner_client, shop, small_pages):
    table = MonitoredTable.objects.create(connection=shop, table_name="orders")
    # Four results at one time straddle the first page's edge, three at another the second's.
    results = make_results(table, [1, 2, 2, 2, 2, 3, 4, 4, 4, 5])
    pages = follow(owner_client, f"/api/tables/{table.id}/results")
    assert [len(page["results"]) for page in pages] == [3, 3, 3, 1]
    assert [row["id"] for page in pages for row in page["results"]] == newest_first(results)
    assert pages[0]["previous"] is None and "cursor=" in pages[0]["next"] and "count" not in pages[0]
    back = follow(owner_client, pages[-1]["previous"], link="previous")
    assert [[row["id"] for row in page["results"]] for page in back] == [
        [row["id"] for row in page["results"]] for page in reversed(pages[:-1])
    ]


def test_a_new_result_does_not_shift_the_pages_a_cursor_follows(owner_client, shop, small_pages):
    table = MonitoredTable.objects.create(connection=shop, table_name="orders")
    results = make_results(table, [1, 2, 3, 4, 5, 6])
    first = owner_client.get(f"/api/tables/{table.id}/results").json()
    make_results(table, [0])  # recorded between two requests
    second = owner_client.get(first["next"]).json()
    assert [row["id"] for row in second["results"]] == newest_first(results)[3:]


def test_kind_stays_in_the_links(owner_client, shop, small_pages):
    table = MonitoredTable.objects.create(connection=shop, table_name="orders")
    volume = make_results(table, [1, 2, 3, 4, 5])
    make_results(table, [1, 2, 3], kind="freshness")
    pages = follow(owner_client, f"/api/tables/{table.id}/results?kind=volume")
    assert all("kind=volume" in page["next"] for page in pages[:-1])
    assert [row["id"] for page in pages for row in page["results"]] == newest_first(volume)


def test_page_numbers_still_read_pages_from_the_newest(owner_client, shop, small_pages):
    table = MonitoredTable.objects.create(connection=shop, table_name="orders")
    results = make_results(table, [1, 2, 3, 4, 5, 6, 7])
    second = owner_client.get(f"/api/tables/{table.id}/results?page=2").json()
    assert [row["id"] for row in second["results"]] == newest_first(results)[3:6]
    assert "page=" not in second["next"] and "cursor=" in second["next"]
    third = owner_client.get(second["next"]).json()
    assert [row["id"] for row in third["results"]] == newest_first(results)[6:] and third["next"] is None
    assert owner_client.get(f"/api/tables/{table.id}/results?page=4").status_code == 404
    assert owner_client.get(f"/api/tables/{table.id}/results?page=0").json() == {
        "page": ["A page number is a whole number from 1."]
    }


@pytest.mark.parametrize(
    "cursor",
    [
        "not-base64!",
        "%%%",
        "Zm9v",  # "foo": decodes, but to nothing a link gives
        base64.b64encode(b"o=5000").decode(),  # an offset no link gives
        base64.b64encode(b"p=not-a-time").decode(),
        base64.b64encode(b"p=2026-13-45 99:00:00").decode(),
        base64.b64encode(b"o=-1").decode(),
        base64.b64encode(b"r=x").decode(),
        "é",
    ],
)
def test_a_cursor_that_no_link_gave_is_refused(owner_client, shop, cursor):
    table = MonitoredTable.objects.create(connection=shop, table_name="orders")
    make_results(table, [1, 2])
    response = owner_client.get(f"/api/tables/{table.id}/results", {"cursor": cursor})
    assert response.status_code == 400, response.content
    assert list(response.json()) == ["cursor"]


def test_another_teams_table_is_not_found_with_any_cursor(owner_client, outsider_client, shop, small_pages):
    table = MonitoredTable.objects.create(connection=shop, table_name="orders")
    make_results(table, [1, 2, 3, 4])
    next_link = owner_client.get(f"/api/tables/{table.id}/results").json()["next"]
    assert outsider_client.get(next_link).status_code == 404
    assert outsider_client.get(f"/api/tables/{table.id}/results?page=2").status_code == 404


def test_the_schema_describes_cursor_pages_without_a_count(owner_client):
    schema = owner_client.get("/api/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    operation = next(
        path["get"] for url, path in schema["paths"].items() if url.rstrip("/").endswith("/results") and "get" in path
    )
    assert {parameter["name"] for parameter in operation["parameters"]} >= {"cursor", "page", "kind"}
    listing = operation["responses"]["200"]["content"]["application/json"]["schema"]
    listing = schema["components"]["schemas"][listing["$ref"].rsplit("/", 1)[1]] if "$ref" in listing else listing
    assert set(listing["properties"]) == {"next", "previous", "results"}
