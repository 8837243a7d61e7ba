"""The dashboard's pages: login, the overview, the table, alerts and connection pages, the live endpoint."""

import re
from datetime import timedelta

from django.test import Client
from django.urls import reverse

from alerts.models import Alert
from monitors.models import Check, CheckResult, MonitoredTable


def test_anonymous_visitor_is_sent_to_login():
    response = Client().get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/")


def test_login_page_logs_in_and_leads_to_the_overview(db, owner):
    page = Client().get("/accounts/login/")
    assert page.status_code == 200 and b'name="password"' in page.content
    client = Client()
    response = client.post("/accounts/login/", {"username": "owner", "password": "pw-owner"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200


def test_overview_lists_connections_and_tables_failing_first(scene, owner_browser):
    response = owner_browser.get(reverse("dashboard:overview"))
    html = response.content.decode()
    assert "<title>1 failing · Pulse</title>" in html
    rows = re.findall(r'<tr class="row state-(\w+)" data-table="(\d+)"', html)
    assert rows == [("failing", str(scene["table"].pk)), ("healthy", str(scene["customers"].pk))]
    assert "shop-replica" in html and "globex-replica" not in html and "secret_orders" not in html
    assert f'data-connection="{scene["connection"].pk}"' in html
    assert f'src="/tables/{scene["table"].pk}/sparkline.svg"' in html
    assert "1 open" in html


def test_overview_filters_by_status_name_and_connection(scene, owner_browser):
    failing = owner_browser.get("/", {"status": "healthy"}).content.decode()
    assert "customers" in failing and f'data-table="{scene["table"].pk}"' not in failing
    by_name = owner_browser.get("/", {"name": "ORD"}).content.decode()
    assert f'data-table="{scene["table"].pk}"' in by_name and f'data-table="{scene["customers"].pk}"' not in by_name
    other = owner_browser.get("/", {"connection": scene["foreign_connection"].pk}).content.decode()
    assert "No tables match." in other


def test_overview_shows_a_snoozed_table_as_snoozed(scene, owner_browser):
    Alert.objects.filter(pk=scene["alert"].pk).update(snoozed_until=scene["now"] + timedelta(hours=1))
    html = owner_browser.get("/").content.decode()
    assert f'<tr class="row state-snoozed" data-table="{scene["table"].pk}"' in html
    assert "<title>Pulse</title>" in html


def test_table_page_draws_band_anomalies_and_the_open_alert(scene, owner_browser):
    html = owner_browser.get(reverse("dashboard:table", args=[scene["table"].pk])).content.decode()
    assert '<path class="band"' in html
    assert html.count('<circle class="anomaly"') == 2
    assert "a drop to zero" in html  # the alert's message and the results
    assert 'class="chart volume-chart"' in html and 'class="chart limit-chart"' in html  # volume and freshness charts
    assert reverse("dashboard:alert-acknowledge", args=[scene["alert"].pk]) in html
    assert "Run now" in html and "Save thresholds" in html
    anomalies = html.split('<table class="list anomalies">', 1)[1].split("</table>", 1)[0]
    assert anomalies.count("Mark expected") == 2 and anomalies.count("marked expected") == 1  # the spike
    schema_row = html.split("<td>Schema change</td>", 1)[1].split("</tr>", 1)[0]
    assert ">3 columns<" in schema_row  # the latest schema check, counted in columns
    assert "public.orders changed: added: note (text)" in html  # on the schema change timeline


def test_table_page_at_an_alert_time_marks_it(scene, owner_browser):
    at = (scene["now"] - timedelta(days=3)).isoformat()
    html = owner_browser.get(reverse("dashboard:table", args=[scene["table"].pk]), {"at": at}).content.decode()
    assert '<g class="mark">' in html and ">alert<" in html


def test_member_without_permission_sees_no_action_buttons(scene, member_browser):
    html = member_browser.get(reverse("dashboard:table", args=[scene["table"].pk])).content.decode()
    assert '<path class="band"' in html
    assert "Run now" not in html and "Save thresholds" not in html and "Acknowledge" not in html


def test_alerts_page_groups_alerts_with_their_timeline(scene, owner_browser):
    html = owner_browser.get(reverse("dashboard:alerts")).content.decode()
    assert f'data-alert="{scene["alert"].pk}"' in html
    assert f'data-alert="{scene["foreign_alert"].pk}"' not in html
    assert "ev-opened" in html
    assert f"{reverse('dashboard:table', args=[scene['table'].pk])}?at=" in html


def test_connection_page_shows_guardrails_and_lag(scene, owner_browser):
    html = owner_browser.get(reverse("dashboard:connection", args=[scene["connection"].pk])).content.decode()
    assert "Query budget (this hour)" in html and "0 of 10,000" in html
    assert "Sessions in use" in html and "0 of 2" in html
    assert "Circuit breaker" in html
    assert 'class="chart limit-chart"' in html
    assert "Test connection" in html


def test_live_endpoint_reports_states_of_the_users_teams_only(scene, owner_browser):
    data = owner_browser.get(reverse("dashboard:live")).json()
    assert data["failing"] == 1
    assert data["tables"][str(scene["table"].pk)]["state"] == "failing"
    assert data["tables"][str(scene["table"].pk)]["alerts"] == "1 open"
    assert str(scene["foreign_table"].pk) not in data["tables"]
    assert data["alerts"] == {str(scene["alert"].pk): {"state": "open"}}
    MonitoredTable.objects.filter(pk=scene["table"].pk).update(status="healthy")
    assert owner_browser.get(reverse("dashboard:live")).json()["failing"] == 0


def test_live_endpoint_needs_login(db):
    assert Client().get(reverse("dashboard:live")).status_code == 302


def test_sparkline_draws_the_last_day_of_volume_with_a_break_where_none_came(scene, owner_browser):
    top = scene["now"].replace(minute=0, second=0, microsecond=0)
    CheckResult.objects.filter(table=scene["table"], kind="volume", bucket_start=top - timedelta(hours=6)).delete()
    response = owner_browser.get(reverse("dashboard:table-sparkline", args=[scene["table"].pk]))
    assert response["Content-Type"] == "image/svg+xml"
    svg = response.content.decode()
    assert svg.startswith('<svg class="spark" xmlns="http://www.w3.org/2000/svg"') and 'stroke="#2563eb"' in svg
    assert svg.count("M") == 2 and svg.count("L") == 21  # 24 hourly buckets, one missing: two runs
    foreign = reverse("dashboard:table-sparkline", args=[scene["foreign_table"].pk])
    assert owner_browser.get(foreign).status_code == 404


def test_table_page_lists_configured_checks_with_latest_value_and_bounds(scene, owner_browser):
    table = scene["table"]
    check = Check.objects.create(table=table, kind="row_count", min_value=1000, max_value=5000)
    CheckResult.objects.create(
        connection=table.connection,
        table=table,
        check_definition=check,
        kind="row_count",
        status="fail",
        observed_value=12,
        expected_lower=1000,
        expected_upper=5000,
        started_at=scene["now"],
        message="row count 12 is below the minimum 1,000",
    )
    html = owner_browser.get(reverse("dashboard:table", args=[table.pk])).content.decode()
    row = html.split("Row count", 1)[1].split("</tr>", 1)[0]
    assert "≥ 1000.0" in row and "≤ 5000.0" in row and ">12<" in row and "1,000 – 5,000" in row
    assert "row count 12 is below the minimum 1,000" in html  # among the recent results
