"""Freshness: age of max(timestamp_column), measured against the replica's replay position.

`freshness_threshold_minutes` is the hard limit: older data always fails. Pulse also learns the table's
update cadence from the distinct max() values it has seen (`baselines.expected_update_gap`): once it has
enough of them, data older than the learned gap fails too — so a table loaded daily at 02:00 alerts
when a load is missed, without a hand-tuned threshold (set the threshold as a generous upper bound). A
weekly schedule is learned too (loads Monday to Friday: no failure over the weekend before Monday's load).
A learned limit is never below MIN_LEARNED_LIMIT, so tables updated every few seconds don't flap.

Pulse need not wait weeks to see a slow cadence: on a table's first check, the volume check's backfill read the
newest timestamp of every hour (or day) with rows over the last 14 days, and those load times seed the cadence.
A weekly load is learned from two loads a week apart or more (the same weekday, within WEEKLY_TOLERANCE of the
same time; update times less than ONE_LOAD apart count as one load): the limit is then a week + 10 %, so a
missed load fails within one cadence and no alert comes between loads.
"""

from datetime import UTC, date, datetime, time, timedelta

from psycopg import sql

from connections.guardrails import CheckError, GuardrailStop
from monitors import baselines
from monitors.checks.base import CheckContext, Outcome, Status, format_duration, size_cost_bound

KIND = "freshness"
LABEL = "Freshness"
SCOPE = "table"
CONFIGURABLE = False
QUERIES = 2  # the max() and, at most daily, its EXPLAIN for the cost guard
UPDATE_TIMES_KEPT = 30
MIN_LEARNED_LIMIT = timedelta(minutes=15)
WEEK = timedelta(weeks=1)
WEEKLY_TOLERANCE = timedelta(hours=6)
ONE_LOAD = timedelta(hours=2)
"""Update times closer than this belong to one load (a load that took a while, seen by several runs)."""
_LATEST = "SELECT max({column}) FROM {relation}"


def format_value(value: float) -> str:
    """The data's age in seconds."""
    return format_duration(value)


def latest_timestamp(value) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime.combine(value, time.min, tzinfo=UTC)
    raise TypeError(f"unexpected timestamp value {value!r}")


def learned_limit(update_times: list[str], *, latest: datetime | None = None) -> timedelta | None:
    """The longest normal gap after `latest`, learned from the distinct latest timestamps seen (a weekly
    schedule included: the gap that followed the same weekday's update a week earlier; a weekly load from
    2 or 3 loads a week apart)."""
    times = [datetime.fromisoformat(t) for t in update_times]
    gap = _weekly_gap(times) or baselines.expected_update_gap(update_times=times, after=latest)
    return None if gap is None else max(gap, MIN_LEARNED_LIMIT)


def _weekly_gap(times: list[datetime]) -> timedelta | None:
    """A week + 10 % when the loads (update times grouped within ONE_LOAD) are a week apart each, else None."""
    loads: list[datetime] = []
    for moment in sorted(times):
        if loads and moment - loads[-1] < ONE_LOAD:
            loads[-1] = moment
        else:
            loads.append(moment)
    gaps = [later - earlier for earlier, later in zip(loads, loads[1:])]
    if not gaps or any(abs(gap - WEEK) > WEEKLY_TOLERANCE for gap in gaps):
        return None
    return WEEK * (1 + baselines.MIN_CADENCE_TOLERANCE_FRACTION)


def _remember(update_times: list[str], latest: datetime) -> None:
    """Keep the distinct latest timestamps (in place), newest last, at most UPDATE_TIMES_KEPT."""
    stamp = latest.isoformat()
    if not update_times or update_times[-1] != stamp:
        update_times.append(stamp)
        del update_times[:-UPDATE_TIMES_KEPT]


def run(ctx: CheckContext, check=None) -> Outcome:
    table = ctx.table
    if "catalog" in ctx.facts and ctx.facts["catalog"] is None:  # the batch's catalog statement did not find it
        raise GuardrailStop(f"{table.qualified_name} no longer exists on the replica", reason="missing")
    if "catalog_error" in ctx.facts:  # its catalog lookup failed (a lock, a permission): so would max()
        raise CheckError(ctx.facts["catalog_error"])
    if "latest" in ctx.facts:  # the volume check of this run already read it with its bucket
        latest = latest_timestamp(ctx.facts["latest"])
    else:
        query = sql.SQL(_LATEST).format(column=sql.Identifier(table.timestamp_column), relation=ctx.relation)
        ctx.runner.guard_cost(query, cached=ctx.plan_costs, key="freshness", bound=size_cost_bound(ctx))
        value = ctx.runner.fetchone(query)[0]
        if value is not None and not isinstance(value, date):
            raise CheckError(f"{table.timestamp_column} is not a date or timestamp column")
        latest = latest_timestamp(value)
    hard_limit = table.freshness_threshold_minutes * 60
    if latest is None:
        return Outcome(
            kind=KIND,
            status=Status.FAIL,
            expected_upper=hard_limit,
            message=f"{table.qualified_name} has no rows: nothing to judge freshness by",
        )
    if not ctx.update_times and ctx.facts.get("update_times"):  # the first check: the volume backfill's load times
        for seen in ctx.facts["update_times"]:
            _remember(ctx.update_times, latest_timestamp(seen))
    learned = learned_limit(ctx.update_times, latest=latest)
    _remember(ctx.update_times, latest)
    limit = hard_limit if learned is None else min(hard_limit, learned.total_seconds())
    age = max(0.0, (ctx.data_as_of - latest).total_seconds())
    minutes = age / 60
    how = "learned from its update cadence" if limit < hard_limit else "limit"
    if age > limit:
        status = Status.FAIL
        message = f"newest {table.timestamp_column} is {minutes:,.0f} min old ({how} {limit / 60:,.0f} min)"
    else:
        status = Status.PASS
        message = f"newest {table.timestamp_column} is {minutes:,.1f} min old"
    return Outcome(
        kind=KIND,
        status=status,
        observed_value=round(age, 3),
        expected_upper=limit,
        message=message,
        details={
            "latest": latest.isoformat(),
            "data_as_of": ctx.data_as_of.isoformat(),
            "hard_limit": hard_limit,
            "learned_limit": None if learned is None else learned.total_seconds(),
        },
    )
