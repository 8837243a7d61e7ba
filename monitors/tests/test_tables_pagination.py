"""`/api/tables` pages (common.pagination.IdsFirstPagination, scoped by the team's connection ids): in list order
(connection, schema, table) on every page below and above the count cap, every table once, another team's never."""

import pytest

from common import pagination
from conftest import client_for
from monitors.models import MonitoredTable

pytestmark = pytest.mark.django_db


@pytest.fixture
def small_pages(monkeypatch):
    """A cap of 3 and pages of 2, so a handful of tables crosses the cap."""
    monkeypatch.setattr(pagination, "COUNT_CAP", 3)
    monkeypatch.setattr(pagination.IdsFirstPagination, "page_size", 2)


def follow(client, url):
    pages = []
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.content
        pages.append(response.json())
        url = pages[-1]["next"]
    return pages


def make_tables(connection, names, schema="public"):
    return [MonitoredTable.objects.create(connection=connection, schema_name=schema, table_name=n) for n in names]


def in_list_order(tables):
    return [t.id for t in sorted(tables, key=lambda t: (t.connection_id, t.schema_name, t.table_name))]


def test_pages_above_the_cap_are_in_list_order_with_none_of_another_teams(
    owner_client, outsider_client, make_connection, teams, small_pages
):
    shop, stock = make_connection(), make_connection(name="stock")
    ours = make_tables(stock, ["b", "a"]) + make_tables(shop, ["d", "c"], schema="z") + make_tables(shop, ["e"])
    theirs = make_tables(make_connection(team=teams[1], name="theirs"), ["a", "b", "c", "d"])
    pages = follow(owner_client, "/api/tables")
    assert [(page["count"], page["count_capped"]) for page in pages] == [(3, True)] * 3
    assert [row["id"] for page in pages for row in page["results"]] == in_list_order(ours)
    assert pages[1]["results"][0]["badge_url"].endswith(".svg")
    assert [row["id"] for page in follow(outsider_client, "/api/tables") for row in page["results"]] == (
        in_list_order(theirs)
    )
    assert owner_client.get(f"/api/tables?connection={theirs[0].connection_id}").json()["results"] == []
    assert owner_client.get("/api/tables?page=4").status_code == 404


def test_pages_below_the_cap_and_one_connection(owner_client, make_connection, small_pages):
    shop, stock = make_connection(), make_connection(name="stock")
    ours = make_tables(shop, ["b", "a"])
    stock_tables = make_tables(stock, ["y", "x"])
    pages = follow(owner_client, f"/api/tables?connection={shop.id}")
    assert [(page["count"], page["count_capped"]) for page in pages] == [(2, False)]
    assert [row["id"] for row in pages[0]["results"]] == in_list_order(ours)
    second = owner_client.get(f"/api/tables?connection={stock.id}&page=1").json()
    assert [row["id"] for row in second["results"]] == in_list_order(stock_tables)


def test_a_superuser_lists_every_teams_tables(superuser_client, make_connection, teams):
    ours = make_tables(make_connection(), ["a"])
    theirs = make_tables(make_connection(team=teams[1], name="theirs"), ["a"])
    listed = superuser_client.get("/api/tables").json()["results"]
    assert [row["id"] for row in listed] == in_list_order(ours + theirs)


def test_a_user_of_no_team_lists_nothing(make_connection, django_user_model):
    make_tables(make_connection(), ["a"])
    loner = django_user_model.objects.create_user("loner", password="pw-loner")
    body = client_for(loner).get("/api/tables").json()
    assert (body["count"], body["results"]) == (0, [])
