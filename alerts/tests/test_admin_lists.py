"""The alert list reads at a glance: coloured status and severity, the table on its connection, the message."""

import pytest
from django.utils import timezone

from alerts.models import Alert
from monitors.models import MonitoredTable

pytestmark = pytest.mark.django_db


def test_the_alert_list_shows_status_labels_the_place_and_the_message(client, staff, make_connection):
    connection = make_connection(name="shop-replica")
    table = MonitoredTable.objects.create(connection=connection, table_name="inventory_snapshots")
    now = timezone.now()
    Alert.objects.create(
        connection=connection,
        table=table,
        kind="freshness",
        severity="critical",
        opened_at=now,
        last_seen_at=now,
        message="newest counted_at is 129 min old (limit 60 min)",
    )
    Alert.objects.create(
        connection=connection, kind="connection_error", status="acknowledged", opened_at=now, last_seen_at=now
    )
    client.force_login(staff)
    page = client.get("/admin/alerts/alert/").content.decode()
    assert 'class="pulse-status pulse-bad">Open<' in page
    assert 'class="pulse-status pulse-bad">Critical<' in page
    assert 'class="pulse-status pulse-note">Acknowledged<' in page
    assert 'public.inventory_snapshots<br><span class="pulse-muted">shop-replica</span>' in page
    assert "newest counted_at is 129 min old (limit 60 min)" in page
    assert f"{timezone.localtime(now):%b %d %H:%M}" in page
