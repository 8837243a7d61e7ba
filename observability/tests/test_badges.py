import pytest
from django.contrib.auth.models import Permission
from django.db import connection as pulse_db
from django.test.utils import CaptureQueriesContext

from monitors.models import MonitoredTable
from observability.badges import badge_for, badge_rotate, badge_svg, badges_ensure
from observability.models import Badge

pytestmark = pytest.mark.django_db


def badge_text(client, badge) -> str:
    response = client.get(f"/badges/{badge.key}.svg")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/svg+xml"
    return response.content.decode()


def test_a_table_badge_shows_its_name_and_status(client, world):
    svg = badge_text(client, badge_for(subject=world["orders"]))
    assert "<title>public.orders: failing</title>" in svg
    assert "#e05d44" in svg  # red


def test_a_connection_badge_shows_its_worst_table(client, world):
    shop = badge_for(subject=world["shop"])
    assert "<title>shop: failing</title>" in badge_text(client, shop)
    MonitoredTable.objects.filter(pk=world["orders"].pk).update(status="healthy")
    assert "<title>shop: healthy</title>" in badge_text(client, shop)


def test_an_unreachable_connection_says_so(client, world):
    assert "<title>ledger: unreachable</title>" in badge_text(client, badge_for(subject=world["ledger"]))


def test_a_team_badge_sums_up_its_connections(client, world, teams):
    acme = badge_for(subject=teams[0])
    assert "<title>acme: failing</title>" in badge_text(client, acme)
    MonitoredTable.objects.filter(pk=world["orders"].pk).update(is_active=False)  # paused tables do not count
    assert "<title>acme: healthy</title>" in badge_text(client, acme)


def test_a_paused_table_says_paused(client, world):
    MonitoredTable.objects.filter(pk=world["customers"].pk).update(is_active=False)
    assert "<title>public.customers: paused</title>" in badge_text(client, badge_for(subject=world["customers"]))


def test_names_are_escaped_and_shortened():
    svg = badge_svg(name='<script>alert("x")</script>' + "y" * 50, word="healthy")
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert "y" * 50 not in svg


def test_rotating_a_key_makes_the_old_url_a_404(client, world):
    badge = badge_for(subject=world["orders"])
    old = badge.key
    badge_rotate(badge=badge)
    badge.refresh_from_db()
    assert badge.key != old and len(badge.key) == 32 and badge.rotated_at is not None
    assert client.get(f"/badges/{old}.svg").status_code == 404
    badge_text(client, badge)


def test_badges_are_created_once_and_in_bulk(world):
    tables = list(MonitoredTable.objects.all())
    with CaptureQueriesContext(pulse_db) as captured:
        first = badges_ensure(subjects=tables)
    assert len(captured) <= 3
    assert badges_ensure(subjects=tables) == first
    assert Badge.objects.count() == len(tables)
    assert len({badge.key for badge in first.values()}) == len(tables)


def test_tables_and_connections_in_the_api_carry_their_badge_url(owner_client, world):
    tables = owner_client.get("/api/tables").json()["results"]
    badges = {badge.table_id: badge.key for badge in Badge.objects.filter(table__isnull=False)}
    assert {table["id"] for table in tables} == set(badges)
    for table in tables:
        assert table["badge_url"] == f"http://127.0.0.1:8000/badges/{badges[table['id']]}.svg"
    connection = owner_client.get(f"/api/connections/{world['shop'].id}").json()
    assert connection["badge_url"].endswith(f"/badges/{Badge.objects.get(connection=world['shop']).key}.svg")


def test_the_badge_list_shows_the_teams_badges_and_rotate_changes_the_key(client, owner, world, teams):
    owner.user_permissions.add(Permission.objects.get(codename="change_badge"))
    client.force_login(owner)
    listed = client.get("/api/badges").json()["results"]
    assert [(badge["kind"], badge["name"]) for badge in listed] == [("team", "acme")]
    team_badge = Badge.objects.get(team=teams[0])
    rotated = client.post(f"/api/badges/{team_badge.id}/rotate").json()
    team_badge.refresh_from_db()
    assert rotated["url"].endswith(f"/badges/{team_badge.key}.svg")
    assert team_badge.rotated_at is not None


def test_the_admin_change_pages_show_the_badge_url(client, staff, world):
    client.force_login(staff)
    table_page = client.get(f"/admin/monitors/monitoredtable/{world['orders'].id}/change/").content.decode()
    assert f"/badges/{Badge.objects.get(table=world['orders']).key}.svg" in table_page
    connection_page = client.get(f"/admin/connections/connection/{world['shop'].id}/change/").content.decode()
    assert f"/badges/{Badge.objects.get(connection=world['shop']).key}.svg" in connection_page


def test_badge_urls_cost_the_same_queries_for_2_or_22_tables(owner_client, world):
    def queries():
        with CaptureQueriesContext(pulse_db) as captured:
            assert owner_client.get("/api/tables").status_code == 200
        return len(captured)

    owner_client.get("/api/tables")  # the first listing creates the badges
    before = queries()
    MonitoredTable.objects.bulk_create(
        MonitoredTable(connection=world["shop"], table_name=f"t{n}", status="healthy") for n in range(20)
    )
    owner_client.get("/api/tables")
    assert queries() == before
