"""Maintenance windows: when one is on, which ones a baseline skips, and the one rule of the API and the admin."""

from datetime import UTC, datetime, timedelta

import pytest

from connections import maintenance
from connections.models import MaintenanceWindow

pytestmark = pytest.mark.django_db

NOON = datetime(2030, 1, 1, 12, tzinfo=UTC)


def window(connection, starts, hours, reason=""):
    return MaintenanceWindow.objects.create(
        connection=connection, starts_at=starts, ends_at=starts + timedelta(hours=hours), reason=reason
    )


def test_a_window_is_on_from_its_start_until_just_before_its_end(make_connection):
    shop = make_connection()
    other = make_connection(name="other")
    window(shop, NOON, 2)
    assert not maintenance.in_maintenance(connection=shop, at=NOON - timedelta(microseconds=1))
    assert maintenance.in_maintenance(connection=shop, at=NOON)
    assert maintenance.in_maintenance(connection=shop, at=NOON + timedelta(hours=1))
    assert not maintenance.in_maintenance(connection=shop, at=NOON + timedelta(hours=2))
    assert not maintenance.in_maintenance(connection=other, at=NOON)


def test_windows_by_connection_lists_those_ending_since_per_connection(make_connection):
    shop = make_connection()
    other = make_connection(name="other")
    quiet = make_connection(name="quiet")
    window(shop, NOON - timedelta(days=30), 1)  # ended long before `since`
    window(shop, NOON - timedelta(hours=3), 1)  # ends exactly at `since`
    window(shop, NOON, 2)
    window(other, NOON, 1)
    since = NOON - timedelta(hours=2)

    windows = maintenance.windows_by_connection(connection_ids={shop.id, other.id, quiet.id}, since=since)
    assert sorted(windows[shop.id]) == [(since - timedelta(hours=1), since), (NOON, NOON + timedelta(hours=2))]
    assert windows[other.id] == [(NOON, NOON + timedelta(hours=1))]
    assert quiet.id not in windows
    assert maintenance.windows_by_connection(connection_ids={other.id}, since=NOON) == {
        other.id: [(NOON, NOON + timedelta(hours=1))]
    }


# --- the API ------------------------------------------------------------------------------------------------

BODY = {"starts_at": "2030-01-01T00:00:00Z", "ends_at": "2030-01-01T02:00:00Z", "reason": "upgrade"}


def test_maintenance_windows_crud_and_scoping(owner_client, outsider_client, member_client, make_connection):
    shop = make_connection()
    body = {**BODY, "connection": shop.id}
    created = owner_client.post("/api/maintenance-windows", body, format="json")
    assert created.status_code == 201, created.data
    window_id = created.json()["id"]
    assert owner_client.get(f"/api/maintenance-windows?connection={shop.id}").json()["count"] == 1
    assert owner_client.get(f"/api/maintenance-windows?connection={shop.id + 1000}").json()["count"] == 0
    bad = owner_client.post("/api/maintenance-windows", {**body, "ends_at": "2029-12-31T00:00:00Z"}, format="json")
    assert bad.status_code == 400 and bad.data["ends_at"] == [maintenance.ENDS_BEFORE_START]
    assert outsider_client.get(f"/api/maintenance-windows/{window_id}").status_code == 404
    assert outsider_client.post("/api/maintenance-windows", body, format="json").status_code == 400
    assert member_client.delete(f"/api/maintenance-windows/{window_id}").status_code == 403
    assert MaintenanceWindow.objects.filter(connection=shop).count() == 1
    assert owner_client.delete(f"/api/maintenance-windows/{window_id}/").status_code == 204
    assert not MaintenanceWindow.objects.exists()


def test_the_api_keeps_a_window_with_its_connection_and_its_end_after_its_start(owner_client, make_connection):
    shop = make_connection()
    other = make_connection(name="other")
    kept = window(shop, NOON, 2, reason="kept")
    url = f"/api/maintenance-windows/{kept.id}"

    moved = owner_client.patch(url, {"connection": other.id, "reason": "moved"}, format="json")
    assert moved.status_code == 400 and moved.data["connection"] == [maintenance.CONNECTION_MOVE_REFUSED]
    backwards = owner_client.patch(url, {"ends_at": "2030-01-01T11:00:00Z"}, format="json")
    assert backwards.status_code == 400 and backwards.data["ends_at"] == [maintenance.ENDS_BEFORE_START]
    kept.refresh_from_db()
    assert (kept.connection_id, kept.reason, kept.ends_at) == (shop.id, "kept", NOON + timedelta(hours=2))

    longer = owner_client.patch(url, {"ends_at": "2030-01-01T15:00:00Z"}, format="json")
    assert longer.status_code == 200
    kept.refresh_from_db()
    assert kept.ends_at == NOON + timedelta(hours=3)


# --- the admin ----------------------------------------------------------------------------------------------


def admin_form(connection, **changes):
    return {
        "connection": connection.id,
        "starts_at_0": "2030-01-01",
        "starts_at_1": "12:00:00",
        "ends_at_0": "2030-01-01",
        "ends_at_1": "14:00:00",
        "reason": "upgrade",
        **changes,
    }


def test_the_admin_keeps_a_window_with_its_connection_like_the_api(client, staff, make_connection):
    shop = make_connection()
    other = make_connection(name="other")
    kept = window(shop, NOON, 2, reason="kept")
    client.force_login(staff)
    url = f"/admin/connections/maintenancewindow/{kept.id}/change/"

    response = client.post(url, admin_form(other, reason="moved"))
    assert response.status_code == 200
    assert maintenance.CONNECTION_MOVE_REFUSED in response.content.decode()
    kept.refresh_from_db()
    assert (kept.connection_id, kept.reason) == (shop.id, "kept")

    response = client.post(url, admin_form(shop, reason="longer", ends_at_1="15:00:00"))
    assert response.status_code == 302, response.content.decode()[:2000]
    kept.refresh_from_db()
    assert (kept.reason, kept.ends_at) == ("longer", NOON + timedelta(hours=3))


def test_the_admin_refuses_a_window_that_ends_before_it_starts(client, staff, make_connection):
    shop = make_connection()
    client.force_login(staff)
    response = client.post("/admin/connections/maintenancewindow/add/", admin_form(shop, ends_at_1="11:00:00"))
    assert response.status_code == 200
    assert maintenance.ENDS_BEFORE_START in response.content.decode()
    assert not MaintenanceWindow.objects.exists()


def test_the_admin_lists_and_offers_only_the_users_teams_windows(client, staff, make_connection, teams):
    window(make_connection(name="acme-conn"), NOON, 1, reason="acme window")
    theirs = window(make_connection(name="globex-conn", team=teams[1]), NOON, 1, reason="globex window")
    client.force_login(staff)
    listing = client.get("/admin/connections/maintenancewindow/").content.decode()
    assert "acme-conn" in listing and "globex-conn" not in listing
    assert client.get(f"/admin/connections/maintenancewindow/{theirs.id}/change/").status_code in (302, 404)
    response = client.post("/admin/connections/maintenancewindow/add/", admin_form(theirs.connection))
    assert response.status_code == 200
    assert MaintenanceWindow.objects.count() == 2
