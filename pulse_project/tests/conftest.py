"""Objects of every kind the API exposes, owned by acme, for tests that sweep all endpoints."""

from datetime import timedelta

import pytest
from django.utils import timezone

from alerts.models import Alert, Channel
from connections.models import MaintenanceWindow
from monitors.models import Check, CheckResult, MonitoredTable


@pytest.fixture
def objects(make_connection, teams):
    connection = make_connection()
    table = MonitoredTable.objects.create(connection=connection, table_name="orders")
    check = Check.objects.create(table=table, kind="row_count", min_value=1)
    now = timezone.now()
    result = CheckResult.objects.create(
        connection=connection, table=table, kind="volume", status="fail", is_anomaly=True, started_at=now
    )
    alert = Alert.objects.create(connection=connection, table=table, kind="volume", opened_at=now, last_seen_at=now)
    channel = Channel(team=teams[0], name="hook", kind="webhook")
    channel.set_target("http://127.0.0.1:9/hook")
    channel.save()
    window = MaintenanceWindow.objects.create(
        connection=connection, starts_at=now + timedelta(hours=1), ends_at=now + timedelta(hours=2)
    )
    return {
        "connections": connection,
        "tables": table,
        "checks": check,
        "alerts": alert,
        "channels": channel,
        "maintenance-windows": window,
        "result": result,
    }
