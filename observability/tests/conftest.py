"""Two teams' connections, tables and results, stored directly (no replica needed: metrics and badges only read)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from connections.models import Connection
from monitors.models import CheckResult, MonitoredTable


@pytest.fixture
def world(teams):
    acme, globex = teams
    now = timezone.now()
    shop = Connection.objects.create(
        team=acme,
        name="shop",
        host="shop.invalid",
        database="shop",
        username="pulse",
        status="ok",
        last_checked_at=now,
        max_queries_per_hour=1000,
    )
    shop.set_password("hunter2-never-shown")
    shop.save()
    orders = MonitoredTable.objects.create(connection=shop, table_name="orders", status="failing", last_checked_at=now)
    customers = MonitoredTable.objects.create(connection=shop, table_name="customers", status="healthy")
    ledger = Connection.objects.create(
        team=globex, name="ledger", host="ledger.invalid", database="ledger", username="pulse", status="error"
    )
    entries = MonitoredTable.objects.create(connection=ledger, table_name="entries", status="healthy")
    for minutes, age in ((30, 3000.0), (5, 7200.5)):
        CheckResult.objects.create(
            connection=shop,
            table=orders,
            kind="freshness",
            status="fail",
            observed_value=age,
            expected_upper=3600,
            started_at=now - timedelta(minutes=minutes),
        )
    CheckResult.objects.create(  # a later run that could not measure: the metric keeps the last measured age
        connection=shop, table=orders, kind="freshness", status="error", started_at=now - timedelta(minutes=1)
    )
    CheckResult.objects.create(
        connection=shop,
        table=orders,
        kind="volume",
        status="pass",
        observed_value=120,
        expected_lower=80.5,
        expected_upper=160.25,
        started_at=now - timedelta(minutes=5),
    )
    CheckResult.objects.create(
        connection=shop,
        kind="replication_lag",
        status="pass",
        observed_value=4.5,
        started_at=now - timedelta(minutes=2),
    )
    return {"shop": shop, "orders": orders, "customers": customers, "ledger": ledger, "entries": entries, "now": now}
