"""The list serializers' output (common.api.ReadPlanMixin) is exactly DRF's generic output: same keys in the same
order, same values, in UTC and in another active time zone, with empty fields, ids and the badge URL."""

import zoneinfo
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework import serializers
from rest_framework.test import APIRequestFactory

from alerts.api.serializers import AlertSerializer
from alerts.models import Alert
from monitors.api.serializers import CheckResultSerializer
from monitors.models import CheckResult, MonitoredTable
from pulse_project.views import TableSerializer

pytestmark = pytest.mark.django_db


def generic(serializer_class):
    """The same serializer, written by DRF's own Serializer.to_representation."""
    return type("Generic", (serializer_class,), {"to_representation": serializers.ModelSerializer.to_representation})


def both(serializer_class, rows, context=None):
    fast = serializer_class(rows, many=True, context=dict(context or {})).data
    slow = generic(serializer_class)(rows, many=True, context=dict(context or {})).data
    return [list(row.items()) for row in fast], [list(row.items()) for row in slow]


@pytest.fixture
def rows(make_connection):
    shop = make_connection()
    now = timezone.now()
    tables = [
        MonitoredTable.objects.create(connection=shop, table_name="orders", last_checked_at=now),
        MonitoredTable.objects.create(connection=shop, table_name="items", sensitivity=2.5, is_active=False),
    ]
    results = [
        CheckResult.objects.create(
            connection=shop,
            table=tables[0],
            kind="volume",
            status="pass",
            observed_value=12.5,
            expected_lower=1,
            expected_upper=None,
            bucket_start=now.replace(minute=0),
            started_at=now,
            details={"rows": [1, 2], "note": "é"},
            is_anomaly=True,
            duration_ms=7,
        ),
        CheckResult.objects.create(
            connection=shop,
            table=None,
            kind="replication_lag",
            status="error",
            observed_value=None,
            started_at=now - timedelta(microseconds=1),
            message="x",
        ),
    ]
    alerts = [
        Alert.objects.create(
            connection=shop,
            table=tables[0],
            kind="freshness",
            message="late",
            opened_at=now,
            last_seen_at=now,
            snoozed_until=now + timedelta(hours=1),
        ),
        Alert.objects.create(
            connection=shop,
            table=None,
            kind="replication_lag",
            message="lag",
            opened_at=now,
            last_seen_at=now,
            status=Alert.Status.RESOLVED,
            resolved_at=now,
        ),
    ]
    return tables, results, alerts


@pytest.mark.parametrize("zone", [None, "Asia/Kolkata", "America/St_Johns"])
def test_the_output_is_drfs(rows, owner, zone):
    tables, results, alerts = rows
    request = APIRequestFactory().get("/api/tables")
    request.user = owner
    if zone:
        timezone.activate(zoneinfo.ZoneInfo(zone))
    try:
        for serializer_class, objects, context in [
            (TableSerializer, tables, {"request": request}),
            (CheckResultSerializer, results, None),
            (AlertSerializer, alerts, None),
        ]:
            fast, slow = both(serializer_class, objects, context)
            assert fast == slow
            assert any(value is None for row in fast for _, value in row)  # empty fields covered
        opened_at = dict(both(AlertSerializer, alerts)[0][0])["opened_at"]
        assert opened_at.endswith({None: "Z", "Asia/Kolkata": "+05:30", "America/St_Johns": "-03:30"}[zone])
    finally:
        timezone.deactivate()


def test_values_not_yet_read_back_from_the_database_are_written_as_drf_writes_them(rows, owner):
    """An object built in Python (before a save reads anything back) may hold a string for a time or a number."""
    tables = rows[0]
    request = APIRequestFactory().get("/api/tables")
    request.user = owner
    table = tables[0]
    table.last_checked_at, table.sensitivity, table.failure_threshold = "2026-01-02T03:04:05Z", "2.5", "3"
    fast, slow = both(TableSerializer, [table], {"request": request})
    assert fast == slow and dict(fast[0])["sensitivity"] == 2.5
    assert dict(fast[0])["last_checked_at"] == "2026-01-02T03:04:05Z"
