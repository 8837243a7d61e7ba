"""Inline SVG charts drawn by Pulse: scales, ticks in the viewer's time zone, band paths, gaps where no data.

Everything here is plain computation on numbers and datetimes (no database): the pages hand it points and
get SVG markup back. Coordinates are rounded to 0.1 px to keep the markup small.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from monitors.checks import format_value

# Tick steps for time axes, smallest first; day steps and longer are aligned to local midnight.
TIME_STEPS = [
    timedelta(minutes=15),
    timedelta(minutes=30),
    timedelta(hours=1),
    timedelta(hours=3),
    timedelta(hours=6),
    timedelta(hours=12),
    timedelta(days=1),
    timedelta(days=2),
    timedelta(days=7),
]


@dataclass(frozen=True)
class LinearScale:
    """Maps a numeric domain onto a pixel range (the range may run backwards, as y does)."""

    domain_min: float
    domain_max: float
    range_min: float
    range_max: float

    def __call__(self, value: float) -> float:
        span = self.domain_max - self.domain_min
        if span == 0:
            return (self.range_min + self.range_max) / 2
        return self.range_min + (value - self.domain_min) / span * (self.range_max - self.range_min)


@dataclass(frozen=True)
class TimeScale:
    """Maps datetimes between `start` and `end` onto a pixel range."""

    start: datetime
    end: datetime
    range_min: float
    range_max: float

    def __call__(self, at: datetime) -> float:
        span = (self.end - self.start).total_seconds()
        if span <= 0:
            return (self.range_min + self.range_max) / 2
        return self.range_min + (at - self.start).total_seconds() / span * (self.range_max - self.range_min)


def nice_step(span: float, count: int) -> float:
    """A round step (1, 2 or 5 times 10^n) giving the number of intervals over `span` nearest to `count`."""
    if span <= 0 or not math.isfinite(span):
        return 1.0
    magnitude = 10 ** math.floor(math.log10(span / max(count, 1)))
    candidates = [multiple * magnitude for multiple in (1, 2, 5, 10)]
    return min(candidates, key=lambda step: (abs(span / step - count), -step))


# Steps for axes of durations (seconds): round minutes, hours and days instead of 2,000 s.
DURATION_STEPS = [
    1,
    2,
    5,
    10,
    15,
    30,
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    7200,
    10800,
    21600,
    43200,
    86400,
    172800,
    604800,
]


def duration_step(span: float, count: int) -> float:
    """A round duration step in seconds giving about `count` ticks over `span` seconds."""
    raw = span / max(count, 1)
    return float(next((step for step in DURATION_STEPS if step >= raw), nice_step(span, count)))


def value_domain(
    values: Sequence[float], *, include_zero: bool = True, count: int = 4, durations: bool = False
) -> tuple[float, float]:
    """The y domain for `values`: widened to round tick boundaries, from zero when told to."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return 0.0, 1.0
    low, high = min(finite), max(finite)
    if include_zero:
        low, high = min(low, 0.0), max(high, 0.0)
    if low == high:
        pad = abs(high) * 0.1 or 1.0
        low, high = low - pad if not (include_zero and low == 0) else low, high + pad
    step = (duration_step if durations else nice_step)(high - low, count)
    return math.floor(low / step) * step, math.ceil(high / step) * step


def value_ticks(low: float, high: float, *, count: int = 4, durations: bool = False) -> list[float]:
    """Round values from `low` to `high` (inclusive), about `count` intervals."""
    step = (duration_step if durations else nice_step)(high - low, count)
    first = math.ceil(low / step) * step
    ticks, value = [], first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    return ticks


def time_ticks(start: datetime, end: datetime, *, tz: tzinfo, count: int = 7) -> list[tuple[datetime, str]]:
    """Tick times between `start` and `end` on round local times in `tz`, each with its label.

    Steps of a day or more fall on local midnight (labelled "Mon 14"); shorter steps on round local hours
    (labelled "14:00", with the day at midnight). Local times are stepped in wall-clock time, so a tick stays
    on midnight across a daylight-saving change.
    """
    span = end - start
    step = next((s for s in TIME_STEPS if span / s <= count), TIME_STEPS[-1])
    local_start = start.astimezone(tz)
    if step >= timedelta(days=1):
        tick = local_start.replace(hour=0, minute=0, second=0, microsecond=0)
    else:
        minutes = int(step.total_seconds() // 60)
        of_day = local_start.hour * 60 + local_start.minute
        tick = local_start.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(
            minutes=(of_day // minutes) * minutes
        )
    ticks = []
    wall = tick.replace(tzinfo=None)
    while True:
        at = _localize(wall, tz)
        if at > end:
            break
        if at >= start:
            if step >= timedelta(days=1) or (at.hour == 0 and at.minute == 0):
                label = f"{at:%a} {at.day}"
            else:
                label = f"{at:%H:%M}"
            ticks.append((at, label))
        wall += step
    return ticks


def _localize(wall: datetime, tz: tzinfo) -> datetime:
    """A naive wall-clock time in `tz` as an aware datetime."""
    return wall.replace(tzinfo=tz)


def split_at_gaps(points: Sequence[tuple], *, max_gap: timedelta) -> list[list[tuple]]:
    """Runs of consecutive points (time first) with a value; a missing value or a longer gap starts a new run."""
    runs: list[list[tuple]] = []
    current: list[tuple] = []
    previous_at = None
    for point in points:
        at, value = point[0], point[1]
        if value is None:
            if current:
                runs.append(current)
            current, previous_at = [], None
            continue
        if previous_at is not None and at - previous_at > max_gap:
            runs.append(current)
            current = []
        current.append(point)
        previous_at = at
    if current:
        runs.append(current)
    return runs


def typical_step(times: Sequence[datetime]) -> timedelta:
    """The median spacing of sorted times (one hour when there are fewer than two)."""
    gaps = sorted(b - a for a, b in zip(times, times[1:]) if b > a)
    return gaps[len(gaps) // 2] if gaps else timedelta(hours=1)


def _xy(x: float, y: float) -> str:
    return f"{x:.1f},{y:.1f}"


def line_path(coordinates: Sequence[tuple[float, float]]) -> str:
    """An SVG path through the pixel coordinates (one run: no gaps)."""
    if not coordinates:
        return ""
    first, *rest = coordinates
    return "M" + _xy(*first) + "".join("L" + _xy(*c) for c in rest)


def band_path(coordinates: Sequence[tuple[float, float, float]]) -> str:
    """A closed SVG path around a band given as (x, y_lower, y_upper) pixel triples (one run)."""
    if not coordinates:
        return ""
    upper = [(x, hi) for x, _, hi in coordinates]
    lower = [(x, lo) for x, lo, _ in reversed(coordinates)]
    if len(coordinates) == 1:  # a lone point: a thin bar, so it is still seen
        x, lo, hi = coordinates[0]
        upper, lower = [(x - 2, hi), (x + 2, hi)], [(x + 2, lo), (x - 2, lo)]
    return line_path(upper) + "".join("L" + _xy(*c) for c in lower) + "Z"


# --- charts -----------------------------------------------------------------------------------------------


@dataclass
class BandPoint:
    """One value with its expected band, as drawn on the volume chart."""

    at: datetime
    value: float | None
    lower: float | None = None
    upper: float | None = None
    anomaly: bool = False
    expected: bool = False
    result_id: int | None = None


@dataclass
class Frame:
    """The plot area and its scales."""

    start: datetime
    end: datetime
    low: float
    high: float
    width: int = 900
    height: int = 240
    left: int = 72
    right: int = 12
    top: int = 12
    bottom: int = 26
    x: TimeScale = field(init=False)
    y: LinearScale = field(init=False)

    def __post_init__(self):
        self.x = TimeScale(self.start, self.end, self.left, self.width - self.right)
        self.y = LinearScale(self.low, self.high, self.height - self.bottom, self.top)


DURATION_KINDS = {"freshness", "replication_lag"}


def _axes(frame: Frame, *, tz: tzinfo, kind: str) -> list[str]:
    parts = []
    for tick in value_ticks(frame.low, frame.high, durations=kind in DURATION_KINDS):
        y = frame.y(tick)
        parts.append(
            f'<line class="grid" x1="{frame.left}" x2="{frame.width - frame.right}" y1="{y:.1f}" y2="{y:.1f}"/>'
        )
        parts.append(
            f'<text class="tick" x="{frame.left - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(format_value(kind, tick))}</text>"
        )
    for at, label in time_ticks(frame.start, frame.end, tz=tz):
        x = frame.x(at)
        parts.append(
            f'<line class="grid vgrid" x1="{x:.1f}" x2="{x:.1f}" y1="{frame.top}" y2="{frame.height - frame.bottom}"/>'
        )
        parts.append(
            f'<text class="tick" x="{x:.1f}" y="{frame.height - 8}" text-anchor="middle">{escape(label)}</text>'
        )
    return parts


def _spans(frame: Frame, spans: Sequence[tuple[datetime, datetime]], *, css: str, label: str, tz: tzinfo) -> list[str]:
    parts = []
    for start, end in spans:
        if end < frame.start or start > frame.end:
            continue
        x0, x1 = frame.x(max(start, frame.start)), frame.x(min(end, frame.end))
        title = f"{label}: {_when(start, tz)} – {_when(end, tz)}"
        parts.append(
            f'<rect class="{css}" x="{x0:.1f}" y="{frame.top}" width="{max(x1 - x0, 1):.1f}" '
            f'height="{frame.height - frame.top - frame.bottom}"><title>{escape(title)}</title></rect>'
        )
    return parts


def _marks(frame: Frame, marks: Sequence[tuple[datetime, str]], *, css: str, tz: tzinfo) -> list[str]:
    parts = []
    for at, label in marks:
        if not frame.start <= at <= frame.end:
            continue
        x = frame.x(at)
        parts.append(
            f'<g class="{css}"><line x1="{x:.1f}" x2="{x:.1f}" y1="{frame.top}" y2="{frame.height - frame.bottom}"/>'
            f'<text x="{x + 4:.1f}" y="{frame.top + 10}">{escape(label)}</text>'
            f"<title>{escape(label)} at {escape(_when(at, tz))}</title></g>"
        )
    return parts


def _when(at: datetime, tz: tzinfo) -> str:
    return f"{at.astimezone(tz):%a %d %b %H:%M}"


def _svg(frame: Frame, parts: list[str], *, label: str, css: str) -> SafeString:
    return mark_safe(  # noqa: S308 - every text and title in `parts` went through escape()
        f'<svg class="chart {css}" viewBox="0 0 {frame.width} {frame.height}" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">' + "".join(parts) + "</svg>"
    )


def volume_chart(
    *,
    points: Sequence[BandPoint],
    start: datetime,
    end: datetime,
    tz: tzinfo,
    kind: str = "volume",
    maintenance: Sequence[tuple[datetime, datetime]] = (),
    marks: Sequence[tuple[datetime, str]] = (),
    label: str = "Volume against its expected band",
) -> SafeString:
    """Values against their expected band: band shaded, line with gaps, anomalies and points marked expected."""
    points = sorted((p for p in points if start <= p.at <= end), key=lambda p: p.at)
    everything = [v for p in points for v in (p.value, p.lower, p.upper)]
    low, high = value_domain(everything)
    frame = Frame(start, end, low, high)
    parts = _axes(frame, tz=tz, kind=kind)
    parts += _spans(frame, maintenance, css="maintenance", label="Maintenance window", tz=tz)
    max_gap = typical_step([p.at for p in points]) * 1.5
    banded = [(p.at, p.lower, p.upper) for p in points if p.lower is not None and p.upper is not None]
    for run in split_at_gaps([(at, lo, hi) for at, lo, hi in banded], max_gap=max_gap):
        coordinates = [(frame.x(at), frame.y(lo), frame.y(hi)) for at, lo, hi in run]
        parts.append(f'<path class="band" d="{band_path(coordinates)}"/>')
    for run in split_at_gaps([(p.at, p.value) for p in points], max_gap=max_gap):
        parts.append(f'<path class="line" d="{line_path([(frame.x(at), frame.y(v)) for at, v in run])}"/>')
    parts += _marks(frame, marks, css="mark", tz=tz)
    for p in points:
        if p.value is None:
            continue
        css = "anomaly" if p.anomaly and not p.expected else "expected" if p.expected else "point"
        band = (
            ""
            if p.lower is None or p.upper is None
            else (f" (expected {format_value(kind, p.lower)}–{format_value(kind, p.upper)})")
        )
        verdict = {"anomaly": " — anomaly", "expected": " — marked expected", "point": ""}[css]
        title = f"{_when(p.at, tz)}: {format_value(kind, p.value)}{band}{verdict}"
        radius = 4.5 if css != "point" else 2
        parts.append(
            f'<circle class="{css}" cx="{frame.x(p.at):.1f}" cy="{frame.y(p.value):.1f}" r="{radius}">'
            f"<title>{escape(title)}</title></circle>"
        )
    return _svg(frame, parts, label=label, css="volume-chart")


def limit_chart(
    *,
    points: Sequence[tuple[datetime, float | None]],
    limits: Sequence[tuple[str, float | Sequence[tuple[datetime, float | None]]]],
    start: datetime,
    end: datetime,
    tz: tzinfo,
    kind: str,
    label: str,
    marks: Sequence[tuple[datetime, str]] = (),
) -> SafeString:
    """A value over time (age of the newest row, replication lag) against named limit lines.

    A limit is a constant (a straight line across the chart) or a series of (time, value), broken at gaps."""
    points = sorted((p for p in points if start <= p[0] <= end), key=lambda p: p[0])
    limits = [
        (
            name,
            [(start, series), (end, series)] if isinstance(series, int | float) else series,
            isinstance(series, int | float),
        )
        for name, series in limits
    ]
    limit_values = [v for _, series, _ in limits for _, v in series]
    low, high = value_domain([v for _, v in points] + limit_values, durations=kind in DURATION_KINDS)
    frame = Frame(start, end, low, high, height=200)
    parts = _axes(frame, tz=tz, kind=kind)
    max_gap = typical_step([at for at, _ in points]) * 3
    for index, (name, series, constant) in enumerate(limits):
        series = sorted((p for p in series if start <= p[0] <= end), key=lambda p: p[0])
        for run in [series] if constant else split_at_gaps(series, max_gap=max_gap):
            path = line_path([(frame.x(at), frame.y(v)) for at, v in run])
            parts.append(f'<path class="limit limit-{index}" d="{path}"><title>{escape(name)}</title></path>')
    for run in split_at_gaps(points, max_gap=max_gap):
        parts.append(f'<path class="line" d="{line_path([(frame.x(at), frame.y(v)) for at, v in run])}"/>')
        for at, value in run:
            title = f"{_when(at, tz)}: {format_value(kind, value)}"
            parts.append(
                f'<circle class="hover" cx="{frame.x(at):.1f}" cy="{frame.y(value):.1f}" r="3">'
                f"<title>{escape(title)}</title></circle>"
            )
    parts += _marks(frame, marks, css="mark", tz=tz)
    return _svg(frame, parts, label=label, css="limit-chart")


def sparkline(
    values: Sequence[float | None], *, width: int = 120, height: int = 26, standalone: bool = False
) -> SafeString:
    """A small line of the latest values (None breaks the line); empty when there is nothing to draw.

    `standalone`: a document of its own (served as an image), styled inline and empty but valid without data."""
    if not any(v is not None for v in values):
        if standalone:
            return mark_safe(f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}"/>')  # noqa: S308 - numbers only
        return mark_safe("")
    low, high = value_domain(values)
    x = LinearScale(0, max(len(values) - 1, 1), 1, width - 1)
    y = LinearScale(low, high, height - 2, 2)
    runs, current = [], []
    for index, value in enumerate(values):
        if value is None:
            if current:
                runs.append(current)
            current = []
        else:
            current.append((x(index), y(value)))
    if current:
        runs.append(current)
    path = "".join(line_path(run) for run in runs)
    style = ' fill="none" stroke="#2563eb" stroke-width="1.4"' if standalone else ""
    return mark_safe(  # noqa: S308 - numbers only
        f'<svg class="spark" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" aria-hidden="true"><path d="{path}"{style}/></svg>'
    )


def downsample_max(
    points: Sequence[tuple[datetime, float | None]], *, bucket: timedelta
) -> list[tuple[datetime, float]]:
    """The largest value of each `bucket` of time (at its latest point), for long series of frequent values."""
    kept: dict[int, tuple[datetime, float]] = {}
    seconds = bucket.total_seconds()
    for at, value in points:
        if value is None:
            continue
        key = int(at.timestamp() // seconds)
        best = kept.get(key)
        if best is None or value >= best[1]:
            kept[key] = (at, value)
    return [kept[key] for key in sorted(kept)]
