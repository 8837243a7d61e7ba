"""What the alert lifecycle makes of synthetic volume series, recorded through the real path with the
hand-off runchecks binds (`alerts.intake.results_intake`). The judging itself: monitors/tests/test_anomalies.py."""

import random
import uuid
from datetime import timedelta
from functools import partial

import pytest

from alerts.intake import results_intake
from alerts.lifecycle import table_rebaseline_accept
from alerts.models import Alert, Notification
from connections.models import MaintenanceWindow
from monitors.anomalies import volume_judge
from monitors.checks import Outcome
from monitors.models import MonitoredTable
from monitors.recording import TableRun, results_record
from monitors.testing import SERIES, START, day_night, seed_history, volume_table
from monitors.testing import observe as volume_observe

pytestmark = pytest.mark.django_db
observe = partial(volume_observe, on_recorded=results_intake)


@pytest.fixture
def table(make_connection):
    return volume_table(make_connection())


def test_strong_seasonality_raises_no_false_alert_over_two_weeks(table):
    rng = random.Random(7)
    MonitoredTable.objects.filter(pk=table.pk).update(failure_threshold=2)  # the default: 2 buckets in a row
    seed_history(table, hours=14 * 24, until=START, value_at=lambda at: day_night(at, rng))
    results = [
        observe(table, START + timedelta(hours=h), day_night(START + timedelta(hours=h), rng)) for h in range(14 * 24)
    ]
    assert not Alert.objects.exists()
    # Single borderline verdicts happen with Gaussian noise (~0.3 a week at 3.5); none come in pairs.
    assert [r.status for r in results].count("fail") <= 4
    last = results[-1]
    assert last.expected_lower is not None and last.expected_lower < last.observed_value < last.expected_upper
    assert last.details["seasonality"] != "none"


def test_a_drop_to_zero_opens_the_volume_alert_and_a_normal_value_resolves_it(table):
    rng = random.Random(8)
    seed_history(table, hours=14 * 24, until=START, value_at=lambda at: day_night(at, rng))
    zero = observe(table, START, 0)
    assert zero.status == "fail" and zero.is_anomaly
    assert Alert.objects.get(kind="volume").status == "open"
    observe(table, START + timedelta(hours=1), day_night(START + timedelta(hours=1), rng) * 4)
    assert Alert.objects.get(kind="volume").status == "open"
    normal = observe(table, START + timedelta(hours=2), day_night(START + timedelta(hours=2), rng))
    assert normal.status == "pass"
    assert Alert.objects.get(kind="volume").status == "resolved"


def test_a_stale_table_whose_volume_drops_to_zero_opens_two_alerts_that_read_as_related(table, make_channel):
    """The quick-start demo's inventory_snapshots: no rows for hours is both stale and a drop to zero."""
    channel = make_channel(table.connection.team, "email", "oncall@example.com")
    rng = random.Random(9)
    seed_history(table, hours=14 * 24, until=START, value_at=lambda at: day_night(at, rng))
    stale = Outcome(
        kind="freshness", status="fail", observed_value=7200, expected_upper=3600, message="newest row is 2 h old"
    )
    run = TableRun(
        table=table,
        outcomes=[
            stale,
            Outcome(
                kind="volume",
                status="pass",
                observed_value=0,
                bucket_start=START,
                message="0 rows",
                details={"series": SERIES, "bucket_seconds": 3600},
            ),
        ],
    )
    volume_judge(runs=[run])
    token = uuid.uuid4()
    MonitoredTable.objects.filter(pk=table.pk).update(lease_token=token)
    results_record(
        connection=table.connection,
        token=token,
        runs=[run],
        connection_outcomes=[],
        started_at=START + timedelta(hours=1, minutes=1),
        on_recorded=results_intake,
    )

    freshness, volume = Alert.objects.get(kind="freshness"), Alert.objects.get(kind="volume")
    assert volume.message.startswith("0 rows")
    assert volume.message.endswith(f"Related: the table is also stale (freshness alert {freshness.id}).")
    opened = Notification.objects.get(channel=channel, event__alert=volume, event__kind="opened")
    assert f"the table is also stale (freshness alert {freshness.id})" in opened.body


def test_a_rebaseline_resolves_the_volume_alert(table):
    rng = random.Random(13)
    seed_history(table, hours=14 * 24, until=START, value_at=lambda at: 1000 * (1 + rng.gauss(0, 0.02)))
    assert observe(table, START, 2000).status == "fail"
    alert = Alert.objects.get(kind="volume")
    table_rebaseline_accept(table=table, since=START)
    alert.refresh_from_db()
    assert alert.status == "resolved"
    assert list(alert.events.values_list("kind", flat=True))[-1] == "resolved"
    table.refresh_from_db()
    assert table.baseline_since == START


def test_a_level_shift_alerts_once_then_is_accepted_after_the_confirmations(table):
    rng = random.Random(17)
    MonitoredTable.objects.filter(pk=table.pk).update(failure_threshold=2)
    seed_history(table, hours=14 * 24, until=START, value_at=lambda at: day_night(at, rng))
    results = [
        observe(table, START + timedelta(hours=h), 2 * day_night(START + timedelta(hours=h), rng)) for h in range(48)
    ]
    assert [r.status for r in results[:5]] == ["fail"] * 5
    accepted = results[5]
    assert accepted.status == "pass" and accepted.details["level_shift_accepted"]["confirmations"] == 6
    assert "new level" in accepted.message
    assert Alert.objects.count() == 1
    alert = Alert.objects.get(kind="volume")
    assert alert.status == "resolved"
    assert [r.status for r in results[6:]].count("fail") <= 1  # tracked at the new level, with its day/night shape
    table.refresh_from_db()
    assert table.baseline_since == START


def test_no_volume_alert_opens_during_maintenance(table):
    rng = random.Random(14)
    seed_history(table, hours=14 * 24, until=START, value_at=lambda at: 1000 * (1 + rng.gauss(0, 0.02)))
    MaintenanceWindow.objects.create(connection=table.connection, starts_at=START, ends_at=START + timedelta(hours=32))
    for h in range(30):
        observe(table, START + timedelta(hours=h), 3000)
    assert not Alert.objects.exists()


def test_volume_alerts_need_anomalous_buckets_in_a_row_not_runs(table):
    rng = random.Random(16)
    MonitoredTable.objects.filter(pk=table.pk).update(failure_threshold=2)
    seed_history(table, hours=14 * 24, until=START, value_at=lambda at: 1000 * (1 + rng.gauss(0, 0.02)))
    observe(table, START, 0)
    observe(table, START, 0)  # a second run in the same hour repeats the verdict: still one bucket
    assert not Alert.objects.exists()
    observe(table, START + timedelta(hours=1), 0)
    assert Alert.objects.get(kind="volume").consecutive_failures == 2
