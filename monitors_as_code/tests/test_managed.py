"""Objects a file manages: the API and the admin show them as such and refuse edits of their file fields."""

import pytest

from alerts.models import Channel
from connections.models import MaintenanceWindow
from monitors.models import Check, MonitoredTable

pytestmark = pytest.mark.django_db

FILE = """\
version: 1
team: acme
channels:
  - name: ops
    kind: email
    target_env: OPS_MAIL
connections:
  - name: shop-replica
    tables:
      - table: orders
        checks:
          - kind: row_count
            min_value: 1
    maintenance_windows:
      - starts_at: 2026-12-01T02:00:00Z
        ends_at: 2026-12-01T04:00:00Z
"""


@pytest.fixture
def managed(shop, apply):
    assert apply(FILE, env={"OPS_MAIL": "ops@example.com"}).problems == []
    return {
        "tables": MonitoredTable.objects.get(),
        "checks": Check.objects.get(),
        "channels": Channel.objects.get(),
        "maintenance-windows": MaintenanceWindow.objects.get(),
    }


EDITS = {
    "tables": ("sensitivity", 9.0),
    "checks": ("min_value", 5.0),
    "channels": ("target", "someone@example.com"),
    "maintenance-windows": ("reason", "changed by hand"),
}


@pytest.mark.parametrize("resource", sorted(EDITS))
def test_the_api_shows_managed_objects(owner_client, managed, resource):
    body = owner_client.get(f"/api/{resource}/{managed[resource].pk}").json()
    assert body["managed_by"] == "pulse.yml"


@pytest.mark.parametrize("resource", sorted(EDITS))
def test_the_api_refuses_edits_of_managed_fields_naming_the_file(owner_client, managed, resource):
    field, value = EDITS[resource]
    obj = managed[resource]
    before = obj.updated_at if hasattr(obj, "updated_at") else None
    response = owner_client.patch(f"/api/{resource}/{obj.pk}", {field: value}, format="json")
    assert response.status_code == 400
    assert 'is managed by "pulse.yml" (monitors as code)' in response.json()[field][0]
    obj.refresh_from_db()
    if field == "target":
        assert obj.get_target() == "ops@example.com"
    else:
        assert getattr(obj, field) != value
    if before is not None:
        assert obj.updated_at == before


def test_fields_the_file_does_not_set_stay_editable(owner_client, managed):
    table = managed["tables"]
    response = owner_client.patch(f"/api/tables/{table.pk}", {"is_active": False}, format="json")
    assert response.status_code == 200
    table.refresh_from_db()
    assert (table.is_active, table.status, table.managed_by) == (False, "paused", "pulse.yml")


@pytest.mark.parametrize("resource", sorted(EDITS))
def test_the_api_refuses_to_delete_a_managed_object(owner_client, managed, resource):
    obj = managed[resource]
    response = owner_client.delete(f"/api/{resource}/{obj.pk}")
    assert response.status_code == 400
    assert "remove it from that file and apply with --prune" in response.json()["managed_by"][0]
    assert type(obj).objects.filter(pk=obj.pk).exists()


def test_the_api_refuses_to_delete_a_connection_whose_delete_would_take_managed_objects(
    owner_client, managed, shop
):
    response = owner_client.delete(f"/api/connections/{shop.pk}")
    assert response.status_code == 400
    message = response.json()["managed_by"][0]
    assert "would delete the" in message and 'which "pulse.yml" manages' in message
    assert type(shop).objects.filter(pk=shop.pk).exists()
    assert MonitoredTable.objects.filter(pk=managed["tables"].pk).exists()
    assert Check.objects.filter(pk=managed["checks"].pk).exists()
    for resource in ("checks", "tables", "maintenance-windows"):  # the team opts them all out: then it may
        released = owner_client.patch(f"/api/{resource}/{managed[resource].pk}", {"managed_by": ""}, format="json")
        assert released.status_code == 200, released.data
    assert owner_client.delete(f"/api/connections/{shop.pk}").status_code == 204
    assert not type(shop).objects.filter(pk=shop.pk).exists()
    assert not MonitoredTable.objects.filter(pk=managed["tables"].pk).exists()


def test_a_team_opts_an_object_out_and_may_then_edit_it(owner_client, managed, plan):
    table = managed["tables"]
    response = owner_client.patch(f"/api/tables/{table.pk}", {"managed_by": "", "sensitivity": 9}, format="json")
    assert response.status_code == 200, response.data
    table.refresh_from_db()
    assert (table.managed_by, table.sensitivity) == ("", 9)
    adopted = plan(FILE, env={"OPS_MAIL": "ops@example.com"})
    assert [(c.action, c.kind) for c in adopted.changes] == [("adopt", "table")]  # the file would take it back


@pytest.mark.parametrize("resource", sorted(EDITS))
def test_only_the_opt_out_can_be_written_to_managed_by(owner_client, managed, resource):
    obj = managed[resource]
    response = owner_client.patch(f"/api/{resource}/{obj.pk}", {"managed_by": "mine.yml"}, format="json")
    assert response.status_code == 400
    assert "can be written here" in response.json()["managed_by"][0]
    obj.refresh_from_db()
    assert obj.managed_by == "pulse.yml"


def test_an_object_created_through_the_api_cannot_claim_to_be_managed(owner_client, shop):
    response = owner_client.post(
        "/api/tables", {"connection": shop.pk, "table_name": "orders", "managed_by": "pulse.yml"}, format="json"
    )
    assert response.status_code == 400
    assert not MonitoredTable.objects.exists()


def test_the_admin_refuses_an_edit_of_a_managed_table_and_shows_why(client, staff, managed):
    client.force_login(staff)
    table = managed["tables"]
    url = f"/admin/monitors/monitoredtable/{table.pk}/change/"
    page = client.get(url)
    assert page.status_code == 200
    assert "pulse.yml" in page.content.decode()
    form = {
        "connection": table.connection_id,
        "schema_name": "public",
        "table_name": "orders",
        "timestamp_column": "",
        "freshness_threshold_minutes": 60,
        "check_interval_seconds": 300,
        "failure_threshold": 2,
        "sensitivity": 9,
        "direction": "both",
        "seasonality": "auto",
        "min_relative_change": 0,
        "min_absolute_change": 0,
        "is_active": "on",
        "checks-TOTAL_FORMS": 0,
        "checks-INITIAL_FORMS": 0,
        "checks-MIN_NUM_FORMS": 0,
        "checks-MAX_NUM_FORMS": 1000,
    }
    response = client.post(url, form)
    assert response.status_code == 200  # the form again, with the error
    assert "is managed by &quot;pulse.yml&quot; (monitors as code)" in response.content.decode()
    table.refresh_from_db()
    assert table.sensitivity == 3.5


def test_the_admin_does_not_offer_to_delete_a_managed_object(client, staff, managed):
    client.force_login(staff)
    window = managed["maintenance-windows"]
    response = client.post(f"/admin/connections/maintenancewindow/{window.pk}/delete/", {"post": "yes"})
    assert response.status_code == 403
    assert MaintenanceWindow.objects.filter(pk=window.pk).exists()


def test_the_admin_opt_out_action_releases_the_selected_objects(client, staff, managed):
    client.force_login(staff)
    check = managed["checks"]
    response = client.post(
        "/admin/monitors/check/", {"action": "release_from_file", "_selected_action": [check.pk]}, follow=True
    )
    assert response.status_code == 200
    assert "1 object(s) opted out of their monitors-as-code file." in response.content.decode()
    check.refresh_from_db()
    assert check.managed_by == ""
    assert MonitoredTable.objects.get().managed_by == "pulse.yml"  # only what was selected


def test_the_admin_bulk_delete_refuses_a_selection_with_a_managed_object(client, staff, managed):
    client.force_login(staff)
    window = managed["maintenance-windows"]
    by_hand = MaintenanceWindow.objects.create(
        connection=window.connection, starts_at="2026-01-01T00:00Z", ends_at="2026-01-01T01:00Z"
    )
    url = "/admin/connections/maintenancewindow/"
    client.post(url, {"action": "delete_selected", "_selected_action": [window.pk, by_hand.pk], "post": "yes"})
    assert MaintenanceWindow.objects.count() == 2
    client.post(url, {"action": "delete_selected", "_selected_action": [by_hand.pk], "post": "yes"})
    assert list(MaintenanceWindow.objects.all()) == [window]
