"""The dashboard's actions store what the apps' service functions store, for users with the permission."""

from datetime import timedelta

from django.urls import reverse
from django.utils import timezone

from alerts.models import Alert, AlertEvent
from connections.models import Connection
from monitors.models import CheckResult, MonitoredTable


def post(client, name, *args, data=None):
    return client.post(reverse(name, args=args), data or {})


def test_run_now_makes_the_table_due(scene, owner_browser):
    table = scene["table"]
    MonitoredTable.objects.filter(pk=table.pk).update(next_check_at=timezone.now() + timedelta(hours=1))
    response = post(owner_browser, "dashboard:table-run-now", table.pk)
    assert response.status_code == 302 and response["Location"] == reverse("dashboard:table", args=[table.pk])
    table.refresh_from_db()
    assert table.next_check_at is None


def test_pause_and_resume(scene, owner_browser):
    table = scene["table"]
    post(owner_browser, "dashboard:table-pause", table.pk)
    table.refresh_from_db()
    assert (table.is_active, table.status) == (False, "paused")
    html = owner_browser.get(reverse("dashboard:table", args=[table.pk])).content.decode()
    assert "Resume" in html and "Run now" not in html
    assert post(owner_browser, "dashboard:table-run-now", table.pk).status_code == 400
    post(owner_browser, "dashboard:table-resume", table.pk)
    table.refresh_from_db()
    assert (table.is_active, table.status, table.next_check_at) == (True, "unknown", None)


def test_rebaseline_restarts_training_and_resolves_the_volume_alert(scene, owner_browser):
    before = timezone.now()
    post(owner_browser, "dashboard:table-rebaseline", scene["table"].pk)
    table = MonitoredTable.objects.get(pk=scene["table"].pk)
    assert table.baseline_since >= before and table.backfilled_at is None
    alert = Alert.objects.get(pk=scene["alert"].pk)
    assert alert.status == "resolved"
    assert alert.events.filter(kind="resolved", message__contains="rebaselined").exists()


def test_mark_expected_marks_an_anomalous_result(scene, owner_browser):
    result = CheckResult.objects.filter(table=scene["table"], is_anomaly=True, marked_expected=False).first()
    post(owner_browser, "dashboard:result-mark-expected", scene["table"].pk, result.pk)
    result.refresh_from_db()
    assert result.marked_expected


def test_thresholds_are_saved(scene, owner_browser):
    data = {
        "freshness_threshold_minutes": 90,
        "check_interval_seconds": 600,
        "failure_threshold": 3,
        "sensitivity": 4.5,
        "direction": "drop",
        "seasonality": "hour_of_day",
        "min_relative_change": 0.1,
        "min_absolute_change": 5,
    }
    response = post(owner_browser, "dashboard:table-thresholds", scene["table"].pk, data=data)
    assert response.status_code == 302
    table = MonitoredTable.objects.get(pk=scene["table"].pk)
    assert {field: getattr(table, field) for field in data} == data


def test_acknowledge_records_who_did_it_and_returns_to_the_page(scene, owner_browser, owner):
    alert = scene["alert"]
    page = reverse("dashboard:table", args=[scene["table"].pk])
    response = post(owner_browser, "dashboard:alert-acknowledge", alert.pk, data={"next": page})
    assert response["Location"] == page
    alert.refresh_from_db()
    assert alert.status == "acknowledged"
    assert AlertEvent.objects.get(alert=alert, kind="acknowledged").actor == owner
    again = post(owner_browser, "dashboard:alert-acknowledge", alert.pk)
    assert again.status_code == 400 and b"already acknowledged" in again.content


def test_snooze_for_an_hour_a_day_or_until_a_time(scene, owner_browser):
    alert = scene["alert"]
    before = timezone.now()
    post(owner_browser, "dashboard:alert-snooze", alert.pk, data={"duration": "60"})
    alert.refresh_from_db()
    assert timedelta(minutes=59) < alert.snoozed_until - before < timedelta(minutes=61)
    post(owner_browser, "dashboard:alert-snooze", alert.pk, data={"duration": "1440"})
    alert.refresh_from_db()
    assert timedelta(hours=23) < alert.snoozed_until - before < timedelta(hours=25)
    owner_browser.cookies["pulse_tz"] = "Asia/Tokyo"  # "until" is read in the viewer's time zone
    near = (timezone.now() + timedelta(days=2)).astimezone(timezone.get_fixed_timezone(9 * 60))
    post(
        owner_browser,
        "dashboard:alert-snooze",
        alert.pk,
        data={"duration": "until", "until": near.strftime("%Y-%m-%dT%H:%M")},
    )
    alert.refresh_from_db()
    assert abs(alert.snoozed_until - near.replace(second=0, microsecond=0)) < timedelta(seconds=1)
    assert alert.events.filter(kind="snoozed").count() == 3


def test_resolve(scene, owner_browser):
    post(owner_browser, "dashboard:alert-resolve", scene["alert"].pk)
    assert Alert.objects.get(pk=scene["alert"].pk).status == "resolved"


def test_connection_test_probes_the_replica_and_records_the_outcome(make_connection, owner_browser):
    connection = make_connection()
    Connection.objects.filter(pk=connection.pk).update(status="error", last_error="old")
    response = post(owner_browser, "dashboard:connection-test", connection.pk)
    assert response.status_code == 302
    connection.refresh_from_db()
    assert (connection.status, connection.last_error) == ("ok", "")
    page = owner_browser.get(response["Location"]).content.decode()
    assert "reachable, in recovery" in page
