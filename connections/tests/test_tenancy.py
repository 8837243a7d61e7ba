"""Owner, team member and outsider on every connection endpoint."""

import pytest

from connections.models import Connection

pytestmark = pytest.mark.django_db


def test_outsider_cannot_see_or_touch_another_teams_connection(outsider_client, make_connection):
    connection = make_connection()
    assert outsider_client.get("/api/connections").json()["count"] == 0
    url = f"/api/connections/{connection.id}"
    assert outsider_client.get(url).status_code == 404
    assert outsider_client.patch(url, {"name": "stolen"}, format="json").status_code == 404
    assert outsider_client.delete(url).status_code == 404
    assert outsider_client.post(url + "/test").status_code == 404
    connection.refresh_from_db()
    assert connection.name == "shop-replica"


def test_member_reads_but_cannot_write(member_client, make_connection, replica_settings):
    connection = make_connection()
    assert member_client.get("/api/connections").json()["count"] == 1
    url = f"/api/connections/{connection.id}"
    assert member_client.get(url).status_code == 200
    assert member_client.post("/api/connections", {"name": "x", **replica_settings}, format="json").status_code == 403
    assert member_client.patch(url, {"name": "renamed"}, format="json").status_code == 403
    assert member_client.delete(url).status_code == 403
    assert member_client.post(url + "/test").status_code == 403
    assert Connection.objects.get().name == "shop-replica"


def test_superuser_sees_everything(make_connection, teams, django_user_model):
    from conftest import client_for

    make_connection(name="a")
    make_connection(name="b", team=teams[1])
    admin = django_user_model.objects.create_superuser("root", password="pw")
    assert client_for(admin).get("/api/connections").json()["count"] == 2


def test_anonymous_is_refused(client, make_connection):
    assert client.get("/api/connections").status_code in (401, 403)
