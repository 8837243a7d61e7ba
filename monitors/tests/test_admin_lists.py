"""The admin's lists and result page show values as people read them (the check registry's formatter), with
a status label and the result's message; raw floats never reach the page."""

from datetime import timedelta

import pytest
from django.utils import timezone

from monitors.models import Check, CheckResult, MonitoredTable

pytestmark = pytest.mark.django_db


@pytest.fixture
def table(make_connection):
    return MonitoredTable.objects.create(
        connection=make_connection(),
        table_name="inventory_snapshots",
        timestamp_column="counted_at",
        freshness_threshold_minutes=90,
        check_interval_seconds=7200,
    )


@pytest.fixture
def results(table):
    now = timezone.now()
    common = {"connection": table.connection, "table": table, "started_at": now}
    freshness = CheckResult.objects.create(
        **common,
        kind="freshness",
        status="fail",
        observed_value=7739.879,
        expected_upper=3600.0,
        message="newest counted_at is 129 min old (limit 60 min)",
    )
    volume = CheckResult.objects.create(
        **common,
        kind="volume",
        status="pass",
        observed_value=1247.0,
        expected_lower=915.2758163410024,
        expected_upper=1596.9381,
        message="1,247 rows: within the expected band",
    )
    lag = CheckResult.objects.create(
        connection=table.connection,
        kind="replication_lag",
        status="pass",
        observed_value=334.9738082796778,
        started_at=now - timedelta(seconds=5),
        message="replica is 5 min behind",
    )
    return freshness, volume, lag


def test_the_results_list_shows_values_in_their_unit_the_band_and_the_message(client, staff, results):
    client.force_login(staff)
    page = client.get("/admin/monitors/checkresult/").content.decode()
    assert "2 h 8 min" in page and "7739.879" not in page  # freshness: a duration, not seconds
    assert "≤ 1 h 0 min" in page and "3600.0" not in page
    assert "915 – 1,597" in page and "915.2758163410024" not in page  # volume band: whole rows
    assert "1,247" in page and "1247.0" not in page
    assert "5 min" in page and "334.9738082796778" not in page  # replication lag on its connection
    assert "column-message" in page and "newest counted_at is 129 min old (limit 60 min)" in page
    assert 'class="pulse-status pulse-bad">Fail<' in page and 'class="pulse-status pulse-good">Pass<' in page


def test_the_result_page_shows_the_formatted_value_and_band(client, staff, results):
    freshness, volume, _ = results
    client.force_login(staff)
    page = client.get(f"/admin/monitors/checkresult/{volume.id}/change/").content.decode()
    assert "1,247" in page and "915 – 1,597" in page and "within the expected band" in page
    assert "915.2758163410024" not in page and "1247.0" not in page
    page = client.get(f"/admin/monitors/checkresult/{freshness.id}/change/").content.decode()
    assert "2 h 8 min" in page and "7739.879" not in page


def test_the_tables_list_shows_intervals_and_freshness_limits_as_durations(client, staff, table):
    client.force_login(staff)
    page = client.get("/admin/monitors/monitoredtable/").content.decode()
    assert "1 h 30 min" in page  # freshness_threshold_minutes=90
    assert "2 h 0 min" in page and "7200" not in page  # check_interval_seconds
    assert 'class="pulse-status pulse-neutral">Unknown<' in page


def test_the_checks_list_shows_limits_in_the_kinds_unit(client, staff, table):
    Check.objects.create(table=table, kind="null_rate", column="sku", max_value=0.125)
    Check.objects.create(table=table, kind="row_count", min_value=25000)
    client.force_login(staff)
    page = client.get("/admin/monitors/check/").content.decode()
    assert "≤ 12.5% NULL" in page and "0.125" not in page
    assert "≥ 25,000" in page and "25000.0" not in page


def test_the_table_form_sets_a_sensitivity_preset_beside_the_numeric_sensitivity(client, staff, table):
    client.force_login(staff)
    url = f"/admin/monitors/monitoredtable/{table.id}/change/"
    page = client.get(url).content.decode()
    assert 'name="sensitivity_preset"' in page and 'name="sensitivity"' in page
    assert '<option value="high">High</option>' in page
    form = {
        "connection": table.connection_id,
        "schema_name": table.schema_name,
        "table_name": table.table_name,
        "timestamp_column": table.timestamp_column,
        "freshness_threshold_minutes": 90,
        "check_interval_seconds": 7200,
        "failure_threshold": 2,
        "sensitivity": 3.5,
        "sensitivity_preset": "low",
        "direction": "both",
        "seasonality": "auto",
        "min_relative_change": 0,
        "min_absolute_change": 3,
        "is_active": "on",
        "checks-TOTAL_FORMS": 0,
        "checks-INITIAL_FORMS": 0,
    }
    assert client.post(url, form).status_code == 302
    table.refresh_from_db()
    assert table.sensitivity_preset == "low"
    assert client.post(url, {**form, "sensitivity_preset": "extreme"}).status_code == 200
    table.refresh_from_db()
    assert table.sensitivity_preset == "low"
