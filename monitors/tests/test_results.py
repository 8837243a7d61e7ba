"""monitors.results: the weekly partitions of check results, created ahead and dropped by retention."""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from monitors.anomalies import TRAINING_WINDOW
from monitors.models import CheckResult, MonitoredTable
from monitors.results import (
    DEFAULT_PARTITION,
    MIN_RETENTION_DAYS,
    PARENT,
    partition_name,
    result_partitions,
    result_partitions_ensure,
    results_prune,
    week_start,
)

pytestmark = pytest.mark.django_db

# A Monday midnight (UTC) as "now": with a whole number of weeks of retention, the cutoff is a week boundary.
MONDAY = week_start(timezone.now())


@pytest.fixture
def shop(make_connection):
    return make_connection()


def store(shop, started_at) -> CheckResult:
    return CheckResult.objects.create(connection=shop, kind="replication_lag", status="pass", started_at=started_at)


def partition_of(result: CheckResult) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT tableoid::regclass::text FROM {PARENT} WHERE id = %s", [result.id])
        return cursor.fetchone()[0]


def weeks_back(count: int) -> None:
    """Weekly partitions for the `count` weeks before MONDAY's (as if runchecks had run back then)."""
    for weeks in range(1, count + 1):
        result_partitions_ensure(now=MONDAY - timedelta(weeks=weeks), weeks_ahead=0)


def test_results_are_stored_in_the_partition_of_their_week():
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE relname = %s", [PARENT])
        assert cursor.fetchone()[0] == "p"
    expected = [partition_name(MONDAY + timedelta(weeks=n)) for n in range(5)]
    assert set(expected) <= set(result_partitions())  # the migration made this week and four ahead


def test_a_result_lands_in_its_week_and_keeps_its_id(shop):
    result = store(shop, MONDAY + timedelta(days=2))
    assert partition_of(result) == partition_name(MONDAY)
    assert CheckResult.objects.get(pk=result.pk).started_at == result.started_at


def test_creating_partitions_ahead_is_idempotent_and_moves_rows_out_of_the_default_partition(shop):
    far = MONDAY + timedelta(weeks=10, hours=5)
    early = store(shop, far)
    assert partition_of(early) == DEFAULT_PARTITION  # no partition that far ahead yet
    created = result_partitions_ensure(now=far, weeks_ahead=1)
    assert created == [partition_name(MONDAY + timedelta(weeks=10)), partition_name(MONDAY + timedelta(weeks=11))]
    assert partition_of(early) == partition_name(MONDAY + timedelta(weeks=10))
    assert CheckResult.objects.filter(pk=early.pk).count() == 1  # moved, not copied
    assert result_partitions_ensure(now=far, weeks_ahead=1) == []
    later = store(shop, far + timedelta(days=8))
    assert partition_of(later) == partition_name(MONDAY + timedelta(weeks=11))


def test_a_new_partition_carries_the_indexes_and_the_foreign_keys(shop):
    result_partitions_ensure(now=MONDAY + timedelta(weeks=20), weeks_ahead=0)
    name = partition_name(MONDAY + timedelta(weeks=20))
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_index WHERE indrelid = %s::regclass", [name])
        partition_indexes = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM pg_index WHERE indrelid = %s::regclass", [PARENT])
        assert partition_indexes == cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'f'", [name])
        assert cursor.fetchone()[0] == 3  # connection, table, check definition


def test_retention_drops_whole_weeks_exactly_at_the_boundary(shop, settings):
    settings.PULSE_RESULT_RETENTION_DAYS = 28
    weeks_back(6)
    cutoff = MONDAY - timedelta(days=28)
    just_out = store(shop, cutoff - timedelta(microseconds=1))
    just_in = store(shop, cutoff)
    older = store(shop, cutoff - timedelta(days=9))
    pruned = results_prune(now=MONDAY)
    assert pruned.retention_days == 28
    assert pruned.partitions == [partition_name(cutoff - timedelta(weeks=n)) for n in (2, 1)]
    assert set(CheckResult.objects.values_list("id", flat=True)) == {just_in.id}
    assert not CheckResult.objects.filter(pk__in=[just_out.pk, older.pk]).exists()
    assert partition_name(cutoff) in result_partitions()
    assert partition_name(cutoff - timedelta(weeks=1)) not in result_partitions()


def test_a_week_partly_inside_the_retention_period_is_kept_whole(shop, settings):
    settings.PULSE_RESULT_RETENTION_DAYS = 25  # the cutoff falls on a Thursday
    weeks_back(5)
    cutoff = MONDAY - timedelta(days=25)
    before_cutoff_same_week = store(shop, cutoff - timedelta(days=2))
    assert results_prune(now=MONDAY).partitions == [partition_name(week_start(cutoff) - timedelta(weeks=1))]
    assert CheckResult.objects.filter(pk=before_cutoff_same_week.pk).exists()  # kept up to a week longer, never less


def test_the_retention_override_of_one_call(shop, settings):
    settings.PULSE_RESULT_RETENTION_DAYS = 90
    weeks_back(5)
    five_weeks_old = store(shop, MONDAY - timedelta(weeks=5))
    assert results_prune(now=MONDAY).partitions == []
    assert results_prune(now=MONDAY, retention_days=21).partitions == [
        partition_name(MONDAY - timedelta(weeks=5)),
        partition_name(MONDAY - timedelta(weeks=4)),
    ]
    assert not CheckResult.objects.filter(pk=five_weeks_old.pk).exists()


def test_retention_is_never_shorter_than_the_training_window(shop, settings):
    assert timedelta(days=MIN_RETENTION_DAYS) >= TRAINING_WINDOW
    settings.PULSE_RESULT_RETENTION_DAYS = 1
    weeks_back(4)
    training = [store(shop, MONDAY - TRAINING_WINDOW + timedelta(minutes=1)), store(shop, MONDAY - timedelta(days=1))]
    beyond = store(shop, MONDAY - TRAINING_WINDOW - timedelta(weeks=1, minutes=1))
    for pruned in (results_prune(now=MONDAY), results_prune(now=MONDAY, retention_days=0)):
        assert pruned.retention_days == MIN_RETENTION_DAYS
    assert set(CheckResult.objects.values_list("id", flat=True)) == {r.id for r in training}
    assert not CheckResult.objects.filter(pk=beyond.pk).exists()


def test_old_rows_outside_any_week_partition_are_deleted(shop):
    ancient = store(shop, MONDAY - timedelta(days=400))
    recent_default = store(shop, MONDAY + timedelta(weeks=30))
    assert partition_of(ancient) == partition_of(recent_default) == DEFAULT_PARTITION
    assert results_prune(now=MONDAY).default_rows == 1
    assert list(CheckResult.objects.values_list("id", flat=True)) == [recent_default.id]


def test_a_raw_insert_that_names_only_the_older_columns_gets_the_new_columns_defaults(shop):
    """Columns added since the first release have database defaults, so SQL written against the older layout
    (bulk loads, the benchmarks' generators) keeps working."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO monitors_monitoredtable (connection_id, schema_name, table_name, timestamp_column,"
            " freshness_threshold_minutes, check_interval_seconds, failure_threshold, sensitivity, direction,"
            " seasonality, min_relative_change, min_absolute_change, is_active, status, last_error, plan_costs,"
            " update_times, created_at, updated_at) VALUES (%s, 'public', 'bulk', '', 60, 300, 2, 3.5, 'both',"
            " 'auto', 0, 0, true, 'unknown', '', '{}', '[]', now(), now()) RETURNING id",
            [shop.pk],
        )
        table_id = cursor.fetchone()[0]
        cursor.execute(
            f"INSERT INTO {PARENT} (connection_id, table_id, kind, status, message, started_at, duration_ms,"
            " queries_used, details, is_anomaly, marked_expected) VALUES (%s, %s, 'volume', 'pass', '', now(), 1, 1,"
            " '{}', false, false) RETURNING id",
            [shop.pk, table_id],
        )
        result_id = cursor.fetchone()[0]
    table = MonitoredTable.objects.get(pk=table_id)
    assert (table.managed_by, table.sensitivity_preset, table.volume_series, table.volume_bucket_seconds) == (
        "",
        "",
        "",
        3600,
    )
    assert (table.timestamp_column_chosen_by, table.timestamp_column_reason) == ("user", "")
    assert CheckResult.objects.get(pk=result_id).series == ""
