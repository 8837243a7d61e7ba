"""Measure Pulse's anomaly detector on labelled synthetic hourly metrics.

Usage: python benchmarks/detector_quality.py [--series 100] [--days 28] [--seed N]
           [--anomaly-model exact|shift] [--outlier-share 0.02] [--workers 2]

Each series has its own level (50 to 50,000 an hour), daily shape (two harmonics with
random phases, amplitude 0-70 %; 15 % of series also have one busy batch hour at 1.5-3x),
weekly pattern (weekend dip to 40-90 % with a flatter weekend day, or a +-10 % per-weekday
wobble, or none), trend (-2 % to +4 % a week) and noise (1-8 % multiplicative plus 0-3 %
of the level additive; Gaussian, with 2 % of points drawn from Student-t with 3 degrees
of freedom instead).  After a 7-day warm-up, six anomalies per series are
injected (3, 5 and 10 robust-sd, each as a spike and as a drop, lasting 2-6 hours), where
robust-sd = 1.4826 * MAD of the series' own noise at that hour.  With ``--anomaly-model
exact`` (default) an anomalous value lies exactly that far from the noise-free value; with
``shift`` the offset is added on top of the noisy value (so a "5 robust-sd" spike can land
anywhere from ~3 to ~7 robust-sd away).

The walk mirrors production: every hour is judged against the previous 14 days minus the
points already judged anomalous.  The warm-up days are history only (the monitor is still
learning).  The plain mean/stddev z-score (3 sd) is walked over the same data for reference.
Two levels are scored. Verdicts: a false flag is the opening of a run of anomalous verdicts outside
injected anomalies, counted after the warm-up; "first hour" is the share of anomalies whose first bucket
is flagged. Alerts: what pages a person, with Pulse's lifecycle (an alert opens once
``failure_threshold`` = 2 consecutive buckets are anomalous; volume streaks count buckets, not runs); a
false alert is an alert opening outside injected anomalies, and an anomaly is alerted when it opens one.  The "oracle" rows score |value - noise-free value| / robust-sd,
i.e. what no detector can beat: its false alerts are the noise's own outliers.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from multiprocessing import Pool
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitors import baselines

SIZES = (3, 5, 10)
ANOMALY_DIRECTIONS = ("spike", "drop")
WARMUP_DAYS = 7
WINDOW = timedelta(days=14)
HOUR = timedelta(hours=1)
OUTLIER_SHARE = 0.02
REFERENCE_SENSITIVITY = 3.0
PULSE_SWEEP = (3.0, 3.5, 4.0, 4.5)
REFERENCE_SWEEP = (2.5, 3.0, 3.5, 4.0)
TARGET_FALSE_ALERTS_PER_WEEK = 0.05
TARGET_FIRST_BUCKET_SHARE = 0.95


@dataclass(frozen=True)
class Anomaly:
    start: int
    length: int
    size: int
    direction: str


@dataclass(frozen=True)
class Series:
    times: list[datetime]
    values: list[float]
    expected: list[float]
    noise_sd: list[float]
    noise_z: list[float]
    anomalies: list[Anomaly]
    warmup: int


@dataclass(frozen=True)
class Walk:
    """Per-point scores of one method; ``zero`` marks Pulse's drop-to-zero rule firing."""

    scores: list[float | None]
    zero: list[bool]
    flagged: list[bool]


def generate(rng: random.Random, *, days: int, anomaly_model: str, outlier_share: float = OUTLIER_SHARE) -> Series:
    count = days * 24
    start = datetime(2024, 1, 1) + timedelta(days=rng.randrange(7))
    times = [start + i * HOUR for i in range(count)]
    level = 10 ** rng.uniform(1.7, 4.7)
    daily_amplitude = 0.0 if rng.random() < 0.15 else rng.uniform(0.1, 0.7)
    phase, phase2, second = rng.uniform(0, 24), rng.uniform(0, 24), rng.uniform(0, 0.6)
    weekly = rng.random()
    if weekly < 0.45:
        weekend, weekend_damping = rng.uniform(0.4, 0.9), rng.uniform(0.3, 1.0)
        weekday_factor = [1 + rng.uniform(-0.05, 0.05) for _ in range(5)] + [weekend, weekend]
        damping = [1.0] * 5 + [weekend_damping] * 2
    elif weekly < 0.7:
        weekday_factor = [1 + rng.uniform(-0.1, 0.1) for _ in range(7)]
        damping = [1.0] * 7
    else:
        weekday_factor, damping = [1.0] * 7, [1.0] * 7
    batch_hour = rng.randrange(24) if rng.random() < 0.15 else None
    batch_factor = rng.uniform(1.5, 3.0)
    trend_per_week = rng.uniform(-0.02, 0.04)
    relative_noise, additive_noise = rng.uniform(0.01, 0.08), rng.uniform(0.0, 0.03) * level

    def expected(i: int) -> float:
        t = times[i]
        shape = (
            math.cos(2 * math.pi * (t.hour - phase) / 24) + second * math.cos(4 * math.pi * (t.hour - phase2) / 24)
        ) / (1 + second)
        day = t.weekday()
        trend = 1 + trend_per_week * i / 168
        batch = batch_factor if t.hour == batch_hour else 1.0
        return level * trend * weekday_factor[day] * batch * (1 + daily_amplitude * damping[day] * shape)

    def draw() -> float:
        z = rng.gauss(0, 1)
        if rng.random() < outlier_share:
            z /= math.sqrt(sum(rng.gauss(0, 1) ** 2 for _ in range(3)) / 3)
        return z

    clean = [expected(i) for i in range(count)]
    sd = [math.hypot(relative_noise * c, additive_noise) for c in clean]
    z = [draw() for _ in range(count)]
    robust = 1.4826 * statistics.median(abs(x) for x in z)
    noise_z = [x / robust for x in z]
    values = [max(0.0, c + s * x) for c, s, x in zip(clean, sd, z)]

    warmup = WARMUP_DAYS * 24
    kinds = [(size, direction) for size in SIZES for direction in ANOMALY_DIRECTIONS]
    rng.shuffle(kinds)
    slot = (count - warmup) // len(kinds)
    anomalies = []
    for k, (size, direction) in enumerate(kinds):
        length = rng.randint(2, 6)
        first = warmup + k * slot + rng.randint(12, slot - length - 1)
        anomalies.append(Anomaly(first, length, size, direction))
        sign = 1 if direction == "spike" else -1
        for i in range(first, first + length):
            base = clean[i] if anomaly_model == "exact" else values[i]
            values[i] = max(0.0, base + sign * size * sd[i] * robust)
    return Series(
        times=times,
        values=values,
        expected=clean,
        noise_sd=[x * robust for x in sd],
        noise_z=noise_z,
        anomalies=anomalies,
        warmup=warmup,
    )


def walk_pulse(series: Series) -> tuple[Walk, Counter]:
    history: deque[tuple[datetime, float]] = deque()
    count = len(series.values)
    scores: list[float | None] = [None] * count
    zero, flagged = [False] * count, [False] * count
    used: Counter = Counter()
    for i, (t, v) in enumerate(zip(series.times, series.values)):
        while history and history[0][0] < t - WINDOW:
            history.popleft()
        if i >= series.warmup:
            verdict = baselines.evaluate(history=history, at=t, value=v)
            scores[i], flagged[i] = verdict.score, verdict.is_anomaly
            zero[i] = v == 0 and (verdict.median or 0) > 0
            used[verdict.seasonality] += 1
            if verdict.is_anomaly:
                continue
        history.append((t, v))
    return Walk(scores, zero, flagged), used


def walk_reference(series: Series) -> Walk:
    history: deque[tuple[datetime, float]] = deque()
    count = len(series.values)
    scores: list[float | None] = [None] * count
    flagged = [False] * count
    for i, (t, v) in enumerate(zip(series.times, series.values)):
        while history and history[0][0] < t - WINDOW:
            history.popleft()
        if i >= series.warmup:
            is_anomaly, lower, upper = baselines.mean_stddev_verdict(
                history=history, value=v, sensitivity=REFERENCE_SENSITIVITY
            )
            if lower is not None and upper is not None:
                spread = (upper - lower) / (2 * REFERENCE_SENSITIVITY)
                centre = (upper + lower) / 2
                scores[i] = (
                    (v - centre) / spread if spread else (0.0 if v == centre else math.copysign(math.inf, v - centre))
                )
            flagged[i] = is_anomaly
            if is_anomaly:
                continue
        history.append((t, v))
    return Walk(scores, [False] * count, flagged)


def walk_oracle(series: Series) -> Walk:
    """What a detector knowing the noise-free value and the noise scale would score."""
    count = len(series.values)
    scores: list[float | None] = [None] * count
    for i in range(series.warmup, count):
        scores[i] = (series.values[i] - series.expected[i]) / series.noise_sd[i]
    flagged = [s is not None and abs(s) > baselines.DEFAULT_SENSITIVITY for s in scores]
    return Walk(scores, [False] * count, flagged)


def run_one(job: tuple[int, int, int, str, float]) -> tuple[Series, Walk, Walk, Counter]:
    seed, index, days, anomaly_model, outlier_share = job
    series = generate(
        random.Random(seed * 1_000_003 + index), days=days, anomaly_model=anomaly_model, outlier_share=outlier_share
    )
    pulse, used = walk_pulse(series)
    return series, pulse, walk_reference(series), used


ALERT_AFTER = 2  # Pulse's default failure_threshold: consecutive anomalous buckets before an alert opens


@dataclass
class Figures:
    alert_false: int = 0
    alert_detected: Counter | None = None
    alert_delays: dict[int, list[int]] | None = None
    false_alerts: int = 0
    outlier_alerts: int = 0
    clean_hours: int = 0
    detected_first: Counter | None = None
    detected_any: Counter | None = None
    delays: dict[int, list[int]] | None = None
    injected: Counter | None = None


def score(results: list[tuple[Series, Walk]], threshold: float | None) -> Figures:
    """Figures for one method; ``threshold`` re-thresholds the scores (None: the verdicts)."""
    figures = Figures(
        detected_first=Counter(),
        detected_any=Counter(),
        delays={s: [] for s in SIZES},
        injected=Counter(),
        alert_detected=Counter(),
        alert_delays={s: [] for s in SIZES},
    )
    for series, walk in results:
        if threshold is None:
            flags = walk.flagged
        else:
            flags = [z or (s is not None and abs(s) > threshold) for s, z in zip(walk.scores, walk.zero)]
        inside = [False] * len(flags)
        for anomaly in series.anomalies:
            for i in range(anomaly.start, anomaly.start + anomaly.length):
                inside[i] = True
            figures.injected[anomaly.size] += 1
            hits = [i for i in range(anomaly.start, anomaly.start + anomaly.length) if flags[i]]
            if hits:
                figures.detected_any[anomaly.size] += 1
                figures.delays[anomaly.size].append(hits[0] - anomaly.start)
            if flags[anomaly.start]:
                figures.detected_first[anomaly.size] += 1
            opened = _alert_opening(flags, anomaly.start, anomaly.start + anomaly.length)
            if opened is not None:
                figures.alert_detected[anomaly.size] += 1
                figures.alert_delays[anomaly.size].append(opened - anomaly.start)
        limit = baselines.DEFAULT_SENSITIVITY if threshold is None else threshold
        for i in range(series.warmup, len(flags)):
            if inside[i]:
                continue
            figures.clean_hours += 1
            streak_start = i - ALERT_AFTER + 1
            if (
                streak_start >= series.warmup
                and all(flags[streak_start : i + 1])
                and not flags[streak_start - 1]
                and not any(inside[streak_start : i + 1])
            ):
                figures.alert_false += 1
            if flags[i] and not flags[i - 1]:
                figures.false_alerts += 1
                if abs(series.noise_z[i]) > limit:
                    figures.outlier_alerts += 1
    return figures


def _alert_opening(flags: list[bool], start: int, end: int) -> int | None:
    """Index at which an alert opens for an anomaly in [start, end): ALERT_AFTER consecutive flags inside it."""
    for i in range(start + ALERT_AFTER - 1, end):
        if all(flags[i - ALERT_AFTER + 1 : i + 1]):
            return i
    return None


def report_lines(name: str, figures: Figures) -> list[str]:
    weeks = figures.clean_hours / 168
    lines = [
        f"{name}",
        f"  false alerts ({ALERT_AFTER} anomalous buckets in a row): {figures.alert_false} in {weeks:.0f} clean "
        f"series-weeks = {figures.alert_false / weeks:.3f} per series-week",
        f"  false flags (single anomalous verdicts): {figures.false_alerts} = {figures.false_alerts / weeks:.3f} per "
        f"series-week ({figures.outlier_alerts} of them on points whose own noise was beyond the threshold)",
    ]
    for size in SIZES:
        injected = figures.injected[size]
        delays = figures.delays[size]
        mean_delay = f"{statistics.fmean(delays):.2f} h" if delays else "n/a"
        alert_delays = figures.alert_delays[size]
        alert_delay = f"{statistics.fmean(alert_delays):.2f} h" if alert_delays else "n/a"
        within_one = sum(1 for d in delays if d <= 1) / injected
        lines.append(
            f"  {size:>2} robust-sd: flagged in the first hour {figures.detected_first[size] / injected:6.1%}, "
            f"by the second {within_one:6.1%}, "
            f"any hour {figures.detected_any[size] / injected:6.1%}, mean delay {mean_delay}; "
            f"alerted {figures.alert_detected[size] / injected:6.1%}, mean delay {alert_delay} (n={injected})"
        )
    return lines


def sweep_line(name: str, threshold: float, figures: Figures) -> str:
    weeks = figures.clean_hours / 168
    firsts = "  ".join(f"{size:>2}sd {figures.detected_first[size] / figures.injected[size]:6.1%}" for size in SIZES)
    return (
        f"  {name:<12} threshold {threshold:>3}: {figures.alert_false / weeks:6.3f} false alerts, "
        f"{figures.false_alerts / weeks:6.3f} false flags /series-week  first hour: {firsts}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=100)
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--anomaly-model", choices=("exact", "shift"), default="exact")
    parser.add_argument("--outlier-share", type=float, default=OUTLIER_SHARE)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args()
    if args.days < WARMUP_DAYS + 7:
        parser.error(f"--days must be at least {WARMUP_DAYS + 7}")

    began = time.perf_counter()
    jobs = [(args.seed, index, args.days, args.anomaly_model, args.outlier_share) for index in range(args.series)]
    if args.workers > 1:
        with Pool(args.workers) as pool:
            outcomes = pool.map(run_one, jobs, chunksize=max(1, args.series // (4 * args.workers)))
    else:
        outcomes = [run_one(job) for job in jobs]
    runtime = time.perf_counter() - began

    oracle = [(series, walk_oracle(series)) for series, *_ in outcomes]
    pulse = [(series, walk) for series, walk, _, _ in outcomes]
    reference = [(series, walk) for series, _, walk, _ in outcomes]
    used: Counter = Counter()
    for *_, counts in outcomes:
        used.update(counts)
    pulse_figures = score(pulse, None)
    reference_figures = score(reference, None)

    print(f"command: python benchmarks/detector_quality.py {' '.join(sys.argv[1:])}".rstrip())
    print(
        f"data: {args.series} series x {args.days} days hourly, seed {args.seed}, warm-up {WARMUP_DAYS} days, "
        f"training window {WINDOW.days} days, anomaly model '{args.anomaly_model}', "
        f"{sum(pulse_figures.injected.values())} injected anomalies (2-6 h, spikes and drops)"
    )
    print(
        f"noise: Gaussian with {args.outlier_share:.0%} Student-t(3) outliers; sizes in robust-sd (1.4826*MAD) of that noise"
    )
    print()
    for line in report_lines(
        f"Pulse: median/MAD, seasonality auto, sensitivity {baselines.DEFAULT_SENSITIVITY}", pulse_figures
    ):
        print(line)
    total = sum(used.values())
    print("  seasonality used: " + ", ".join(f"{mode} {count / total:.0%}" for mode, count in used.most_common()))
    for line in report_lines(f"Reference: mean/stddev z-score, sensitivity {REFERENCE_SENSITIVITY}", reference_figures):
        print(line)
    print()
    print("Threshold sweep (re-thresholding the same walk; history exclusions as at the default):")
    for threshold in PULSE_SWEEP:
        print(sweep_line("Pulse", threshold, score(pulse, threshold)))
    for threshold in REFERENCE_SWEEP:
        print(sweep_line("mean/stddev", threshold, score(reference, threshold)))
    for threshold in PULSE_SWEEP:
        print(sweep_line("oracle", threshold, score(oracle, threshold)))
    print("  (oracle: knows the noise-free value and the noise scale; its false alerts are the noise's own outliers)")
    print()
    false_rate = pulse_figures.alert_false / (pulse_figures.clean_hours / 168)
    big = [size for size in SIZES if size >= 5]
    first_share = sum(pulse_figures.detected_first[s] for s in big) / sum(pulse_figures.injected[s] for s in big)
    second_share = sum(sum(1 for d in pulse_figures.delays[s] if d <= 1) for s in big) / sum(
        pulse_figures.injected[s] for s in big
    )
    print(
        f"targets (Pulse at defaults): false alerts/series-week {false_rate:.3f} <= {TARGET_FALSE_ALERTS_PER_WEEK}: "
        f"{'met' if false_rate <= TARGET_FALSE_ALERTS_PER_WEEK else 'NOT met'}; "
        f">=5 robust-sd anomalies caught in the first hour {first_share:.1%} >= {TARGET_FIRST_BUCKET_SHARE:.0%}: "
        f"{'met' if first_share >= TARGET_FIRST_BUCKET_SHARE else 'NOT met'}"
    )
    print(
        f"  (read as 'at most one bucket late': >=5 robust-sd anomalies flagged by their second hour {second_share:.1%})"
    )
    print(f"runtime: {runtime:.1f} s with {args.workers} worker(s)")


if __name__ == "__main__":
    main()
