"""A connection stored while its target was allowed is refused by the checks themselves once the policy changes:
`runchecks` records an error naming the setting, for every check, and the replica never gets a query."""

from io import StringIO

import pytest
from django.core.management import call_command

from monitors.models import CheckResult, MonitoredTable

pytestmark = pytest.mark.django_db


def test_runchecks_refuses_a_stored_connection_when_local_targets_are_turned_off(make_connection, settings):
    connection = make_connection()  # the test standby, on 127.0.0.1
    MonitoredTable.objects.create(connection=connection, table_name="orders", timestamp_column="created_at")
    settings.PULSE_CONNECTION_ALLOW_LOCAL = False

    call_command("runchecks", "--once", "--all", "--workers", "1", stdout=StringIO())

    results = CheckResult.objects.filter(connection=connection)
    assert {r.kind for r in results} >= {"schema_change", "volume", "freshness"}
    assert all(r.status == "error" and "PULSE_CONNECTION_ALLOW_LOCAL" in r.message for r in results)
    connection.refresh_from_db()
    assert connection.status == "error" and "PULSE_CONNECTION_ALLOW_LOCAL" in connection.last_error
