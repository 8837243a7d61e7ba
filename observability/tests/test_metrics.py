from datetime import timedelta

import pytest
from django.db import connection as pulse_db
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from alerts.models import Alert, Notification
from connections.guardrails.share import time_share_charge
from connections.models import Connection, QueryAllowance
from monitors.models import CheckResult, MonitoredTable, SchedulerHeartbeat

pytestmark = pytest.mark.django_db
TOKEN = "metrics-token-0123456789abcdef"


@pytest.fixture(autouse=True)
def metrics_token(settings):
    settings.PULSE_METRICS_TOKEN = TOKEN


def scrape(client) -> dict:
    """{metric name: {frozenset(labels.items()): value}} of one authorised scrape."""
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[frozenset(sample.labels.items())] = sample.value
    return samples


def labels(**values):
    return frozenset(values.items())


def test_per_table_metrics_come_from_the_latest_measured_results(client, world):
    samples = scrape(client)
    orders = {"team": "acme", "connection": "shop", "schema": "public", "table": "orders"}
    assert samples["pulse_table_status"][labels(**orders, status="failing")] == 1
    assert samples["pulse_table_status"][labels(**orders | {"table": "customers"}, status="healthy")] == 1
    assert samples["pulse_table_newest_row_age_seconds"][labels(**orders)] == 7200.5
    assert samples["pulse_table_freshness_limit_seconds"][labels(**orders)] == 3600
    assert samples["pulse_table_volume_rows"][labels(**orders)] == 120
    assert samples["pulse_table_volume_expected_lower_rows"][labels(**orders)] == 80.5
    assert samples["pulse_table_volume_expected_upper_rows"][labels(**orders)] == 160.25
    assert samples["pulse_table_last_check_timestamp_seconds"][labels(**orders)] == pytest.approx(
        world["now"].timestamp(), abs=0.001
    )
    # Never measured: no sample rather than a made-up zero.
    assert labels(**orders | {"table": "customers"}) not in samples["pulse_table_newest_row_age_seconds"]


def test_per_connection_metrics_show_lag_and_this_hours_budget(client, world):
    now = timezone.now()
    QueryAllowance.objects.create(
        connection=world["shop"],
        window_start=now.replace(minute=0, second=0, microsecond=0),
        queries_used=250,
        next_query_at=now,
    )
    QueryAllowance.objects.create(  # an earlier hour's use no longer counts
        connection=world["ledger"], window_start=now - timedelta(hours=2), queries_used=999, next_query_at=now
    )
    samples = scrape(client)
    shop, ledger = labels(team="acme", connection="shop"), labels(team="globex", connection="ledger")
    assert samples["pulse_connection_status"][labels(team="acme", connection="shop", status="ok")] == 1
    assert samples["pulse_connection_status"][labels(team="globex", connection="ledger", status="error")] == 1
    assert samples["pulse_connection_replication_lag_seconds"][shop] == 4.5
    assert samples["pulse_connection_query_budget"][shop] == 1000
    assert samples["pulse_connection_queries_used"][shop] == 250
    assert samples["pulse_connection_budget_used_ratio"][shop] == 0.25
    assert samples["pulse_connection_queries_used"][ledger] == 0


def test_per_connection_metrics_show_the_replica_time_share(client, world):
    world["shop"].replica_time_share_percent = 4
    world["shop"].save(update_fields=["replica_time_share_percent"])
    time_share_charge(connection=world["shop"], spent_ms=1500)
    samples = scrape(client)
    shop, ledger = labels(team="acme", connection="shop"), labels(team="globex", connection="ledger")
    assert samples["pulse_connection_replica_time_share_limit_ratio"][shop] == 0.04
    assert samples["pulse_connection_replica_time_seconds_this_hour"][shop] == 1.5
    assert 0.02 < samples["pulse_connection_replica_time_share_used_ratio"][shop] <= 0.025  # 1.5 s of a minute
    assert samples["pulse_connection_replica_time_seconds_this_hour"][ledger] == 0  # never charged


def test_totals_count_runs_alerts_notifications_and_the_heartbeat(client, world, make_channel, event_notification):
    now = timezone.now()
    CheckResult.objects.create(  # older than 15 minutes: not counted
        connection=world["shop"],
        table=world["orders"],
        kind="volume",
        status="pass",
        started_at=now - timedelta(minutes=20),
    )
    alert = Alert.objects.create(
        connection=world["shop"], table=world["orders"], kind="freshness", opened_at=now, last_seen_at=now
    )
    Alert.objects.create(
        connection=world["shop"],
        table=world["customers"],
        kind="volume",
        opened_at=now,
        last_seen_at=now,
        snoozed_until=now + timedelta(hours=1),
    )
    Alert.objects.create(
        connection=world["shop"], kind="connection_error", status="resolved", opened_at=now, last_seen_at=now
    )
    channel = make_channel(world["shop"].team, "webhook", "http://127.0.0.1:9/hook")
    event_notification(channel, alert)
    sent = event_notification(channel, alert)
    Notification.objects.filter(pk=sent.pk).update(status="sent")
    SchedulerHeartbeat.objects.create(worker="w1", beat_at=now - timedelta(seconds=30), started_at=now)
    samples = scrape(client)
    runs = samples["pulse_check_runs_last_15m"]
    assert runs[labels(result="fail")] == 1 and runs[labels(result="error")] == 1 and runs[labels(result="pass")] == 2
    assert runs[labels(result="skipped")] == 0
    alerts = samples["pulse_open_alerts"]
    assert alerts[labels(kind="freshness", state="open")] == 1
    assert alerts[labels(kind="volume", state="snoozed")] == 1
    assert alerts[labels(kind="connection_error", state="open")] == 0  # resolved alerts are not open
    assert samples["pulse_notifications"][labels(status="pending")] == 1
    assert samples["pulse_notifications"][labels(status="sent")] == 1
    assert samples["pulse_scheduler_workers"][labels()] == 1
    assert 30 <= samples["pulse_scheduler_heartbeat_age_seconds"][labels()] < 300


def test_no_heartbeat_yet_means_no_heartbeat_age_sample(client, world):
    samples = scrape(client)
    assert "pulse_scheduler_heartbeat_age_seconds" not in samples
    assert samples["pulse_scheduler_workers"][labels()] == 0


def test_tenant_names_cannot_forge_samples_or_break_the_format(client, teams):
    hostile = 'x"} 1\npulse_forged 1\n# TYPE \\n \\" é\\'
    connection = Connection.objects.create(team=teams[0], name=hostile, host="h.invalid", database="d", username="u")
    MonitoredTable.objects.create(connection=connection, schema_name=hostile, table_name=hostile)
    samples = scrape(client)
    assert "pulse_forged" not in samples
    table = labels(team="acme", connection=hostile, schema=hostile, table=hostile, status="unknown")
    assert samples["pulse_table_status"][table] == 1


def test_a_scrape_costs_the_same_queries_for_1_or_30_tables(client, world):
    def queries():
        with CaptureQueriesContext(pulse_db) as captured:
            scrape(client)
        return len(captured)

    before = queries()
    assert before >= 6  # tables, connections, runs, alerts, notifications, heartbeat (and the session's)
    MonitoredTable.objects.bulk_create(
        MonitoredTable(connection=world["shop"], table_name=f"t{n}", status="healthy") for n in range(30)
    )
    assert queries() == before


def test_an_empty_pulse_scrapes_cleanly(client):
    samples = scrape(client)
    assert "pulse_table_status" not in samples and "pulse_connection_status" not in samples
    assert samples["pulse_notifications"][labels(status="pending")] == 0
