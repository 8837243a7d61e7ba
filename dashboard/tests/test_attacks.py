"""Attacks on the dashboard: other teams' objects, missing permissions, missing CSRF tokens, bad input.

One test per attack; each checks that nothing was stored."""

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from alerts.models import Alert, AlertEvent
from connections.models import Connection
from monitors.models import CheckResult, MonitoredTable

TABLE_ACTIONS = ["table-run-now", "table-pause", "table-resume", "table-rebaseline", "table-thresholds"]
ALERT_ACTIONS = ["alert-acknowledge", "alert-resolve", "alert-snooze"]
GOOD_SNOOZE = {"duration": "60"}
GOOD_THRESHOLDS = {
    "freshness_threshold_minutes": 5,
    "check_interval_seconds": 60,
    "failure_threshold": 1,
    "sensitivity": 2,
    "direction": "both",
    "seasonality": "none",
    "min_relative_change": 0,
    "min_absolute_change": 0,
}


def snapshot(scene):
    """Everything an action could change, for the tables, alerts and connections of both teams."""
    return (
        list(MonitoredTable.objects.order_by("pk").values()),
        list(Alert.objects.order_by("pk").values()),
        AlertEvent.objects.count(),
        list(Connection.objects.order_by("pk").values("status", "last_error", "last_checked_at")),
        CheckResult.objects.filter(marked_expected=True).count(),
    )


def action_urls(table, alert, connection, anomaly):
    urls = [reverse(f"dashboard:{name}", args=[table.pk]) for name in TABLE_ACTIONS]
    urls += [reverse(f"dashboard:{name}", args=[alert.pk]) for name in ALERT_ACTIONS]
    urls.append(reverse("dashboard:result-mark-expected", args=[table.pk, anomaly.pk]))
    urls.append(reverse("dashboard:connection-test", args=[connection.pk]))
    return urls


def body_for(url):
    return GOOD_THRESHOLDS if "thresholds" in url else GOOD_SNOOZE if "snooze" in url else {}


def foreign_anomaly(scene):
    return CheckResult.objects.filter(table=scene["foreign_table"], is_anomaly=True, marked_expected=False).first()


def test_another_teams_pages_are_not_found(scene, owner_browser):
    for url in (
        reverse("dashboard:table", args=[scene["foreign_table"].pk]),
        reverse("dashboard:connection", args=[scene["foreign_connection"].pk]),
    ):
        assert owner_browser.get(url).status_code == 404, url
    assert b"secret_orders" not in owner_browser.get(reverse("dashboard:alerts")).content
    assert b"secret_orders" not in owner_browser.get(reverse("dashboard:overview")).content


def test_every_action_on_another_teams_objects_is_not_found_and_changes_nothing(scene, owner_browser):
    before = snapshot(scene)
    urls = action_urls(
        scene["foreign_table"], scene["foreign_alert"], scene["foreign_connection"], foreign_anomaly(scene)
    )
    for url in urls:
        assert owner_browser.post(url, body_for(url)).status_code == 404, url
    assert snapshot(scene) == before


def test_marking_another_tables_result_through_ones_own_table_is_not_found(scene, owner_browser):
    before = snapshot(scene)
    url = reverse("dashboard:result-mark-expected", args=[scene["table"].pk, foreign_anomaly(scene).pk])
    assert owner_browser.post(url).status_code == 404
    assert snapshot(scene) == before


def test_actions_without_permission_are_forbidden_and_change_nothing(scene, member_browser):
    before = snapshot(scene)
    anomaly = CheckResult.objects.filter(table=scene["table"], is_anomaly=True).first()
    for url in action_urls(scene["table"], scene["alert"], scene["connection"], anomaly):
        assert member_browser.post(url, body_for(url)).status_code == 403, url
    assert snapshot(scene) == before


def test_actions_without_a_csrf_token_are_refused(scene, owner):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    before = snapshot(scene)
    anomaly = CheckResult.objects.filter(table=scene["table"], is_anomaly=True).first()
    for url in action_urls(scene["table"], scene["alert"], scene["connection"], anomaly):
        assert client.post(url, body_for(url)).status_code == 403, url
    assert snapshot(scene) == before
    client.get(reverse("dashboard:alerts"))  # sets the CSRF cookie; with its token the same post works
    token = client.cookies["csrftoken"].value
    url = reverse("dashboard:alert-acknowledge", args=[scene["alert"].pk])
    assert client.post(url, {"csrfmiddlewaretoken": token}).status_code == 302
    assert Alert.objects.get(pk=scene["alert"].pk).status == "acknowledged"


def test_anonymous_actions_go_to_login_and_change_nothing(scene):
    before = snapshot(scene)
    anomaly = CheckResult.objects.filter(table=scene["table"], is_anomaly=True).first()
    for url in action_urls(scene["table"], scene["alert"], scene["connection"], anomaly):
        response = Client().post(url, body_for(url))
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/"), url
    assert snapshot(scene) == before


def test_actions_refuse_get(scene, owner_browser):
    before = snapshot(scene)
    anomaly = CheckResult.objects.filter(table=scene["table"], is_anomaly=True).first()
    for url in action_urls(scene["table"], scene["alert"], scene["connection"], anomaly):
        assert owner_browser.get(url).status_code == 405, url
    assert snapshot(scene) == before


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({}, "duration: This field is required."),
        ({"duration": "forever"}, "duration: Select a valid choice."),
        ({"duration": "until"}, "until: Give the time the snooze ends."),
        ({"duration": "until", "until": "yesterday"}, "until: Enter a valid date/time."),
        ({"duration": "until", "until": "2001-01-01T10:00"}, "until: Must be in the future."),
        ({"duration": "until", "until": "2999-01-01T10:00"}, "until: Must be at most 30 days ahead."),
        ({"duration": "until", "until": "2026-13-45T99:99"}, "until: Enter a valid date/time."),
    ],
)
def test_bad_snooze_is_refused_naming_the_problem(scene, owner_browser, data, problem):
    before = snapshot(scene)
    response = owner_browser.post(reverse("dashboard:alert-snooze", args=[scene["alert"].pk]), data)
    assert response.status_code == 400
    assert problem in response.content.decode()
    assert snapshot(scene) == before


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"sensitivity": "nan"}, "sensitivity: Enter a number."),
        ({"sensitivity": "inf"}, "sensitivity: Enter a number."),
        ({"sensitivity": "0.5"}, "sensitivity: Ensure this value is greater than or equal to 1.0."),
        ({"failure_threshold": "0"}, "failure_threshold: Ensure this value is greater than or equal to 1."),
        ({"freshness_threshold_minutes": "-5"}, "freshness_threshold_minutes: Ensure this value is greater than"),
        ({"check_interval_seconds": "9"}, "check_interval_seconds: Ensure this value is greater than or equal to 10"),
        ({"direction": "sideways"}, "direction: Select a valid choice."),
        ({"min_absolute_change": ""}, "min_absolute_change: This field is required."),
        ({"check_interval_seconds": "1" * 400}, "check_interval_seconds:"),
    ],
)
def test_bad_thresholds_are_refused_naming_the_field(scene, owner_browser, change, problem):
    before = snapshot(scene)
    url = reverse("dashboard:table-thresholds", args=[scene["table"].pk])
    response = owner_browser.post(url, {**GOOD_THRESHOLDS, **change})
    assert response.status_code == 400
    assert problem in response.content.decode().replace("&#x27;", "'")
    assert snapshot(scene) == before


def test_marking_a_normal_result_expected_is_refused(scene, owner_browser):
    before = snapshot(scene)
    normal = CheckResult.objects.filter(table=scene["table"], kind="volume", is_anomaly=False).first()
    url = reverse("dashboard:result-mark-expected", args=[scene["table"].pk, normal.pk])
    response = owner_browser.post(url)
    assert response.status_code == 400 and b"only results judged anomalous" in response.content
    assert snapshot(scene) == before


@pytest.mark.parametrize(
    "query",
    [
        {"connection": "abc"},
        {"connection": "-1"},
        {"connection": "9" * 40},
        {"status": "on-fire"},
        {"name": "x" * 101},
        {"name": "a\x00b"},
    ],
)
def test_bad_overview_filters_are_refused(scene, owner_browser, query):
    response = owner_browser.get(reverse("dashboard:overview"), query)
    assert response.status_code == 400
    assert next(iter(query)) in response.content.decode()


@pytest.mark.parametrize("at", ["soon", "2026-02-30T10:00", "9999-01-01T00:00"])
def test_bad_chart_time_is_refused(scene, owner_browser, at):
    response = owner_browser.get(reverse("dashboard:table", args=[scene["table"].pk]), {"at": at})
    assert response.status_code == 400 and b"at:" in response.content


def test_next_cannot_lead_off_site(scene, owner_browser):
    for target in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
        url = reverse("dashboard:alert-snooze", args=[scene["alert"].pk])
        response = owner_browser.post(url, {**GOOD_SNOOZE, "next": target})
        assert response["Location"] == reverse("dashboard:alerts"), target


def test_a_hostile_time_zone_cookie_falls_back_to_pulses(scene, owner_browser):
    for zone in ("../../etc/passwd", "Not/AZone", "x" * 500, "\x00"):
        owner_browser.cookies["pulse_tz"] = zone
        response = owner_browser.get(reverse("dashboard:table", args=[scene["table"].pk]))
        assert response.status_code == 200 and b"Times in UTC." in response.content


def test_snooze_until_a_time_beyond_the_limit_leaves_an_earlier_snooze(scene, owner_browser):
    until = timezone.now() + timedelta(hours=2)
    Alert.objects.filter(pk=scene["alert"].pk).update(snoozed_until=until)
    url = reverse("dashboard:alert-snooze", args=[scene["alert"].pk])
    assert owner_browser.post(url, {"duration": "until", "until": "2999-01-01T00:00"}).status_code == 400
    assert Alert.objects.get(pk=scene["alert"].pk).snoozed_until == until
