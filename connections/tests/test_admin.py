import pytest

from connections import guardrails
from connections.models import Connection

pytestmark = pytest.mark.django_db


def test_the_change_form_never_renders_the_password(client, staff, make_connection, replica_settings):
    connection = make_connection()
    client.force_login(staff)
    page = client.get(f"/admin/connections/connection/{connection.id}/change/").content.decode()
    assert 'type="password"' in page
    assert replica_settings["password"] not in page
    assert connection.password_encrypted not in page


def test_a_blank_password_keeps_the_stored_one_and_a_new_one_is_encrypted(client, staff, make_connection, admin_form):
    connection = make_connection()
    client.force_login(staff)
    form = admin_form(connection, name="renamed")
    url = f"/admin/connections/connection/{connection.id}/change/"
    response = client.post(url, form)
    assert response.status_code == 302, response.content.decode()[:2000]
    connection.refresh_from_db()
    assert connection.name == "renamed"
    assert connection.get_password() == "reader-s3cret-pw"
    client.post(url, {**form, "password": "new-secret"})
    connection.refresh_from_db()
    assert connection.get_password() == "new-secret"
    assert "new-secret" not in connection.password_encrypted


def test_staff_see_only_their_teams_connections(client, staff, make_connection, teams):
    mine = make_connection(name="mine")
    theirs = make_connection(name="theirs", team=teams[1])
    client.force_login(staff)
    listing = client.get("/admin/connections/connection/").content.decode()
    assert f"/admin/connections/connection/{mine.id}/change/" in listing
    assert f"/admin/connections/connection/{theirs.id}/change/" not in listing and "theirs" not in listing
    assert client.get(f"/admin/connections/connection/{mine.id}/change/").status_code == 200
    assert client.get(f"/admin/connections/connection/{theirs.id}/change/").status_code in (302, 404)
    add_form = client.get("/admin/connections/connection/add/").content.decode()
    assert "acme" in add_form and "globex" not in add_form


def test_the_test_connection_action_reports_the_outcome(client, staff, make_connection):
    connection = make_connection(status=Connection.Status.UNKNOWN)
    client.force_login(staff)
    response = client.post(
        "/admin/connections/connection/",
        {"action": "test_connection", "_selected_action": [connection.id]},
        follow=True,
    )
    assert "ok (replica, PostgreSQL 15" in response.content.decode()
    connection.refresh_from_db()
    assert connection.status == "ok"


def test_the_connection_list_shows_a_coloured_status(client, staff, make_connection):
    make_connection(name="up", status=Connection.Status.OK)
    make_connection(name="down", status=Connection.Status.ERROR)
    client.force_login(staff)
    listing = client.get("/admin/connections/connection/").content.decode()
    assert 'class="pulse-status pulse-good">Ok<' in listing
    assert 'class="pulse-status pulse-bad">Error<' in listing


def test_the_change_form_and_the_allowance_list_show_the_replica_time_used(client, staff, make_connection):
    connection = make_connection()
    guardrails.time_share_charge(connection=connection, spent_ms=1800)
    client.force_login(staff)
    page = client.get(f"/admin/connections/connection/{connection.id}/change/").content.decode()
    assert "replica time used" in page.lower() and "1.8 s of server time" in page and "limit 5%" in page
    listing = client.get("/admin/connections/queryallowance/").content.decode()
    assert "1.8 s of server time" in listing


def test_the_holiday_calendar_is_edited_as_comma_separated_dates_and_a_bad_one_is_named(
    client, staff, make_connection, admin_form
):
    connection = make_connection()
    client.force_login(staff)
    url = f"/admin/connections/connection/{connection.id}/change/"
    response = client.post(url, admin_form(connection, holidays="2026-12-24, 2026-12-25,\n2027-01-01"))
    assert response.status_code == 302, response.content.decode()[:2000]
    connection.refresh_from_db()
    assert [day.isoformat() for day in connection.holidays] == ["2026-12-24", "2026-12-25", "2027-01-01"]
    refused = client.post(url, admin_form(connection, holidays="2026-12-24,Christmas"))
    assert refused.status_code == 200 and "Item 2 in the array did not validate" in refused.content.decode()
    connection.refresh_from_db()
    assert len(connection.holidays) == 3


def test_the_admin_stores_the_holiday_calendar_as_the_api_does_in_order_once_each(
    client, staff, make_connection, admin_form
):
    connection = make_connection()
    client.force_login(staff)
    url = f"/admin/connections/connection/{connection.id}/change/"
    response = client.post(url, admin_form(connection, holidays="2027-01-01,2026-12-25,2027-01-01"))
    assert response.status_code == 302, response.content.decode()[:2000]
    connection.refresh_from_db()
    assert [day.isoformat() for day in connection.holidays] == ["2026-12-25", "2027-01-01"]
