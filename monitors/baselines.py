"""Robust anomaly baselines for Pulse metrics (pure Python, standard library only).

A metric value is judged against a baseline learned from the caller's history:

* Centre: a median, either of the whole history or of the history points in the same
  seasonal bucket as the point under test (hour of day, day of week or hour of week; see
  ``choose_seasonality``).  An hour of week, of which a 14-day window holds only two, is
  an hour-of-day profile times its weekday's ratio to it, both learnt from every day of
  the history (``_fit_week``).  The centre then follows the current level: a robust
  (Theil-Sen) line through the median prediction error of each block of 24 history points
  gives the level offset now, so a growing table is not judged against last week's size.
* Scale: a MAD, but of *leave-one-out prediction errors*: every history point is predicted
  by its bucket without itself, and the MAD of those errors (levelled block by block) is
  used.  The band is therefore a prediction interval that includes the error of estimating
  the centre from a handful of points.  Noise that grows with the level (busy hours,
  weekdays) is modelled as MAD ~ level ** k with k fitted in [0, 1], from the points
  predicted above zero (hours a table is always empty say nothing about its busy hours).
* Score: the modified z-score ``0.6745 * (value - centre) / MAD``; the point fails beyond
  ``sensitivity`` (3.5 by default, Iglewicz & Hoaglin), i.e. ~3.5 robust standard deviations.

All metrics Pulse judges are non-negative (row counts, null counts and rates, ages), so
the lower edge of the band is clamped at zero.  Seasonal buckets use the datetimes' own
wall-clock fields: pass local-time datetimes if the pattern follows local business hours.
"""

from __future__ import annotations

import itertools
import math
import operator
import statistics
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

MIN_HISTORY_POINTS = 24
"""Fewer history points than this (inside the training window) means "learning": no verdict.

24 is one day of an hourly metric: enough for the median and MAD of a non-seasonal
baseline.  Seasonal baselines additionally need several cycles (``SEASONAL_MIN_CYCLES``).
A daily metric needs a training window of at least 24 days to leave learning.
"""

MIN_CADENCE_GAPS = 5
"""``expected_update_gap`` needs at least this many non-zero gaps between updates."""

DEFAULT_SENSITIVITY = 3.5
DEFAULT_TRAINING_WINDOW = timedelta(days=14)

MODIFIED_Z = 0.6745
"""For normal data MAD = 0.6745 * sd, so a modified z-score counts robust standard deviations."""

MAD_FLOOR_RELATIVE = 0.005 * MODIFIED_Z
"""The MAD never drops below 0.5 % of |centre| (in sd terms): the band is at least +-1.75 %.

A perfectly flat series (MAD == 0) then tolerates a one-row wiggle on a hundred rows, while
a real change of a few percent still fails.
"""

MAD_FLOOR_ABSOLUTE = 1e-9
"""Last-resort scale for a series flat at zero: any non-zero value then fails."""

MEAN_ABSOLUTE_DEVIATION_TO_MAD = 0.8453
"""When the MAD is 0 but values do vary (more than half identical), 0.8453 * mean absolute
deviation stands in for it (the MAD / mean absolute deviation ratio of normal data)."""

SEASONALITIES = ("none", "hour_of_day", "day_of_week", "hour_of_week")
DIRECTIONS = ("both", "spike", "drop")

SEASONAL_MIN_CYCLES = {"hour_of_day": 3, "day_of_week": 1, "hour_of_week": 1}
"""Auto-seasonality considers a bucketing once the history spans this many cycles.

Three days for hour of day.  One week for the weekly bucketings: with the default 14-day
window three weeks could never be reached, and a weekly pattern that is ignored makes every
weekend fail (and, once those points are excluded from history, keep failing).  The
out-of-sample comparison in ``choose_seasonality`` guards against over-fitting one week.
"""

SEASONAL_MIN_GAIN = 0.1
"""A finer bucketing must cut the mean absolute leave-one-out error by 10 % to be chosen.

The mean (not the median) error is compared so that a bucketing that is wrong for a
minority of points (weekends, one batch hour) loses even if most points fit; outliers
and incidents in the history add the same error to every candidate.
"""

POOL_BELOW_POINTS = 7
"""An hour-of-day bucket with fewer points also uses the hour before and after (weekdays are
never pooled: Friday says little about Saturday)."""

WEEK_POOL_HOURS = 2
WHOLE_DAY = 23
"""Hour-of-week ratios pool the weekday's whole day, or its hours within +-2 hours when that
predicts the weekday better; never across midnight (weekday effects switch at day boundaries)."""

MIN_BUCKET_POINTS = 3
"""A bucket (after pooling) needs this many points, else the next coarser baseline is used:
hour of week -> hour of day -> non-seasonal; day of week -> non-seasonal."""

MIN_RESIDUAL_COVERAGE = 0.8
"""A bucketing is only considered if at least 80 % of history points can be predicted."""

MIN_RELATIVE_POINTS = 8
"""A positive centre is judged on relative errors, learnt from the history points predicted
above zero (at least 8 of them): the exact zeros of the hours or days a table is always empty
say nothing about the noise of its loaded hours."""

LEVEL_POINTS = 24
LEVEL_MIN_POINTS = 8
MAX_LEVEL_DROP = 0.9
"""Level tracking works on blocks of 24 consecutive history points (at least 8 predicted)
and never moves the centre below 10 % of the seasonal median."""

PREDICTION_CORRECTION = math.sqrt((1 + math.pi / (2 * LEVEL_POINTS)) * LEVEL_POINTS / (LEVEL_POINTS - 1))
"""The errors are levelled in-sample (their own block's median is removed) while the level
now is an estimate: widening the MAD by ~5.5 % makes the band a calibrated prediction
interval again (the variance of a median of n points is ~ pi / 2n of the noise variance)."""

NOISE_GROUP_POINTS = 5
NOISE_BINS = 4
NOISE_BIN_POINTS = 12
NOISE_MIN_LOG_RANGE = math.log(1.5)
"""The noise exponent k (MAD ~ level ** k) is the weighted slope of log MAD on log level
over the hours of the day (at least 5 errors each) for hourly baselines, else (or while
most hours have fewer errors) over 4 bins of at least 12 errors by level; fitted only if
the levels span a factor of 1.5."""

POISSON_EXACT_BELOW = 50.0
"""Counts expected below this are judged by their exact Poisson tail while counting noise sets the
spread: at 50 the normal approximation's one-sided 3.5-sd tail is within a factor of ~2 of the exact one."""

MIN_EXPECTED_COUNT = 0.5
"""A count is never expected below half a row when judging by counting noise: the median of sparse counts
is often 0 where the rate is not (five rows in a bucket that is usually empty still fail, four do not)."""

SIMILAR_HOURS = 2.0
SIMILAR_DAYS = 1.5
"""A small count on the hour-of-week fit is the mean of the hours whose profile is within a factor of 2 of its own
hour's (not a weekend's quiet night with its busy day), on its weekday and the weekdays whose whole-day ratio is
within a factor of 1.5 of its weekday's (Monday to Friday nights share a rate; weekend nights are apart); on
differences, whose mean rows are within that factor or within the counting noise of the two means."""

BUSY_COUNT = 25.0
"""Counts: the relative extra noise is fitted on buckets expected to hold at least 25 rows (counting noise at
most a fifth of the count there); the counting noise's dispersion on the quieter ones."""

MAX_RELATIVE_NOISE = 2.0
"""Counts: the relative extra noise k (variance = dispersion * mu + (k * mu) ** 2) is capped here."""

LEVEL_SHIFT_MIN_POINTS = 3
"""After a level shift (``level_since``) the history before it keeps its seasonal shape, rescaled to the level of
the points since the shift: at least 3 of them (predicted above zero), else the verdict is learning."""

SHIFT_NOISE_POINTS = 24
"""After a level shift, the count noise is fitted on the busy points since the shift once there are 24 of them (a
median of fewer per-point estimates is too noisy to narrow a band on)."""

SIDES = ("high", "low")
"""``after_anomaly``: the side on which the bucket right before the one under test was judged anomalous."""

MIN_CADENCE_TOLERANCE_FRACTION = 0.1
MIN_CADENCE_TOLERANCE = timedelta(minutes=1)

_CYCLE = {"none": 1, "hour_of_day": 24, "day_of_week": 7, "hour_of_week": 168}
_PERIOD = {"hour_of_day": timedelta(days=1), "day_of_week": timedelta(weeks=1), "hour_of_week": timedelta(weeks=1)}
_FALLBACK = {"hour_of_week": "hour_of_day", "hour_of_day": "none", "day_of_week": "none", "none": None}
SEASONALITY_LABELS = _LABEL = {
    "none": "non-seasonal baseline",
    "hour_of_day": "hour-of-day baseline",
    "day_of_week": "day-of-week baseline",
    "hour_of_week": "hour-of-week baseline",
}

Point = tuple[datetime, float]


@dataclass(frozen=True)
class Verdict:
    """The judgement of one value.

    ``median`` is the centre of the band (the seasonal median moved to the current level),
    ``mad`` its scale (so ``score = 0.6745 * (value - median) / mad``); both None while learning.
    ``spread_source`` says what set the scale: ``history`` (the MAD of the prediction errors),
    ``counting_noise`` (the Poisson noise of the expected count) or ``relative_floor`` (0.5 % of
    the centre); ``tail_probability`` is the exact Poisson tail of the value when a small
    expected count was judged with it (else None); ``training_points`` the history points used;
    ``verdict`` the message's predicate ("is within the expected 0-13"), for callers with their own subject;
    ``quiet_day`` that a low count passed as a holiday-like quiet day (callers keep it out of training);
    ``dispersion`` and ``relative_noise`` the count noise model fitted on the history (rows per bucket:
    variance = dispersion * expected + (relative_noise * expected) ** 2; None when not fitted);
    ``after_anomaly`` the side ("high" or "low") whose band edge was drawn for a bucket right after one judged
    anomalous on that side (``run_limit``), else "";
    ``quiet_day_band`` that the band is the table's quietest weekday's at this hour (``quiet_today``).
    """

    learning: bool
    is_anomaly: bool
    expected_lower: float | None
    expected_upper: float | None
    median: float | None
    mad: float | None
    score: float | None
    seasonality: str
    message: str
    verdict: str = ""
    quiet_day: bool = False
    spread_source: str = ""
    tail_probability: float | None = None
    training_points: int = 0
    dispersion: float | None = None
    relative_noise: float | None = None
    after_anomaly: str = ""
    quiet_day_band: bool = False

    @property
    def spread(self) -> float | None:
        """The robust standard deviation behind the band (MAD / 0.6745)."""
        return None if self.mad is None else self.mad / MODIFIED_Z


def tail_limit(sensitivity: float) -> float:
    """The one-sided normal tail beyond ``sensitivity`` sd: what a Poisson tail must fall below to fail."""
    return 0.5 * math.erfc(sensitivity / math.sqrt(2))


def run_limit(sensitivity: float) -> float:
    """The tail limit of a bucket right after one judged anomalous on the same side: the square root of
    ``tail_limit`` (1.5e-2, 2.2 sd, at the default 3.5), so that two such buckets in a row are as unlikely as one
    bucket beyond the band: an anomaly that lasts is caught by its second bucket even when that bucket alone would
    sit just inside its band."""
    return math.sqrt(tail_limit(sensitivity))


def poisson_tails(value: float, expected: float) -> tuple[float, float]:
    """(P(X <= value), P(X >= value)) for X ~ Poisson(expected); ``value`` is rounded to a count."""
    return count_tails(value, expected)


def poisson_band(expected: float, limit: float) -> tuple[float, float]:
    """The counts whose both tails stay at or above ``limit``: values outside fail the exact test."""
    return count_band(expected, limit)


_LOWEST_LOG_TERM = -700.0  # exp() of less underflows towards 0: a sum of counts starts where its terms do not


def _count_terms(mean: float, relative_noise: float):
    """(k, P(Y = k)) for k = k0, k0 + 1, ... for a count Y of the given mean: Poisson, or negative binomial with
    variance mean + (relative_noise * mean) ** 2. k0 is 0 unless P(Y = 0) underflows (a large mean): then the
    first count whose probability does not, so that the terms never vanish (what lies below k0 is under 1e-300)."""
    if relative_noise**2 * mean < 1e-12:
        shape, ratio = None, 0.0
        log_mean = math.log(mean)

        def log_term(k: int) -> float:
            return k * log_mean - mean - math.lgamma(k + 1)

    else:
        shape = 1 / relative_noise**2
        ratio = mean / (shape + mean)
        log_ratio, log_rest, log_gamma_shape = math.log(ratio), math.log1p(-ratio), math.lgamma(shape)

        def log_term(k: int) -> float:
            return math.lgamma(k + shape) - log_gamma_shape - math.lgamma(k + 1) + shape * log_rest + k * log_ratio

    k = 0
    if log_term(0) < _LOWEST_LOG_TERM:  # log_term rises up to the mode (at most the mean): bisect for k0
        low, high = 0, math.floor(mean)
        while low < high:
            middle = (low + high) // 2
            low, high = (middle + 1, high) if log_term(middle) < _LOWEST_LOG_TERM else (low, middle)
        k = low
    term = math.exp(log_term(k))
    while True:
        yield k, term
        term *= ratio * (k + shape) / (k + 1) if shape is not None else mean / (k + 1)
        k += 1


def count_tails(
    value: float, expected: float, *, dispersion: float = 1.0, relative_noise: float = 0.0
) -> tuple[float, float]:
    """(P(X <= value), P(X >= value)) for a count X of mean ``expected`` whose rows come in clumps of
    ``dispersion`` (X / dispersion is Poisson, or negative binomial with ``relative_noise`` > 0: variance
    dispersion * expected + (relative_noise * expected) ** 2). Plain Poisson by default."""
    if expected <= 0:
        return 1.0, 1.0 if round(value) <= 0 else 0.0
    if dispersion == 1.0:
        down = up = max(0, round(value))
    else:
        down, up = max(0, math.floor(value / dispersion + 1e-9)), max(0, math.ceil(value / dispersion - 1e-9))
    mean = expected / dispersion
    below_up = at_most = None  # P(X < up), P(X <= down)
    cumulative = 0.0
    for k, term in _count_terms(mean, relative_noise):
        if below_up is None and k >= up:
            below_up = cumulative
        if at_most is None and k > down:
            at_most = cumulative
        if (below_up is not None and at_most is not None) or (k > mean and 1.0 - cumulative < 1e-16):
            break
        cumulative += term
    if at_most is None:
        at_most = cumulative
    if below_up is None:
        below_up = cumulative
    return min(1.0, at_most), max(0.0, 1.0 - below_up)


def count_band(
    expected: float, limit: float, *, dispersion: float = 1.0, relative_noise: float = 0.0
) -> tuple[float, float]:
    """The counts whose both tails (``count_tails``) stay at or above ``limit``: values outside fail."""
    if expected <= 0:
        return 0.0, 0.0
    cumulative, lower = 0.0, None
    for k, term in _count_terms(expected / dispersion, relative_noise):
        cumulative += term
        if lower is None and cumulative >= limit:
            lower = k
        if 1.0 - cumulative < limit:  # P(X >= k + 1) below the limit: k is the last count that passes
            return dispersion * lower, dispersion * k
    raise AssertionError("unreachable")


def _learning(message: str, *, seasonality: str, training_points: int) -> Verdict:
    """A verdict that judges nothing yet: too few points to learn from."""
    return Verdict(
        learning=True,
        is_anomaly=False,
        expected_lower=None,
        expected_upper=None,
        median=None,
        mad=None,
        score=None,
        seasonality="none" if seasonality == "auto" else seasonality,
        message=message,
        training_points=training_points,
    )


def evaluate(
    *,
    history: Sequence[Point],
    at: datetime,
    value: float,
    sensitivity: float = DEFAULT_SENSITIVITY,
    direction: str = "both",
    min_relative_change: float = 0.0,
    min_absolute_change: float = 0.0,
    seasonality: str = "auto",
    min_history_points: int = MIN_HISTORY_POINTS,
    training_window: timedelta = DEFAULT_TRAINING_WINDOW,
    unit: str = "",
    counts: bool = False,
    level_since: datetime | None = None,
    quiet_today: bool = False,
    after_anomaly: str | None = None,
) -> Verdict:
    """Judge ``value`` observed at ``at`` against ``history``.

    ``history`` must already exclude past anomalies (unless marked expected) and the point
    under test; only points in ``[at - training_window, at)`` are used.  With fewer than
    ``min_history_points`` of them the verdict is ``learning`` and never an anomaly, not
    even for a zero.  Deviations smaller than ``min_relative_change * |centre|`` or
    ``min_absolute_change`` never fail, except a drop to zero that is itself significant.
    A MAD of 0 (a flat series) is replaced by 0.8453 * mean absolute error when values vary
    at all, and the MAD never drops below ``MAD_FLOOR_RELATIVE`` * |centre|, so a flat 1,000
    rows tolerates +-17 rows but fails on 1,050.

    ``counts=True`` (rows counted per time bucket): the spread is never below the Poisson
    noise of the expected count (sd = sqrt(centre)), and while that noise sets the spread and
    the centre is below ``POISSON_EXACT_BELOW`` the value is judged by its exact Poisson tail
    (failing below ``tail_limit(sensitivity)``), not by a normal approximation: a quiet hour of
    a sparse table, or an empty one where a few rows are expected, does not fail.
    ``level_since`` (a level shift accepted then): the history before it keeps its seasonal shape but is
    rescaled to the level of the points since then (``rescaled_to_new_level``); while fewer than
    ``LEVEL_SHIFT_MIN_POINTS`` of those are known the verdict is learning.
    ``quiet_today``: an earlier bucket of the day already passed as a quiet day (the caller keeps such buckets,
    and the rest of that day, out of ``history``), so the bucket is judged as one of the table's quietest weekday at
    its hour (``_quiet_day_center``), when that weekday is quieter: a low count needs no more evidence of the day, and
    a spike into a holiday's evening is measured against a quiet evening, not a working one.
    ``after_anomaly`` ("high" or "low"): the bucket right before this one was judged anomalous on that side; that
    side's band edge is drawn at ``run_limit(sensitivity)`` instead (2.2 robust sd at the default 3.5), so a
    lasting anomaly fails in its second bucket too.
    ``unit`` (e.g. "rows") only decorates the message.
    """
    _validate(sensitivity=sensitivity, direction=direction, seasonality=seasonality, value=value)
    if after_anomaly is not None and after_anomaly not in SIDES:
        raise ValueError(f"after_anomaly must be one of {', '.join(SIDES)}")
    points = _window(history, at=at, training_window=training_window)
    if level_since is not None and points:
        rescaled = rescaled_to_new_level(points, level_since=level_since, seasonality=seasonality)
        if rescaled is None:
            since_shift = sum(1 for t, _ in points if t >= level_since)
            return _learning(
                f"Learning the new level: {since_shift} of {LEVEL_SHIFT_MIN_POINTS} points since the level shift "
                "collected.",
                seasonality=seasonality,
                training_points=len(points),
            )
        points = rescaled
    if not points or len(points) < min_history_points:
        return _learning(
            f"Learning the baseline: {len(points)} of {min_history_points} history points collected.",
            seasonality=seasonality,
            training_points=len(points),
        )

    data = _Data(points, counts=counts)
    mode = _choose(data) if seasonality == "auto" else seasonality
    center, mad, mode, source, noise = _baseline(data, at=at, mode=mode, counts=counts, noise_since=level_since)
    quiet_center = _quiet_day_center(data, at=at, mode=mode) if counts and quiet_today else None
    as_quiet_day = quiet_center is not None and quiet_center < center
    if as_quiet_day:
        center = quiet_center
        if noise is not None:
            mad, source = _count_mad(center, noise)
    rate = max(center, MIN_EXPECTED_COUNT)
    if counts and noise is None and MODIFIED_Z * math.sqrt(rate) > mad:
        mad, source = MODIFIED_Z * math.sqrt(rate), "counting_noise"
    dispersion, relative_noise = noise or (1.0, 0.0)

    deviation = value - center
    score = MODIFIED_Z * deviation / mad
    tail = None
    exact = counts and (noise is not None or source == "counting_noise") and center < POISSON_EXACT_BELOW
    after_anomaly = after_anomaly if exact else None  # a busy bucket's error is mostly its day's: shared, not new
    limits = {side: run_limit(sensitivity) if side == after_anomaly else tail_limit(sensitivity) for side in SIDES}
    if exact:
        at_most, at_least = count_tails(value, rate, dispersion=dispersion, relative_noise=relative_noise)
        tail = min(at_most, at_least)
        lower, upper = (
            count_band(rate, limits[side], dispersion=dispersion, relative_noise=relative_noise)[edge]
            for edge, side in enumerate(("low", "high"))
        )
        high, low = at_least < limits["high"], at_most < limits["low"]
    else:
        half_width = sensitivity * mad / MODIFIED_Z
        lower, upper = max(0.0, center - half_width), center + half_width
        high, low = score > sensitivity, score < -sensitivity
    quiet_day = (
        counts
        and low
        and _like_a_quiet_day(
            data, at=at, value=value, mode=mode, sensitivity=sensitivity, noise=noise, quiet_today=quiet_today
        )
    )
    low = low and not quiet_day
    outside = (high and direction != "drop") or (low and direction != "spike")
    small = abs(deviation) < min_relative_change * abs(center) or abs(deviation) < min_absolute_change
    dropped_to_zero = value == 0 and low and direction != "spike"
    is_anomaly = dropped_to_zero or (outside and not small)

    expected = f"the expected {band(lower, upper, whole=counts)}"
    if as_quiet_day:
        expected = f"{expected} of the table's quiet days"
    if after_anomaly:
        expected = f"{expected} of a bucket right after an anomalous one"
    if quiet_day:
        verdict = f"is below {expected} but as quiet as the table's quiet days, like the rest of the day so far"
    elif dropped_to_zero:
        verdict = f"is a drop to zero from {expected}"
    elif outside and small:
        verdict = f"is outside {expected} but within the configured minimum change"
    elif is_anomaly:
        verdict = f"is {'above' if deviation > 0 else 'below'} {expected}"
    else:
        verdict = f"is within {expected}"
    message = f"{format_number(value)} {unit}".rstrip() + f" {verdict} ({_LABEL[mode]})"
    return Verdict(
        learning=False,
        is_anomaly=is_anomaly,
        expected_lower=lower,
        expected_upper=upper,
        median=center,
        mad=mad,
        score=score,
        seasonality=mode,
        message=message,
        verdict=verdict,
        quiet_day=quiet_day,
        spread_source=source,
        tail_probability=tail,
        training_points=len(points),
        dispersion=None if noise is None else dispersion,
        relative_noise=None if noise is None else relative_noise,
        after_anomaly=after_anomaly or "",
        quiet_day_band=as_quiet_day,
    )


def rescaled_to_new_level(
    points: list[Point], *, level_since: datetime, seasonality: str = "auto"
) -> list[Point] | None:
    """The history with the points before ``level_since`` moved to the level of the points since then.

    The older points' seasonal fit predicts each newer point; the ratio of the sums (observed / predicted,
    over the newer points predicted above zero) rescales every older point, so the table keeps its daily
    and weekly shape instead of relearning without it. Without older points the history is returned as is;
    None while fewer than ``LEVEL_SHIFT_MIN_POINTS`` newer points are predicted above zero."""
    older = [(t, v) for t, v in points if t < level_since]
    newer = [(t, v) for t, v in points if t >= level_since]
    if len(older) < MIN_HISTORY_POINTS:
        return newer if older else points
    data = _Data(older)
    mode = _choose(data) if seasonality == "auto" else seasonality
    pairs = []
    for moment, value in newer:
        predicted = _predict(data, mode=mode, at=moment)
        if predicted is not None and predicted > 0:
            pairs.append((value, predicted))
    if len(pairs) < LEVEL_SHIFT_MIN_POINTS:
        return None
    factor = math.fsum(v for v, _ in pairs) / math.fsum(p for _, p in pairs)
    return [(t, v * factor) for t, v in older] + newer


def _predict(data: _Data, *, mode: str, at: datetime) -> float | None:
    """The seasonal median of ``at``'s bucket, from the finest bucketing that has one."""
    while mode is not None:
        center = data.fit(mode).predict(_key(mode, at))
        if center is not None:
            return center
        mode = _FALLBACK[mode]
    return None


def _weekday_predictions(data: _Data, *, mode: str, keys: list[int]) -> dict[int, dict[int, float]]:
    """{weekday: {key: prediction}} on a weekly baseline (hour_of_week: keys are hours; day_of_week: [0], the day),
    for the weekdays that predict every key."""
    fit, weekly = data.fit(mode), mode == "hour_of_week"
    days = {}
    for weekday in range(7):
        predicted = {key: fit.predict(weekday * 24 + key if weekly else weekday) for key in keys}
        if all(p is not None for p in predicted.values()):
            days[weekday] = predicted
    return days


def _quietest(days: dict[int, dict[int, float]]) -> int | None:
    """The weekday with the fewest rows predicted over the given keys."""
    return min(days, key=lambda weekday: math.fsum(days[weekday].values()), default=None)


def _quiet_day_center(data: _Data, *, at: datetime, mode: str) -> float | None:
    """The expectation of ``at``'s hour (rows per day: its day) on the table's quietest weekday, the one with the
    fewest rows predicted over the whole day (weekly baselines only; None on that weekday itself)."""
    if mode not in ("hour_of_week", "day_of_week"):
        return None
    hourly = mode == "hour_of_week"
    days = _weekday_predictions(data, mode=mode, keys=list(range(24)) if hourly else [0])
    quietest = _quietest(days)
    if quietest is None or quietest == at.weekday():
        return None
    return days[quietest][at.hour if hourly else 0]


def _like_a_quiet_day(
    data: _Data,
    *,
    at: datetime,
    value: float,
    mode: str,
    sensitivity: float,
    noise: tuple[float, float] | None,
    quiet_today: bool = False,
) -> bool:
    """A holiday: a low count that the table's quietest weekday explains at this hour, on a day whose buckets so
    far, on the hours where the quietest weekday is clearly quieter than this one, add up to what that weekday
    gives (weekly baselines only; rows per day: the day's count alone).

    A weekly baseline knows weekends are quiet; a public holiday on a weekday looks like one from its first busy
    hour. Hours that do not tell the two weekdays apart (nights: their bands under counting noise alone overlap;
    the relative noise, a day's load and the fit's error, would hide busy hours too) are no evidence either way, and
    the sum over the
    hours that do is judged rather than each bucket, so a holiday's noisy night does not spoil the match. Not
    excused: a drop that starts after the day's normal activity began (its busy hours are far above the quiet
    total), a count below even the quietest weekday's band (an outage on a holiday), and, for hourly buckets, a
    drop with nothing known of the day yet; the price is that a table that falls to its quiet-day level from the
    first busy hour of a weekday passes that day as a holiday (its freshness still watches it)."""
    if mode not in ("hour_of_week", "day_of_week"):
        return False
    weekly = mode == "hour_of_week"
    midnight = at.replace(hour=0, minute=0, second=0, microsecond=0)
    today = [(moment.hour, earlier) for moment, earlier in zip(data.times, data.values) if midnight <= moment < at]
    if weekly and not today and not quiet_today:
        return False  # nothing known of the day yet: judged as any other drop
    keys = [hour for hour, _ in today] + [at.hour] if weekly else [0]
    days = _weekday_predictions(data, mode=mode, keys=keys)
    own = days.get(at.weekday())
    quietest = _quietest(days)
    if own is None or quietest == at.weekday():
        return False  # the quietest weekday itself: its drops are drops
    quiet = days[quietest]
    counting = (noise or (1.0, 0.0))[0], 0.0
    lower, upper = _count_range(quiet[keys[-1]], sensitivity=sensitivity, noise=noise)
    if not lower <= value <= upper:
        return False
    telling = [
        (earlier, quiet[hour])
        for hour, earlier in today
        if _count_range(own[hour], sensitivity=sensitivity, noise=counting)[0]
        > _count_range(quiet[hour], sensitivity=sensitivity, noise=counting)[1]
    ]
    if not telling:
        return True
    lower, upper = _count_range(math.fsum(q for _, q in telling), sensitivity=sensitivity, noise=noise)
    return lower <= math.fsum(e for e, _ in telling) <= upper


def _count_range(expected: float, *, sensitivity: float, noise: tuple[float, float] | None) -> tuple[float, float]:
    """The counts that pass around ``expected`` under the count noise model (exact tails for small counts)."""
    expected = max(expected, MIN_EXPECTED_COUNT)
    dispersion, relative_noise = noise or (1.0, 0.0)
    if expected < POISSON_EXACT_BELOW:
        limit = tail_limit(sensitivity)
        return count_band(expected, limit, dispersion=dispersion, relative_noise=relative_noise)
    half_width = sensitivity * math.sqrt(dispersion * expected + (relative_noise * expected) ** 2)
    return expected - half_width, expected + half_width


def choose_seasonality(*, history: Sequence[Point], at: datetime) -> str:
    """Pick the finest bucketing the history (points before ``at``) supports and rewards.

    Candidates go from coarse to fine: "none", "hour_of_day", "day_of_week",
    "hour_of_week".  A candidate is eligible once the history spans
    ``SEASONAL_MIN_CYCLES`` cycles and ``MIN_RESIDUAL_COVERAGE`` of its points can be
    predicted from their bucket.  It replaces the best so far only if it cuts the mean
    absolute leave-one-out prediction error by ``SEASONAL_MIN_GAIN``: out-of-sample
    errors, so buckets too thin to estimate well lose.
    """
    points = [(t, v) for t, v in history if t < at and math.isfinite(v)]
    if not points:
        return "none"
    return _choose(_Data(points))


def expected_update_gap(
    *, update_times: Sequence[datetime], sensitivity: float = DEFAULT_SENSITIVITY, after: datetime | None = None
) -> timedelta | None:
    """The longest normal gap between updates: median gap + sensitivity * 1.4826 * MAD.

    Zero-length gaps (duplicate timestamps) are ignored.  Returns None with fewer than
    ``MIN_CADENCE_GAPS`` gaps.  The allowance above the median is at least 10 % of the
    median gap (and a minute), so a punctual daily load gets ~26.4 hours.

    Weekly schedules: with ``after`` (the latest update) and a history reaching a week before
    it, the gap that followed the update of the same weekday and time a week earlier is
    allowed too (plus 10 %): a table loaded Monday to Friday waits ~79 hours after Friday's
    load, ~26 after the others.
    """
    times = sorted(update_times)
    usual = _usual_gap(times, sensitivity=sensitivity)
    weekly = None if usual is None or after is None else _gap_a_week_before(times, after=after, usual=usual)
    return usual if weekly is None else max(usual, weekly)


def _gap_a_week_before(times: list[datetime], *, after: datetime, usual: timedelta) -> timedelta | None:
    """The gap after the update closest to ``after - 7 days`` (within 10 % of the usual gap), + 10 %; None when that
    gap was long but the same update two weeks before was followed by a usual gap (one missed load, not a
    schedule)."""
    tolerance = max(MIN_CADENCE_TOLERANCE, MIN_CADENCE_TOLERANCE_FRACTION * usual)
    gap = _gap_after(times, moment=after - timedelta(weeks=1), tolerance=tolerance)
    if gap is None:
        return None
    if gap > usual:
        before = _gap_after(times, moment=after - timedelta(weeks=2), tolerance=tolerance)
        if before is not None and before <= usual:
            return None
    return gap + max(MIN_CADENCE_TOLERANCE, MIN_CADENCE_TOLERANCE_FRACTION * gap)


def _gap_after(times: list[datetime], *, moment: datetime, tolerance: timedelta) -> timedelta | None:
    """The gap that followed the first update within ``tolerance`` of ``moment``, if any."""
    for earlier, later in itertools.pairwise(times):
        if abs(earlier - moment) <= tolerance and later > earlier:
            return later - earlier
    return None


def _usual_gap(times: list[datetime], *, sensitivity: float) -> timedelta | None:
    gaps = [gap for gap in ((b - a).total_seconds() for a, b in itertools.pairwise(times)) if gap > 0]
    if len(gaps) < MIN_CADENCE_GAPS:
        return None
    median = statistics.median(gaps)
    mad = statistics.median(abs(gap - median) for gap in gaps)
    allowance = max(
        sensitivity * mad / MODIFIED_Z,
        MIN_CADENCE_TOLERANCE_FRACTION * median,
        MIN_CADENCE_TOLERANCE.total_seconds(),
    )
    return timedelta(seconds=median + allowance)


def mean_stddev_verdict(
    *, history: Sequence[Point], value: float, sensitivity: float = 3.0
) -> tuple[bool, float | None, float | None]:
    """Reference method: plain mean +- sensitivity * sample stddev (no seasonality, no floor)."""
    values = [v for _, v in history]
    if len(values) < 2:
        return False, None, None
    mean = math.fsum(values) / len(values)
    spread = sensitivity * math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))
    lower, upper = mean - spread, mean + spread
    return not lower <= value <= upper, lower, upper


@dataclass(frozen=True)
class _Fit:
    """Leave-one-out prediction errors of one bucketing, and its forecast for a bucket key."""

    mode: str
    residuals: list[float | None]
    criterion: float | None
    predict: Callable[[int], float | None]


class _Data:
    """History points as parallel lists, with the fits computed so far (``counts``: rows per bucket)."""

    def __init__(self, points: Sequence[Point], *, counts: bool = False) -> None:
        self.counts = counts
        self.times = [t for t, _ in points]
        self.values = [float(v) for _, v in points]
        self.hours = [t.hour for t in self.times]
        self.weekdays = [t.weekday() for t in self.times]
        count = len(points)
        first, last = min(self.times), max(self.times)
        self.span = (last - first) * count / (count - 1) if count > 1 else timedelta(0)
        self.order = sorted(range(count), key=self.times.__getitem__)
        self.fits: dict[str, _Fit] = {}
        self._week_keys: list[int] | None = None

    def keys(self, mode: str) -> list[int]:
        if mode == "hour_of_day":
            return self.hours
        if mode == "day_of_week":
            return self.weekdays
        if mode == "hour_of_week":
            if self._week_keys is None:
                self._week_keys = [day * 24 + hour for day, hour in zip(self.weekdays, self.hours)]
            return self._week_keys
        return [0] * len(self.values)

    def fit(self, mode: str) -> _Fit:
        if mode not in self.fits:
            self.fits[mode] = _fit_week(self) if mode == "hour_of_week" else _fit_buckets(self, mode)
        return self.fits[mode]


def _key(mode: str, at: datetime) -> int:
    if mode == "hour_of_day":
        return at.hour
    if mode == "day_of_week":
        return at.weekday()
    if mode == "hour_of_week":
        return at.weekday() * 24 + at.hour
    return 0


def _median_sorted(ordered: list[float]) -> float:
    """``statistics.median`` of a list already sorted (without sorting it again)."""
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def _median_without(ordered: list[float], value: float) -> float:
    """Median of a sorted list (of at least 2) with one element equal to ``value`` left out.

    Which element goes (the first equal one, at ``bisect_left(ordered, value)``) only matters by its side of the
    middle, so two comparisons with the middle elements pick the answer."""
    middle = (len(ordered) - 1) // 2
    upper = ordered[middle] if ordered[middle] < value else ordered[middle + 1]
    if len(ordered) % 2 == 0:
        return upper
    lower = ordered[middle - 1] if ordered[middle - 1] < value else ordered[middle]
    return (lower + upper) / 2


def _group(keys: list[int], values: Sequence[float | None]) -> tuple[dict[int, list], dict[int, list[int]]]:
    """Values and point indexes by bucket key (None values left out)."""
    own: dict[int, list] = {}
    members: dict[int, list[int]] = {}
    for index, key in enumerate(keys):
        value = values[index]
        if value is None:
            continue
        if key in own:
            own[key].append(value)
            members[key].append(index)
        else:
            own[key], members[key] = [value], [index]
    return own, members


def _criterion(residuals: list[float | None]) -> float | None:
    """Mean |error| over the history, if enough of its points were predicted."""
    errors = [abs(r) for r in residuals if r is not None]
    if not errors or len(errors) < MIN_RESIDUAL_COVERAGE * len(residuals):
        return None
    return statistics.fmean(errors)


def _fit_buckets(data: _Data, mode: str) -> _Fit:
    """Bucket medians; an hour under ``POOL_BELOW_POINTS`` points borrows its neighbours."""
    cycle = _CYCLE[mode]
    own, members = _group(data.keys(mode), data.values)

    def pooled(key: int) -> list[float]:
        values = own.get(key, [])
        if mode != "hour_of_day" or len(values) >= POOL_BELOW_POINTS:
            return sorted(values)
        return sorted(values + own.get((key - 1) % cycle, []) + own.get((key + 1) % cycle, []))

    ordered = {key: pooled(key) for key in members}
    residuals: list[float | None] = [None] * len(data.values)
    for key, indexes in members.items():
        bucket = ordered[key]
        if len(bucket) < MIN_BUCKET_POINTS:
            continue
        for index in indexes:
            value = data.values[index]
            residuals[index] = value - _median_without(bucket, value)

    predictions: dict[int, float | None] = {}

    def predict(key: int) -> float | None:
        if key not in predictions:
            bucket = ordered[key] if key in ordered else pooled(key)
            predictions[key] = _median_sorted(bucket) if len(bucket) >= MIN_BUCKET_POINTS else None
        return predictions[key]

    return _Fit(mode=mode, residuals=residuals, criterion=_criterion(residuals), predict=predict)


def _fit_week(data: _Data) -> _Fit:
    """Hour of week as an hour-of-day profile times the weekday's ratio to it.

    Both parts use every day of the history, not only the two of each weekday that a
    14-day window holds (one step of Tukey's median polish):

    1. Rough weekday ratios: the median of value / hour-of-day median over each weekday.
    2. Profile: per hour, the median of the values with their rough weekday ratio taken out.
    3. Ratios to that profile, pooled per weekday over the whole day, or over the same
       weekday's hours within +-``WEEK_POOL_HOURS`` when that cuts the weekday's mean
       leave-one-out error by ``SEASONAL_MIN_GAIN`` (a weekend with a flatter daily
       shape); never across midnight.

    Differences replace ratios when an hour-of-day median is not positive.

    Counts on ratios (``_Data.counts``): the profile is the hour's rows over its rough weekday ratios, and a weekday's
    factor its pool's rows over the pool's profile, the Poisson estimates. They weigh each hour by its rows, where a
    median of ratios is mostly the noise of the quiet hours, or falls between two clusters (a weekend pool that
    straddles busy and quiet hours of the profile): over 60 business-hours series the centre is 5.7 % off instead
    of 7.5 %.
    """
    day = data.fit("hour_of_day")
    hourly = {hour: day.predict(hour) for hour in set(data.hours)}
    relative = all(base is None or base > 0 for base in hourly.values())
    split = operator.truediv if relative else operator.sub
    join = operator.mul if relative else operator.add

    rough_ratios = [None if hourly[h] is None else split(v, hourly[h]) for v, h in zip(data.values, data.hours)]
    by_weekday, _ = _group(data.weekdays, rough_ratios)
    rough = {d: statistics.median(r) for d, r in by_weekday.items() if len(r) >= MIN_BUCKET_POINTS}
    adjusted = [
        None if d not in rough or (relative and rough[d] == 0) else split(v, rough[d])
        for v, d in zip(data.values, data.weekdays)
    ]
    weighted = data.counts and relative
    profile_points: dict[int, list[float]] = {}  # medians: the hour's sorted values
    profile: dict[int, float] = {}
    hour_sums: dict[int, tuple[float, float, int]] = {}  # counts: the hour's rows, expectation and points
    if weighted:
        pairs, _ = _group(
            data.hours,
            [None if d not in rough or rough[d] <= 0 else (v, rough[d]) for v, d in zip(data.values, data.weekdays)],
        )
        for hour, members in pairs.items():
            total, weight = math.fsum(v for v, _ in members), math.fsum(r for _, r in members)
            if len(members) >= MIN_BUCKET_POINTS and total > 0:
                profile[hour], hour_sums[hour] = total / weight, (total, weight, len(members))
    else:
        for hour, values in _group(data.hours, adjusted)[0].items():
            median = statistics.median(values) if len(values) >= MIN_BUCKET_POINTS else None
            if median is not None and (median > 0 or not relative):
                profile_points[hour], profile[hour] = sorted(values), median
    ratios = [None if h not in profile else split(v, profile[h]) for v, h in zip(data.values, data.hours)]

    def profile_without(index: int) -> float | None:
        """The profile at the point's hour, leaving the point out."""
        hour, own = data.hours[index], adjusted[index]
        if hour not in profile or own is None:
            return profile.get(hour)
        if weighted:
            total, weight, points = hour_sums[hour]
            rest = total - data.values[index]
            return rest / (weight - rough[data.weekdays[index]]) if points > MIN_BUCKET_POINTS and rest > 0 else None
        points = profile_points[hour]
        return _median_without(points, own) if len(points) > MIN_BUCKET_POINTS else None

    keys = data.keys("hour_of_week")
    pooled = _day_pools(keys, ratios)
    key_totals: dict[int, list[float]] = {}
    if weighted:
        for key, value, ratio, hour in zip(keys, data.values, ratios, data.hours):
            if ratio is not None:
                totals = key_totals.setdefault(key, [0.0, 0.0])
                totals[0] += value
                totals[1] += profile[hour]

    sums: dict[tuple[int, int], tuple[float, float]] = {}

    def pool_sums(key: int, width: int) -> tuple[float, float]:
        """Rows and profile summed over the pool of ``key`` (the hours within +-width of it, same day)."""
        midnight = key - key % 24
        bounds = max(midnight, key - width), min(midnight + 23, key + width)
        if bounds not in sums:
            members = [key_totals[k] for k in range(bounds[0], bounds[1] + 1) if k in key_totals]
            sums[bounds] = sum(t[0] for t in members), sum(t[1] for t in members)
        return sums[bounds]

    def factor_of(key: int, width: int) -> float | None:
        """The weekday's factor over the pool: a median of ratios; on counts, its rows over its profile (the Poisson
        estimate, which weighs each hour by its rows: a median of ratios is mostly the noise of its quiet hours)."""
        if not weighted:
            return _median_sorted(pooled(key, width))
        total, weight = pool_sums(key, width)
        return total / weight if weight > 0 else None

    bases = [None if ratio is None else profile_without(index) for index, ratio in enumerate(ratios)]
    candidates: dict[int, list[float | None]] = {}
    for width in (WHOLE_DAY, WEEK_POOL_HOURS):
        residuals: list[float | None] = [None] * len(keys)
        sizes = {key: len(pooled(key, width)) for key in set(keys)}
        totals = {key: pool_sums(key, width) for key in sizes} if weighted else {}
        for index, (key, base) in enumerate(zip(keys, bases)):
            if base is None or sizes[key] < MIN_BUCKET_POINTS:
                continue
            if weighted:  # the factor without the point
                total, weight = totals[key]
                weight -= profile[data.hours[index]]
                factor = (total - data.values[index]) / weight if weight > 0 else None
            else:
                factor = _median_without(pooled(key, width), ratios[index])
            if factor is not None:
                residuals[index] = data.values[index] - join(base, factor)
        candidates[width] = residuals

    widths: dict[int, int] = {}
    residuals = candidates[WHOLE_DAY]
    for weekday, members in _group(data.weekdays, data.values)[1].items():
        whole_day, near = (_mean_error(candidates[w], members) for w in (WHOLE_DAY, WEEK_POOL_HOURS))
        if near is not None and (whole_day is None or near < (1 - SEASONAL_MIN_GAIN) * whole_day):
            widths[weekday] = WEEK_POOL_HOURS
            for index in members:
                residuals[index] = candidates[WEEK_POOL_HOURS][index]

    counted, _ = _group(
        keys, [None if r is None else (v, profile[h]) for v, r, h in zip(data.values, ratios, data.hours)]
    )
    daily_values = {} if relative else _group(data.weekdays, data.values)[0]
    predictions: dict[int, float | None] = {}

    def predict(key: int) -> float | None:
        if key not in predictions:
            predictions[key] = _predict_week_bucket(key)
        return predictions[key]

    def similar_days(day: int) -> list[int]:
        """The weekdays whose whole-day ratio is within ``SIMILAR_DAYS`` of the day's; on differences, whose mean rows
        are, or differ from the day's by less than the counting noise of two means (``_similar_means``)."""
        if not relative:
            own = daily_values.get(day, ())
            return [
                d for d, values in daily_values.items() if d == day or _similar_means(values, own, factor=SIMILAR_DAYS)
            ]
        factors = {d: _median_sorted(b) for d in range(7) if len(b := pooled(d * 24, WHOLE_DAY)) >= MIN_BUCKET_POINTS}
        own = factors.get(day)
        if not own:
            return [day]
        return [d for d, factor in factors.items() if own / SIMILAR_DAYS <= factor <= own * SIMILAR_DAYS]

    def _predict_week_bucket(key: int) -> float | None:
        width = widths.get(key // 24, WHOLE_DAY)
        base, bucket = profile.get(key % 24), pooled(key, width)
        if len(bucket) < MIN_BUCKET_POINTS:
            width, bucket = WHOLE_DAY, pooled(key, WHOLE_DAY)  # the weekday's hours nearby left the window: its day
        if base is None or len(bucket) < MIN_BUCKET_POINTS:
            return None
        factor = factor_of(key, width)
        if factor is None:
            return None
        center = join(base, factor)
        if (relative and center >= BUSY_COUNT) or base <= 0:
            return center
        small = _small_count(counted, hour=key % 24, days=similar_days(key // 24), base=base)
        if small is None or (not relative and small >= BUSY_COUNT and center >= BUSY_COUNT):
            return center
        return small  # on differences, the gate is the similar hours' rows: a median of two clusters is neither

    return _Fit(mode="hour_of_week", residuals=residuals, criterion=_criterion(residuals), predict=predict)


def _day_pools(keys: list[int], ratios: list[float | None]) -> Callable[[int, int], list[float]]:
    """``pooled(key, width)``: sorted ratios of the hour-of-week keys within +-width of key, same day."""
    own, _ = _group(keys, ratios)
    pools: dict[tuple[int, int], list[float]] = {}

    def pooled(key: int, width: int) -> list[float]:
        midnight = key - key % 24
        first, last = max(midnight, key - width), min(midnight + 23, key + width)
        pool = pools.get((first, last))
        if pool is None:
            pool = pools[first, last] = []
            for k in range(first, last + 1):
                pool += own.get(k, ())
            pool.sort()
        return pool

    return pooled


def _small_count(
    counted: dict[int, list[tuple[float, float]]], *, hour: int, days: list[int], base: float
) -> float | None:
    """A small count's expectation on the hour-of-week fit: the mean rows of the hours, on the given weekdays
    (``similar_days``), whose profile is within a factor of ``SIMILAR_HOURS`` of ``base`` (its own hour's), the
    Poisson estimate of a rate those hours share. A median of a handful of small counts is off by a row or more (the
    median of Poisson(1.4) counts is 1, and 2 one hour later), and a weekday profile's hour-to-hour differences
    carried into a quiet weekend can be several times its rows. None with fewer than ``MIN_BUCKET_POINTS`` such
    hours."""
    similar = [
        value
        for day in days
        for key in range(day * 24, day * 24 + 24)
        for value, profile in counted.get(key, ())
        if base / SIMILAR_HOURS <= profile <= base * SIMILAR_HOURS
    ]
    if len(similar) < MIN_BUCKET_POINTS:
        return None
    return math.fsum(similar) / len(similar)


def _similar_means(a: list[float], b: list[float], *, factor: float) -> bool:
    """Counts of two groups (``MIN_BUCKET_POINTS`` or more each) whose means are within ``factor`` of each other, or
    differ by less than two standard errors of their difference under counting noise: a weekend's Saturday and
    Sunday of ~0.6 rows an hour read 0.45 and 0.75 over a day and a half as often as not."""
    if len(a) < MIN_BUCKET_POINTS or len(b) < MIN_BUCKET_POINTS:
        return False
    mean_a, mean_b = math.fsum(a) / len(a), math.fsum(b) / len(b)
    if mean_a <= 0 or mean_b <= 0:
        return mean_a == mean_b
    if mean_b / factor <= mean_a <= mean_b * factor:
        return True
    return abs(mean_a - mean_b) < 2 * math.sqrt(mean_a / len(a) + mean_b / len(b))


def _mean_error(residuals: list[float | None], members: list[int]) -> float | None:
    """Mean |error| over the given points, if enough of them were predicted."""
    return _criterion([residuals[index] for index in members])


def _choose(data: _Data) -> str:
    best = data.fit("none")
    for mode in ("hour_of_day", "day_of_week", "hour_of_week"):
        if data.span < SEASONAL_MIN_CYCLES[mode] * _PERIOD[mode]:
            continue
        candidate = data.fit(mode)
        if candidate.criterion is None or best.criterion is None:
            continue
        if candidate.criterion < (1 - SEASONAL_MIN_GAIN) * best.criterion:
            best = candidate
    return best.mode


def _baseline(
    data: _Data, *, at: datetime, mode: str, counts: bool = False, noise_since: datetime | None = None
) -> tuple[float, float, str, str, tuple[float, float] | None]:
    """Centre, MAD, the bucketing actually used (coarser when the bucket is too thin), what set the MAD and,
    for counts, the fitted count noise (dispersion, relative noise; see ``_count_noise``, from the points since
    ``noise_since`` when it is given) or None."""
    while True:
        fit = data.fit(mode)
        center = fit.predict(_key(mode, at))
        if center is not None:
            break
        fallback = _FALLBACK[mode]
        if fallback is None:
            center = statistics.median(data.values)
            break
        mode = fallback

    predicted = [None if r is None else v - r for v, r in zip(data.values, fit.residuals)]
    residuals: list[float | None] = list(fit.residuals)
    relative = center > 0 and sum(1 for p in predicted if p is not None and p > 0) >= MIN_RELATIVE_POINTS
    if relative:
        predicted = [p if p is not None and p > 0 else None for p in predicted]
        residuals = [None if p is None else r for r, p in zip(residuals, predicted)]
    errors = [None if r is None else (r / p if relative else r) for r, p in zip(residuals, predicted)]
    level_errors = _level_errors(errors, predicted) if counts and relative else errors
    blocks: list[tuple[float, float]] = []
    for end in range(len(data.order), 0, -LEVEL_POINTS):
        block = data.order[max(0, end - LEVEL_POINTS) : end]
        block_errors = [level_errors[i] for i in block if level_errors[i] is not None]
        if len(block_errors) < LEVEL_MIN_POINTS:
            continue
        level = statistics.median(block_errors)
        age = statistics.median((at - data.times[i]).total_seconds() for i in block)
        blocks.append((age, level))
        for i in block:
            if residuals[i] is not None:
                residuals[i] -= level * (predicted[i] if relative else 1.0)
    level = _level_now(blocks)
    center = center * (1 + max(level, -MAX_LEVEL_DROP)) if relative else max(0.0, center + level)

    noise = _count_noise(data, residuals, predicted, since=noise_since) if counts else None
    if noise is not None:
        mad, source = _count_mad(center, noise)
        return center, mad, mode, source, noise

    groups = data.hours if mode in ("hour_of_day", "hour_of_week") else None
    exponent = _noise_exponent(residuals, predicted, groups) if relative else 0.0
    spread = [abs(r) / p**exponent for r, p in zip(residuals, predicted) if r is not None and p is not None]
    mad = statistics.median(spread) if spread else 0.0
    if mad == 0 and spread:
        mad = MEAN_ABSOLUTE_DEVIATION_TO_MAD * statistics.fmean(spread)
    mad *= center**exponent * PREDICTION_CORRECTION
    floor = max(MAD_FLOOR_RELATIVE * abs(center), MAD_FLOOR_ABSOLUTE)
    return center, max(mad, floor), mode, "history" if mad >= floor else "relative_floor", None


def _count_mad(center: float, noise: tuple[float, float]) -> tuple[float, str]:
    """The MAD of a count expected at ``center`` under its fitted noise (dispersion, relative noise), and what set it:
    counting noise, the relative extra noise ("history") or the relative floor."""
    dispersion, relative_noise = noise
    rate = max(center, MIN_EXPECTED_COUNT)
    counting, extra = dispersion * rate, (relative_noise * rate) ** 2
    mad = MODIFIED_Z * math.sqrt(counting + extra)
    floor = MAD_FLOOR_RELATIVE * abs(center)
    if mad < floor:
        return floor, "relative_floor"
    return mad, "counting_noise" if counting >= extra else "history"


def _level_errors(errors: list[float | None], predicted: list[float | None]) -> list[float | None]:
    """The relative errors a count series' level is tracked on: those of the buckets predicted at ``BUSY_COUNT`` rows
    or more, when there are at least four blocks' worth of them. The median relative error of small counts is no
    level: where 0.6 rows are expected 55 % of the buckets are empty, so a block of quiet hours (a weekend, or one
    with a holiday kept out of training) reads -90 % and the next morning's first busy hour was expected at a tenth
    of itself ("69 rows is above the expected 11-53")."""
    busy = [e if e is not None and p is not None and p >= BUSY_COUNT else None for e, p in zip(errors, predicted)]
    return busy if sum(1 for e in busy if e is not None) >= 4 * LEVEL_MIN_POINTS else errors


def _count_noise(
    data: _Data, residuals: list[float | None], predicted: list[float | None], *, since: datetime | None = None
) -> tuple[float, float] | None:
    """(dispersion, relative noise) of a count series: variance = dispersion * mu + (k * mu) ** 2 at expected mu.

    Counting noise (rows arriving one by one: dispersion 1; in clumps: above 1) dominates quiet buckets, a relative
    extra noise k (load that varies from day to day, and the seasonal fit's own error) busy ones.

    * k: on the points predicted at ``BUSY_COUNT`` rows or more (the busier half when all are), from their levelled
      leave-one-out errors: the median of the points' own moment estimates, then one moment step that weighs each
      point by what it tells (``_weighted_k2``). None of the busy points: k = 0.
    * dispersion (at least 1: never narrower than Poisson): from the differences between each quiet bucket and
      the same bucket a week earlier (same hour and weekday), sum((a - b) ** 2 / 2) / sum((a + b) / 2), without
      the largest tenth of the differences (an incident the history kept). Differences, not prediction errors:
      a quiet hour the seasonal fit gets wrong (a weekend's business hours predicted at a few rows) is a bias,
      not noise. Fewer than ``MIN_RELATIVE_POINTS`` quiet pairs: 1.

    ``since`` (a level shift accepted then; the points before it are rescaled to the new level, which scales their
    counting noise too: doubled counts vary like a Poisson count of twice the variance): k and the dispersion are
    fitted on the points since then, once ``SHIFT_NOISE_POINTS`` of them are busy (before that, on all of them: the
    rescaled noise is wider, so the band errs on the quiet side while the new level is young).

    None with fewer than ``MIN_RELATIVE_POINTS`` points predicted above zero."""
    positive = [
        (p, r * r, t) for r, p, t in zip(residuals, predicted, data.times) if r is not None and p is not None and p > 0
    ]
    if len(positive) < MIN_RELATIVE_POINTS:
        return None
    busy = sorted((p, squared) for p, squared, _ in positive)
    split = bisect_left(busy, (BUSY_COUNT,))
    busy = busy[split:] if split else busy[len(busy) // 2 :]
    if since is not None:
        recent = [(p, squared) for p, squared, t in positive if t >= since and p >= BUSY_COUNT]
        busy = sorted(recent) if len(recent) >= SHIFT_NOISE_POINTS else busy
    relative_noise = 0.0
    if len(busy) >= MIN_RELATIVE_POINTS:
        k2 = max(0.0, statistics.median((squared / MODIFIED_Z**2 - p) / (p * p) for p, squared in busy))
        k2 = _weighted_k2(busy, start=k2)
        relative_noise = min(MAX_RELATIVE_NOISE, math.sqrt(k2) * PREDICTION_CORRECTION)
    earlier = dict(zip(data.times, data.values))
    week = timedelta(weeks=1)
    pairs = sorted(
        ((a - b) ** 2 / 2, (a + b) / 2, since is None or t - week >= since)
        for t, a in zip(data.times, data.values)
        if (b := earlier.get(t - week)) is not None and (a + b) / 2 < BUSY_COUNT
    )
    recent = [pair for pair in pairs if pair[2]]
    pairs = recent if len(recent) >= MIN_RELATIVE_POINTS else pairs
    if len(pairs) < MIN_RELATIVE_POINTS:
        return 1.0, relative_noise
    kept = pairs[: len(pairs) - len(pairs) // 10]
    level = math.fsum(m for _, m, _ in kept)
    if level <= 0:
        return 1.0, relative_noise
    variance = math.fsum(d for d, _, _ in kept) - relative_noise**2 * math.fsum(m * m for _, m, _ in kept)
    return max(1.0, variance / level), relative_noise


CHI2_CUT = 6.635
CHI2_KEPT_MEAN = 0.9248
"""A busy bucket's squared error beyond 6.635 times its variance (the 99th percentile of chi-squared with one degree of
freedom) is left out of the extra noise's estimate as an incident; the mean of what is kept is 0.9248 of the
variance."""


def _weighted_k2(busy: list[tuple[float, float]], *, start: float) -> float:
    """One step of the moment estimate of k ** 2 from (expected, squared error) pairs, each weighed by the inverse
    variance of its squared error under the ``start`` estimate, 2 * (p + k ** 2 p ** 2) ** 2: the busiest buckets say
    most about the relative noise, where a median of per-bucket estimates is as noisy as the quiet ones."""
    numerator = denominator = 0.0
    for p, squared in busy:
        variance = p + start * p * p
        if squared > CHI2_CUT * variance:
            continue
        weight = 1.0 / (variance * variance)
        numerator += weight * (squared / CHI2_KEPT_MEAN - p)
        denominator += weight * p * p
    return max(0.0, numerator / denominator) if denominator > 0 else start


def _level_now(blocks: list[tuple[float, float]]) -> float:
    """Level offset at age 0 from (age, level) blocks: Theil-Sen line, or the newest block."""
    if len(blocks) < 4:
        return blocks[0][1] if blocks else 0.0
    slopes = [
        (b_level - a_level) / (b_age - a_age)
        for k, (a_age, a_level) in enumerate(blocks)
        for b_age, b_level in blocks[k + 1 :]
        if b_age != a_age
    ]
    slope = statistics.median(slopes) if slopes else 0.0
    return statistics.median(level - slope * age for age, level in blocks)


def _noise_exponent(residuals: list[float | None], predicted: list[float | None], groups: list[int] | None) -> float:
    """k in MAD ~ level ** k: weighted slope of log MAD on log level over groups of errors.

    Groups are the hours of the day for hourly baselines (so a busy batch hour is its own
    group) once they cover most errors, otherwise ``NOISE_BINS`` bins of similar level.
    """
    pairs = [
        (p, abs(r), g)
        for r, p, g in zip(residuals, predicted, groups or [0] * len(residuals))
        if r is not None and p is not None
    ]
    chunks: list[list[tuple[float, float, int]]] = []
    if groups is not None:
        by_group: dict[int, list] = {}
        for pair in pairs:
            by_group.setdefault(pair[2], []).append(pair)
        chunks = [chunk for chunk in by_group.values() if len(chunk) >= NOISE_GROUP_POINTS]
    if sum(len(chunk) for chunk in chunks) < len(pairs) / 2:
        pairs.sort()
        size = len(pairs) // NOISE_BINS
        chunks = [pairs[k * size : (k + 1) * size] for k in range(NOISE_BINS)] if size >= NOISE_BIN_POINTS else []
    if len(chunks) < 2:
        return 0.0
    xs, ys, ws = [], [], []
    for chunk in chunks:
        level = statistics.median(p for p, _, _ in chunk)
        mad = statistics.median(e for _, e, _ in chunk)
        if level <= 0 or mad <= 0:
            return 0.0
        xs.append(math.log(level))
        ys.append(math.log(mad))
        ws.append(len(chunk))
    if max(xs) - min(xs) < NOISE_MIN_LOG_RANGE:
        return 0.0
    total = sum(ws)
    mean_x = sum(w * x for w, x in zip(ws, xs)) / total
    mean_y = sum(w * y for w, y in zip(ws, ys)) / total
    slope = sum(w * (x - mean_x) * (y - mean_y) for w, x, y in zip(ws, xs, ys)) / sum(
        w * (x - mean_x) ** 2 for w, x in zip(ws, xs)
    )
    return min(1.0, max(0.0, slope))


def _window(history: Sequence[Point], *, at: datetime, training_window: timedelta) -> list[Point]:
    start = at - training_window
    return [(t, v) for t, v in history if start <= t < at and math.isfinite(v)]


def _validate(*, sensitivity: float, direction: str, seasonality: str, value: float) -> None:
    if not sensitivity > 0:
        raise ValueError("sensitivity must be positive")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}")
    if seasonality != "auto" and seasonality not in SEASONALITIES:
        raise ValueError(f"seasonality must be 'auto' or one of {', '.join(SEASONALITIES)}")
    if not math.isfinite(value):
        raise ValueError("value must be a finite number")


def band(lower: float, upper: float, *, whole: bool = False) -> str:
    """An expected band as text, with an en dash: "1,068-1,838" (counts: whole numbers, widened outward)."""
    if whole:
        lower, upper = math.floor(lower), math.ceil(upper)
    return f"{format_number(lower)}–{format_number(upper)}"


def format_number(number: float) -> str:
    """Thousands separators for large or whole numbers, three significant digits otherwise."""
    if abs(number) >= 100 or number == int(number):
        return f"{number:,.0f}"
    return f"{number:,.3g}"
