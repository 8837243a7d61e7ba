"""The pages read what a real check run records: runchecks' runner on the hot standby, then the pages."""

import re

import pytest
from django.test import Client
from django.urls import reverse

from alerts.intake import results_intake
from alerts.models import Alert
from monitors.models import MonitoredTable
from monitors.runner import CheckRunner


@pytest.mark.django_db(transaction=True)
def test_pages_show_what_a_real_check_run_recorded(make_connection, owner):
    connection = make_connection()
    fresh = MonitoredTable.objects.create(connection=connection, table_name="orders", timestamp_column="created_at")
    stale = MonitoredTable.objects.create(
        connection=connection, table_name="stale_events", timestamp_column="happened_at", failure_threshold=1
    )
    runner = CheckRunner(on_recorded=results_intake, workers=1)
    try:
        runner.cycle(force=True)
    finally:
        runner.stop()
    freshness_alert = Alert.objects.get(table=stale, kind="freshness", status="open")

    client = Client()
    client.force_login(owner)
    overview = client.get(reverse("dashboard:overview")).content.decode()
    states = dict(
        (table_id, state) for state, table_id in re.findall(r'<tr class="row state-(\w+)" data-table="(\d+)"', overview)
    )
    assert states[str(stale.pk)] == "failing"
    assert states[str(fresh.pk)] != "failing"
    assert next(iter(states)) == str(stale.pk)  # failing first
    stale_row = overview.split(f'data-table="{stale.pk}"', 1)[1].split("</tr>", 1)[0]
    assert re.search(r'<td class="num">3 d \d+ h</td>', stale_row)  # the newest row is three days old

    page = client.get(reverse("dashboard:table", args=[stale.pk])).content.decode()
    assert 'class="chart limit-chart"' in page  # the freshness chart
    assert f'data-alert="{freshness_alert.pk}"' in page
    assert re.search(r"<td>Schema change</td>.*?>3 columns<", page, re.S)
    fresh_page = client.get(reverse("dashboard:table", args=[fresh.pk])).content.decode()
    assert 'class="chart volume-chart"' in fresh_page and '<circle class="point"' in fresh_page

    alerts = client.get(reverse("dashboard:alerts")).content.decode()
    assert f'data-alert="{freshness_alert.pk}"' in alerts and "stale_events" in alerts
