"""Each check kind passing and failing against the real replica, through the engine."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from monitors.batch import batch_run
from monitors.checks import volume
from monitors.checks.freshness import learned_limit
from monitors.claims import tables_claim_due
from monitors.models import Check, CheckResult, MonitoredTable
from monitors.recording import results_ignore

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop(make_connection):
    return make_connection()


def run_now(*tables):
    """Claim the given tables and check them in one batch, the way runchecks does."""
    from datetime import timedelta

    from django.utils import timezone

    claim = tables_claim_due(
        now=timezone.now(), lease=timedelta(minutes=1), limit=100, force=True, table_ids=[t.id for t in tables]
    )
    assert {t.id for t in claim.tables} == {t.id for t in tables}
    return batch_run(
        connection=claim.tables[0].connection, claim=claim, tables=claim.tables, on_recorded=results_ignore
    )


def by_kind(results, table=None):
    return {r.kind: r for r in results if table is None or r.table_id == table.id}


def test_a_fresh_table_passes_every_built_in_check(shop):
    table = MonitoredTable.objects.create(connection=shop, table_name="orders", timestamp_column="created_at")
    results = by_kind(run_now(table), table)
    assert set(results) == {"schema_change", "volume", "freshness"}
    assert all(r.status == "pass" for r in results.values()), {k: r.message for k, r in results.items()}
    assert results["freshness"].observed_value < 60 * 60
    assert results["freshness"].expected_upper == 3600
    assert results["volume"].details["total_rows"] == 500
    assert results["volume"].details["method"] == "exact"
    assert results["volume"].bucket_start is not None
    assert results["schema_change"].observed_value == 5
    # 500 minutes of history: backfilled, but fewer hours than a baseline needs, so the table is learning.
    assert 7 <= results["volume"].details["backfilled"] <= 9
    assert results["volume"].details["learning"] is True
    assert CheckResult.objects.filter(table=table, kind="volume", details__backfill=True).count() >= 7
    table.refresh_from_db()
    assert table.status == "learning" and table.backfilled_at is not None
    assert table.last_checked_at is not None and table.next_check_at > table.last_checked_at
    assert table.lease_token is None
    assert [c[0] for c in table.schema_reference] == ["id", "customer_id", "amount", "created_at", "note"]
    # Few queries per table: the batch's one catalog statement (schema and size, counted for no check), one
    # scan of this small table (total, rows in the last hour and the newest created_at, which freshness
    # reuses) and one backfill on the first run, each with its cost estimate.
    assert results["schema_change"].queries_used == 0
    assert results["freshness"].queries_used == 0
    assert sum(r.queries_used for r in results.values()) <= 4


def test_a_stale_table_fails_freshness_with_its_age(shop):
    table = MonitoredTable.objects.create(
        connection=shop, table_name="stale_events", timestamp_column="happened_at", freshness_threshold_minutes=60
    )
    freshness = by_kind(run_now(table))["freshness"]
    assert freshness.status == "fail"
    assert 3 * 86400 <= freshness.observed_value < 3 * 86400 + 3600
    assert "min old (limit 60 min)" in freshness.message
    table.refresh_from_db()
    assert table.status == "failing"


def test_an_empty_table_fails_freshness(shop):
    table = MonitoredTable.objects.create(connection=shop, table_name="empty_events", timestamp_column="at")
    results = by_kind(run_now(table))
    assert results["freshness"].status == "fail"
    assert "no rows" in results["freshness"].message
    assert results["volume"].observed_value == 0


def test_a_table_without_timestamp_gets_total_volume_and_no_freshness(shop):
    table = MonitoredTable.objects.create(connection=shop, table_name="customers")
    results = by_kind(run_now(table), table)
    assert set(results) == {"schema_change", "volume"}
    assert results["volume"].observed_value == 50
    assert results["volume"].details["series"] == "total_rows"
    assert results["volume"].bucket_start.minute == 0  # one value per hour for the baseline


def test_schema_change_fails_listing_what_changed(shop, replica_pair):
    table = MonitoredTable.objects.create(connection=shop, table_name="customers")
    table.schema_reference = [
        ["id", "integer", True],
        ["name", "character varying(10)", True],
        ["signup_date", "date", False],
        ["legacy", "text", False],
    ]
    table.save()
    schema = by_kind(run_now(table))["schema_change"]
    assert schema.status == "fail"
    assert "removed: legacy" in schema.message
    assert "retyped: name character varying(10) → text" in schema.message
    table.refresh_from_db()
    assert table.schema_reference[-1][0] == "legacy"  # the reference changes only when the alert is resolved


def test_row_count_passes_within_and_fails_outside_bounds(shop):
    table = MonitoredTable.objects.create(connection=shop, table_name="customers")
    inside = Check.objects.create(table=table, kind="row_count", min_value=10, max_value=100)
    outside = Check.objects.create(table=table, kind="row_count", min_value=1000)
    results = {r.check_definition_id: r for r in run_now(table) if r.kind == "row_count"}
    assert results[inside.id].status == "pass"
    assert results[outside.id].status == "fail"
    assert "below the minimum 1,000" in results[outside.id].message


def test_null_rate_samples_a_table_without_statistics(shop):
    table = MonitoredTable.objects.create(connection=shop, table_name="stale_events")
    ok = Check.objects.create(table=table, kind="null_rate", column="id", max_value=0.1)
    bad = Check.objects.create(table=table, kind="null_rate", column="kind", max_value=0.5)
    results = {r.check_definition_id: r for r in run_now(table) if r.kind == "null_rate"}
    assert results[ok.id].status == "pass" and results[ok.id].observed_value == 0
    assert results[bad.id].status == "fail" and results[bad.id].observed_value == 1.0
    assert "sample" in results[bad.id].details["method"]


def test_null_rate_reads_pg_stats_after_analyze(shop, replica_pair):
    with replica_pair.primary.connect("shop") as conn:
        conn.execute("ANALYZE public.orders")
    replica_pair.wait_for_replay()
    table = MonitoredTable.objects.create(connection=shop, table_name="orders")
    check = Check.objects.create(table=table, kind="null_rate", column="note", max_value=0.5)
    result = next(r for r in run_now(table) if r.kind == "null_rate")
    assert result.status == "fail" and result.observed_value == 1.0
    assert result.details["method"] == "pg_stats"
    assert result.check_definition_id == check.id


def test_custom_sql_compares_its_number_to_bounds(shop):
    table = MonitoredTable.objects.create(connection=shop, table_name="orders")
    passing = Check.objects.create(table=table, kind="custom_sql", sql="SELECT count(*) FROM orders", min_value=1)
    failing = Check.objects.create(
        table=table, kind="custom_sql", sql="SELECT max(amount) FROM public.orders", max_value=10
    )
    not_a_number = Check.objects.create(table=table, kind="custom_sql", sql="SELECT 'x'", min_value=0)
    infinite = Check.objects.create(table=table, kind="custom_sql", sql="SELECT 'Infinity'::float", min_value=0)
    results = {r.check_definition_id: r for r in run_now(table) if r.kind == "custom_sql"}
    assert results[passing.id].status == "pass" and results[passing.id].observed_value == 500
    assert results[failing.id].status == "fail" and results[failing.id].observed_value == 750
    assert results[not_a_number.id].status == "error"
    assert "one numeric column" in results[not_a_number.id].message
    assert results[infinite.id].status == "error" and results[infinite.id].observed_value is None


def test_custom_sql_that_writes_is_refused_by_the_read_only_session(shop):
    table = MonitoredTable.objects.create(connection=shop, table_name="orders")
    # Saved behind the API's back: the engine re-validates and the session is read-only anyway.
    check = Check.objects.create(table=table, kind="custom_sql", sql="DELETE FROM orders", min_value=0)
    result = next(r for r in run_now(table) if r.kind == "custom_sql")
    assert result.status == "error"
    assert result.check_definition_id == check.id


def test_the_cost_guard_refuses_expensive_queries(shop):
    shop.max_query_cost = 1
    shop.save()
    table = MonitoredTable.objects.create(connection=shop, table_name="orders", timestamp_column="created_at")
    results = by_kind(run_now(table))
    assert results["freshness"].status == "skipped"
    assert "planner estimates cost" in results["freshness"].message
    assert results["schema_change"].status == "pass"
    assert "rows per bucket not run" in results["volume"].message
    assert results["volume"].details["series"] == "total_rows"


def test_a_statement_timeout_is_an_error_within_the_timeout(shop):
    shop.statement_timeout_ms = 300
    shop.save()
    table = MonitoredTable.objects.create(connection=shop, table_name="orders")
    Check.objects.create(table=table, kind="custom_sql", sql="SELECT pg_sleep(5)::text::int + 1", min_value=0)
    result = next(r for r in run_now(table) if r.kind == "custom_sql")
    assert result.status == "error"
    assert result.message == "timed out after 300 ms"
    assert result.duration_ms < 2000
    assert result.queries_used == 2  # EXPLAIN and the one try: timeouts are not retried


def test_names_are_identifiers_not_sql(shop):
    table = MonitoredTable.objects.create(connection=shop, table_name='orders"; DROP TABLE orders; --')
    results = by_kind(run_now(table), table)
    assert results["schema_change"].status == "fail"
    assert "no longer exists" in results["schema_change"].message
    assert CheckResult.objects.filter(table=table).count() == 2


def _daily_history(latest: str, days: int, every: int = 1) -> list[str]:
    from datetime import datetime

    last = datetime.fromisoformat(latest)
    return [(last - timedelta(days=every * n)).isoformat() for n in range(days, 0, -1)]


def test_freshness_learns_the_update_cadence_below_the_hard_limit(shop):
    table = MonitoredTable.objects.create(
        connection=shop,
        table_name="stale_events",
        timestamp_column="happened_at",
        freshness_threshold_minutes=7 * 24 * 60,  # a generous hard limit: a week
    )
    first = by_kind(run_now(table), table)["freshness"]
    assert first.status == "pass" and first.details["learned_limit"] is None
    table.refresh_from_db()
    # Seeded on the first check with the newest timestamp of each hour with rows (its rows span 100 minutes).
    assert 2 <= len(table.update_times) <= 3 and table.update_times[-1] == first.details["latest"]
    # As if Pulse had seen a load every day before this one: a daily cadence is learned.
    table.update_times = _daily_history(first.details["latest"], days=6) + table.update_times
    table.save()
    daily = by_kind(run_now(table), table)["freshness"]
    assert daily.status == "fail"
    assert 24 * 3600 < daily.details["learned_limit"] < 30 * 3600
    assert "learned from its update cadence" in daily.message
    # A table loaded every four days is not late after three.
    table.update_times = [*_daily_history(first.details["latest"], days=6, every=4), first.details["latest"]]
    table.save()
    assert by_kind(run_now(table), table)["freshness"].status == "pass"


def test_a_sparse_table_is_judged_on_buckets_as_wide_as_its_rate_needs(shop, replica_pair):
    """Two rows an hour: 1-hour and 2-hour buckets would hold 2 and 4, so 6-hour buckets (12 rows) are chosen,
    backfilled from the table; another timestamp column starts another series instead of mixing the two."""
    with replica_pair.primary.connect("shop") as conn:
        conn.execute(
            "CREATE TABLE public.sparse_events AS SELECT g AS id,"
            " date_trunc('hour', now()) - make_interval(mins => 30 * g) AS at,"
            " date_trunc('hour', now()) - make_interval(mins => 30 * g) AS loaded_at"
            " FROM generate_series(1, 2 * 24 * 14) g"
        )
        conn.execute("GRANT SELECT ON public.sparse_events TO pulse_reader")
    replica_pair.wait_for_replay()
    table = MonitoredTable.objects.create(connection=shop, table_name="sparse_events", timestamp_column="at")

    volume = by_kind(run_now(table))["volume"]

    assert volume.details["bucket_seconds"] == 6 * 3600 and volume.series == "rows:at:6h"
    assert volume.bucket_start.hour % 6 == 0 and volume.observed_value == 12
    assert volume.details["learning"] is False and volume.status == "pass"
    assert "6-hour buckets" in volume.message
    backfilled = CheckResult.objects.filter(table=table, kind="volume", details__backfill=True)
    assert set(backfilled.values_list("series", flat=True)) == {"rows:at:6h"}
    assert {v for v in backfilled.values_list("observed_value", flat=True)} == {12.0}
    points = backfilled.count()
    table.refresh_from_db()
    assert (table.volume_series, table.volume_bucket_seconds) == ("rows:at:6h", 6 * 3600)

    MonitoredTable.objects.filter(pk=table.pk).update(timestamp_column="loaded_at")
    again = by_kind(run_now(table))["volume"]
    assert again.series == "rows:loaded_at:6h" and again.details["backfilled"] == points
    assert again.details["training_points"] == points
    assert CheckResult.objects.filter(table=table, series="rows:loaded_at:6h").count() == points + 1


def test_the_bucket_width_is_re_chosen_when_the_rate_drifts(shop, replica_pair):
    """24 rows an hour for a week, then 2 an hour for a week: the 14-day rate (13/h) chose 1-hour buckets, the
    last week's rate holds 2 rows in them, so the next run starts a 6-hour series backfilled from the table."""
    with replica_pair.primary.connect("shop") as conn:
        conn.execute(
            "CREATE TABLE public.quieter_events AS"
            " SELECT date_trunc('hour', now()) - make_interval(mins => 30 * g) AS at FROM generate_series(1, 336) g"
            " UNION ALL SELECT date_trunc('hour', now()) - interval '7 days' - make_interval(secs => 150 * g)"
            " FROM generate_series(1, 24 * 24 * 7 - 1) g"
        )
        conn.execute("GRANT SELECT ON public.quieter_events TO pulse_reader")
    replica_pair.wait_for_replay()
    table = MonitoredTable.objects.create(connection=shop, table_name="quieter_events", timestamp_column="at")

    first = by_kind(run_now(table))["volume"]

    assert first.series == "rows:at:1h" and first.observed_value == 2
    assert first.details["width_change"]["to_seconds"] == 6 * 3600
    assert 1.9 < first.details["width_change"]["rows_per_hour"] < 2.5
    assert "6-hour buckets from the next run" in first.message
    table.refresh_from_db()
    assert (table.volume_series, table.volume_bucket_seconds) == ("rows:at:1h", 6 * 3600)

    second = by_kind(run_now(table))["volume"]

    assert second.series == "rows:at:6h" and second.observed_value == 12
    assert second.details["width_rechosen_from"] == "rows:at:1h" and second.details["backfilled"] > 50
    assert "width_change" not in second.details and "re-chosen as the table's rate drifted" in second.message
    new_series = CheckResult.objects.filter(table=table, kind="volume", series="rows:at:6h", details__backfill=True)
    assert new_series.count() == second.details["backfilled"]
    assert second.details["training_points"] == second.details["backfilled"]  # none of the 1-hour values
    table.refresh_from_db()
    assert (table.volume_series, table.volume_bucket_seconds) == ("rows:at:6h", 6 * 3600)
    third = by_kind(run_now(table))["volume"]
    assert third.series == "rows:at:6h" and "backfilled" not in third.details and "width_change" not in third.details


def test_a_re_chosen_width_does_not_flap_back():
    """Hysteresis: at any steady rate, the width a drift moves to is kept by the next look at the same rate."""
    start = timezone.now().replace(minute=0, second=0, microsecond=0)
    for rows_per_hour in (0.05, 0.3, 0.9, 1.2, 1.7, 2.5, 4, 5.5, 7, 9, 11, 15, 19, 21, 30, 100):
        for width in volume.BUCKET_WIDTHS:
            steps = int(timedelta(days=7) / width)
            steady = [(start + n * width, rows_per_hour * width / timedelta(hours=1)) for n in range(steps)]
            drift = volume.width_after_drift(width=width, history=steady)
            if drift is None:
                continue
            moved = drift[0]
            steps = int(timedelta(days=7) / moved)
            steady = [(start + n * moved, rows_per_hour * moved / timedelta(hours=1)) for n in range(steps)]
            assert volume.width_after_drift(width=moved, history=steady) is None, (rows_per_hour, width, moved)
    hour = [(start + n * timedelta(hours=1), 7.0) for n in range(24 * 7)]
    assert volume.width_after_drift(width=timedelta(hours=1), history=hour) is None  # 7 rows: above half of 10
    assert volume.width_after_drift(width=timedelta(hours=1), history=hour[:48]) is None  # two days: too few


def test_a_weekly_load_is_learned_on_the_first_check_from_the_tables_own_history(shop, replica_pair):
    """Two loads a week apart (300 rows over 30 minutes each), the last 6 days ago: the first check reads the load
    times with the volume backfill and learns a week + 10 %: no alert before the next load is due, one within a
    cadence of a missed load."""
    with replica_pair.primary.connect("shop") as conn:
        conn.execute(
            "CREATE TABLE public.weekly_loads AS"
            " SELECT date_trunc('hour', now()) - make_interval(days => d, hours => 2) + make_interval(secs => 6 * g)"
            " AS loaded_at FROM generate_series(1, 300) g, (VALUES (6), (13)) AS w(d)"
        )
        conn.execute("GRANT SELECT ON public.weekly_loads TO pulse_reader")
    replica_pair.wait_for_replay()
    table = MonitoredTable.objects.create(
        connection=shop, table_name="weekly_loads", timestamp_column="loaded_at", freshness_threshold_minutes=14 * 1440
    )

    result = by_kind(run_now(table))["freshness"]

    assert result.status == "pass"
    assert result.details["learned_limit"] == timedelta(weeks=1, hours=16.8).total_seconds()
    table.refresh_from_db()
    assert len(table.update_times) >= 2  # the hours of both loads, seeded from the table's own history
    latest = datetime.fromisoformat(result.details["latest"])
    limit = learned_limit(table.update_times, latest=latest)
    assert latest + timedelta(weeks=1, hours=6) < latest + limit < latest + timedelta(weeks=2)


def test_a_weekly_load_seen_by_several_runs_is_one_load():
    """Each load took 40 minutes and three runs saw it grow: still a weekly cadence, not a 20-minute one."""
    monday = datetime(2026, 6, 1, 2, tzinfo=UTC)
    seen = [
        (monday + timedelta(weeks=week, minutes=minutes)).isoformat() for week in range(3) for minutes in (5, 25, 40)
    ]
    assert learned_limit(seen, latest=monday + timedelta(weeks=2, minutes=40)) == timedelta(weeks=1, hours=16.8)
    later = monday + timedelta(weeks=1, hours=9)  # not the same time of day: no weekly cadence
    assert learned_limit([*seen[:3], later.isoformat()], latest=later) is None


def test_a_buckets_span_and_start_read_the_same_for_every_table_of_a_batch_and_in_utc():
    """`_span`, `_floor` and `series_key` are remembered per value (a batch's tables share them): the same answer
    every time, whatever zone an equal moment was given in."""
    hour, six = timedelta(hours=1), timedelta(hours=6)
    start = datetime(2026, 11, 30, 5, tzinfo=UTC)
    for _ in range(2):
        assert volume._span(start, hour) == "in 2026-11-30 05:00–06:00 UTC"
        assert volume._span(start, six) == "in 2026-11-30 05:00–11:00 UTC"
        assert volume._span(datetime(2026, 11, 30, tzinfo=UTC), volume.DAY) == "on 2026-11-30"
        assert volume.series_key("created_at", hour) == "rows:created_at:1h"
        assert volume.series_key("created_at", volume.DAY) == "rows:created_at:1d"
    berlin = datetime(2026, 11, 30, 8, 59, 59, 999999, tzinfo=timezone.get_fixed_timezone(120))  # 06:59:59 UTC
    for moment in (berlin, berlin.astimezone(UTC), berlin):
        assert volume._floor(moment, hour) == datetime(2026, 11, 30, 6, tzinfo=UTC)
        assert volume._floor(moment, hour).utcoffset() == timedelta(0)
        assert volume._floor(moment, six) == datetime(2026, 11, 30, 6, tzinfo=UTC)
        assert volume._floor(moment, volume.DAY) == datetime(2026, 11, 30, tzinfo=UTC)
