"""dashboard/charts.py: scales, ticks in the viewer's time zone, band paths, gaps, and the drawn charts."""

import re
import zoneinfo
from datetime import UTC, datetime, timedelta

from dashboard import charts

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
T0 = datetime(2026, 3, 20, 0, 0, tzinfo=UTC)


def test_linear_scale_maps_domain_onto_range_backwards_for_y():
    y = charts.LinearScale(0, 100, 200, 0)
    assert (y(0), y(50), y(100)) == (200, 100, 0)
    assert charts.LinearScale(5, 5, 0, 10)(5) == 5  # a flat domain sits in the middle


def test_time_scale_maps_times_linearly():
    x = charts.TimeScale(T0, T0 + timedelta(hours=10), 0, 1000)
    assert x(T0 + timedelta(hours=2, minutes=30)) == 250


def test_value_domain_rounds_to_ticks_and_includes_zero():
    assert charts.value_domain([120, 870]) == (0, 1000)
    assert charts.value_domain([None, 3.2]) == (0, 4)
    assert charts.value_domain([]) == (0.0, 1.0)
    assert charts.value_ticks(0, 1000) == [0, 200, 400, 600, 800, 1000]


def test_duration_axes_step_by_round_minutes_and_hours():
    low, high = charts.value_domain([0, 7739.9], durations=True)
    assert (low, high) == (0, 10800)
    assert charts.value_ticks(low, high, durations=True) == [0, 3600, 7200, 10800]


def test_time_ticks_fall_on_local_midnight_in_the_viewers_zone():
    ticks = charts.time_ticks(T0, T0 + timedelta(days=14), tz=BERLIN)
    assert ticks, "a fortnight has ticks"
    for at, label in ticks:
        local = at.astimezone(BERLIN)
        assert (local.hour, local.minute) == (0, 0)
        assert label == f"{local:%a} {local.day}"
    assert ticks[0] == (datetime(2026, 3, 21, 23, 0, tzinfo=UTC), "Sun 22")  # midnight in Berlin, 23:00 UTC
    assert (ticks[1][0] - ticks[0][0]) == timedelta(days=2)


def test_time_ticks_stay_on_midnight_across_daylight_saving():
    # Berlin moves to summer time on 2026-03-29: a tick every day keeps landing on local midnight.
    ticks = charts.time_ticks(T0 + timedelta(days=7), T0 + timedelta(days=12), tz=BERLIN)
    assert [at.astimezone(BERLIN).hour for at, _ in ticks] == [0] * len(ticks)
    assert [at.astimezone(UTC).hour for at, _ in ticks][:3] == [23, 23, 22]


def test_hour_ticks_are_labelled_with_the_time_and_the_day_at_midnight():
    ticks = charts.time_ticks(T0 + timedelta(hours=20), T0 + timedelta(hours=36), tz=UTC)
    labels = [label for _, label in ticks]
    assert labels[:3] == ["21:00", "Sat 21", "03:00"]


def test_split_at_gaps_breaks_runs_at_missing_values_and_long_gaps():
    hour = timedelta(hours=1)
    points = [(T0, 1), (T0 + hour, 2), (T0 + 2 * hour, None), (T0 + 3 * hour, 4), (T0 + 9 * hour, 5)]
    runs = charts.split_at_gaps(points, max_gap=hour * 1.5)
    assert [[v for _, v in run] for run in runs] == [[1, 2], [4], [5]]


def test_typical_step_is_the_median_spacing():
    times = [T0, T0 + timedelta(hours=1), T0 + timedelta(hours=2), T0 + timedelta(hours=10)]
    assert charts.typical_step(times) == timedelta(hours=1)
    assert charts.typical_step([T0]) == timedelta(hours=1)


def test_band_path_goes_along_the_upper_edge_and_back_along_the_lower():
    path = charts.band_path([(0, 100, 50), (10, 90, 40), (20, 80, 30)])
    assert path == "M0.0,50.0L10.0,40.0L20.0,30.0L20.0,80.0L10.0,90.0L0.0,100.0Z"
    assert charts.band_path([]) == ""
    assert charts.band_path([(5, 20, 10)]).count("L") == 3  # a lone point is a thin bar


def test_line_path():
    assert charts.line_path([(0, 1), (2.25, 3)]) == "M0.0,1.0L2.2,3.0"


def _points(hours, *, missing=(), anomalies=(), expected=()):
    return [
        charts.BandPoint(
            at=T0 + timedelta(hours=h),
            value=None if h in missing else 100.0 + h,
            lower=90.0,
            upper=130.0,
            anomaly=h in anomalies or h in expected,
            expected=h in expected,
        )
        for h in range(hours)
    ]


def test_volume_chart_draws_the_band_gaps_anomalies_and_expected_points():
    svg = charts.volume_chart(
        points=_points(24, missing={10, 11}, anomalies={20}, expected={5}),
        start=T0,
        end=T0 + timedelta(hours=24),
        tz=UTC,
        maintenance=[(T0 + timedelta(hours=2), T0 + timedelta(hours=3))],
        marks=[(T0 + timedelta(hours=12), "rebaselined")],
    )
    assert svg.count('<path class="band"') == 1  # the band has no value gap: one piece
    assert svg.count('<path class="line"') == 2  # the line breaks where values are missing
    assert svg.count('<circle class="anomaly"') == 1
    assert svg.count('<circle class="expected"') == 1
    assert '<rect class="maintenance"' in svg and "rebaselined" in svg
    assert re.search(r"<title>Fri 20 Mar 20:00: 120 \(expected 90–130\) — anomaly</title>", svg)


def test_volume_chart_breaks_the_band_where_no_data_came():
    points = _points(6) + [
        charts.BandPoint(at=T0 + timedelta(hours=h), value=100, lower=90, upper=130) for h in (20, 21, 22)
    ]
    svg = charts.volume_chart(points=points, start=T0, end=T0 + timedelta(hours=24), tz=UTC)
    assert svg.count('<path class="band"') == 2
    assert svg.count('<path class="line"') == 2


def test_chart_text_is_escaped():
    svg = charts.volume_chart(
        points=_points(3), start=T0, end=T0 + timedelta(hours=3), tz=UTC, marks=[(T0, "<script>x</script>")]
    )
    assert "<script>" not in svg and "&lt;script&gt;" in svg


def test_limit_chart_draws_constant_and_learned_limits():
    points = [(T0 + timedelta(hours=h), 600.0 * h) for h in range(5)]
    svg = charts.limit_chart(
        points=points,
        limits=[("Threshold", 3600.0), ("Learned", [(at, 1800.0) for at, _ in points])],
        start=T0,
        end=T0 + timedelta(hours=4),
        tz=UTC,
        kind="freshness",
        label="Freshness",
    )
    assert svg.count('class="limit limit-0"') == 1 and svg.count('class="limit limit-1"') == 1
    assert "<title>Fri 20 Mar 02:00: 20 min</title>" in svg
    assert ">1 h 0 min<" in svg  # duration ticks


def test_sparkline_breaks_at_missing_values_and_is_empty_without_data():
    svg = charts.sparkline([1, 2, None, 4, 5])
    assert svg.count("M") == 2
    assert charts.sparkline([None, None]) == ""


def test_downsample_max_keeps_each_buckets_largest_value():
    points = [(T0 + timedelta(minutes=m), float(m % 50)) for m in range(0, 120, 5)]
    kept = charts.downsample_max(points, bucket=timedelta(hours=1))
    assert [v for _, v in kept] == [45.0, 45.0]
