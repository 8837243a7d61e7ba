"""The admin and API composed in the project layer: tables under their connection, rebaseline resolving the alert."""

import pytest
from django.utils import timezone

from alerts.models import Alert
from monitors.models import MonitoredTable

pytestmark = pytest.mark.django_db


@pytest.fixture
def table_with_volume_alert(make_connection):
    table = MonitoredTable.objects.create(connection=make_connection(), table_name="orders")
    now = timezone.now()
    alert = Alert.objects.create(
        connection=table.connection, table=table, kind="volume", opened_at=now, last_seen_at=now
    )
    return table, alert


def test_tables_are_inline_under_their_connection(client, staff, make_connection):
    connection = make_connection()
    MonitoredTable.objects.create(connection=connection, table_name="orders")
    client.force_login(staff)
    page = client.get(f"/admin/connections/connection/{connection.id}/change/").content.decode()
    assert "orders" in page and "tables-TOTAL_FORMS" in page


def test_the_tables_inline_is_compact_with_a_status_label_and_a_link_to_each_table(client, staff, make_connection):
    connection = make_connection()
    table = MonitoredTable.objects.create(
        connection=connection, table_name="inventory_snapshots", status=MonitoredTable.Status.FAILING
    )
    client.force_login(staff)
    page = client.get(f"/admin/connections/connection/{connection.id}/change/").content.decode()
    assert f'href="/admin/monitors/monitoredtable/{table.id}/change/"' in page
    assert 'class="pulse-status pulse-bad">Failing<' in page
    assert 'name="tables-0-table_name" value="inventory_snapshots" size="22"' in page
    assert "every (s)" in page.lower()  # the interval header, short
    for moved_to_the_table_page in ("tables-0-freshness_threshold_minutes", "tables-0-sensitivity"):
        assert moved_to_the_table_page not in page


def test_a_rebaseline_from_the_admin_resolves_the_volume_alert(client, staff, table_with_volume_alert):
    table, alert = table_with_volume_alert
    client.force_login(staff)
    response = client.post("/admin/monitors/monitoredtable/", {"action": "rebaseline", "_selected_action": [table.id]})
    assert response.status_code == 302
    alert.refresh_from_db()
    assert alert.status == "resolved"
    assert list(alert.events.values_list("kind", flat=True))[-1] == "resolved"
    table.refresh_from_db()
    assert table.baseline_since is not None


def test_a_rebaseline_through_the_api_resolves_the_volume_alert(owner_client, table_with_volume_alert):
    table, alert = table_with_volume_alert
    response = owner_client.post(f"/api/tables/{table.id}/rebaseline", {}, format="json")
    assert response.status_code == 200
    alert.refresh_from_db()
    assert alert.status == "resolved"
    table.refresh_from_db()
    assert response.json()["baseline_since"] is not None and table.baseline_since is not None


def test_an_outsider_cannot_rebaseline_and_the_alert_stays_open(outsider_client, table_with_volume_alert):
    table, alert = table_with_volume_alert
    assert outsider_client.post(f"/api/tables/{table.id}/rebaseline", {}, format="json").status_code == 404
    alert.refresh_from_db()
    table.refresh_from_db()
    assert alert.status == "open" and table.baseline_since is None
