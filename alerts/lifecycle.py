"""When alerts open, remind, get acknowledged or snoozed, and resolve.

- `failure_threshold` consecutive failing runs of one (table, kind) open ONE alert (for volume: anomalous
  buckets in a row); further failures update it (`last_seen_at`, `consecutive_failures`). A passing run
  resolves it.
- `error` results (Pulse could not run a check) are not data failures: `connection_threshold` erroring
  runs in a row open a `connection_error` alert on the connection.
- A failing replication-lag check opens a `replication_lag` alert and holds back freshness alerts of
  the connection's tables while it lags.
- During a maintenance window checks run but no alert opens. Paused tables and connections are not checked.
- An alert that recurs within REOPEN_WITHIN of being resolved automatically is reopened, not duplicated.
- Resolving an alert by hand while its check still fails holds until the check recovers: the failure
  that goes on opens no new alert and pages nobody again; a failure after a passing run alerts as usual.
- Alerts of one table read as related: a table alert's message names the table's other unresolved alerts
  ("Related: the table is also stale (freshness alert 12)."), since one cause often fails several checks.
- Every transition writes an AlertEvent; notifications are written with it (the outbox), in the same
  transaction as the results that caused it.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
from django.db import connection as db_connection
from django.db import transaction
from django.utils import timezone

from alerts.models import Alert, AlertEvent
from alerts.outbox import notifications_for_events
from connections import maintenance
from connections.models import Connection
from connections.state import connection_error_streak_bump, connection_error_streak_reset
from monitors import tables
from monitors.checks import TABLE_KINDS, CheckKind, Status
from monitors.database import binary_cursor
from monitors.models import CheckResult, MonitoredTable

logger = logging.getLogger(__name__)

REOPEN_WITHIN = timedelta(hours=1)
LAG_ALERT_THRESHOLD = 2
# Connection-level problems other than lag: tables gone from the replica (discovery) alert at the first sighting.
CONNECTION_ALERT_THRESHOLDS = {CheckKind.SCHEMA_CHANGE: 1}
LAG_HOLDS_FRESHNESS_FOR = timedelta(minutes=10)
# The problems that have alerts of their own: every table-level kind, and the connection's replication lag.
TRACKED_KINDS = frozenset({*TABLE_KINDS, CheckKind.REPLICATION_LAG})
UNRESOLVED = (Alert.Status.OPEN, Alert.Status.ACKNOWLEDGED)
# Skips that mean Pulse could not run a check, counted like errors toward connection_error.
COULD_NOT_RUN_REASONS = {"budget", "concurrency"}


class AlertStateError(Exception):
    """The requested transition is not allowed from the alert's current state."""


def event_write(*, alert: Alert, kind: str, at: datetime, message: str = "", actor=None) -> AlertEvent:
    """Record a transition and write its notifications (same transaction)."""
    [event] = events_write(events=[AlertEvent(alert=alert, kind=kind, at=at, message=message, actor=actor)])
    return event


_INSERT_EVENTS = """
INSERT INTO alerts_alertevent (alert_id, kind, at, message, actor_id)
SELECT e.alert_id, e.kind, e.at, e.message, e.actor_id
FROM unnest(%s::bigint[], %s::text[], %s::timestamptz[], %s::text[], %s::int[]) WITH ORDINALITY
    AS e(alert_id, kind, at, message, actor_id, n)
ORDER BY e.n
RETURNING id
"""


def events_write(*, events: list[AlertEvent]) -> list[AlertEvent]:
    """Record many transitions with one INSERT and write their notifications (same transaction); sets their ids,
    ascending in the list's order."""
    if not events:
        return events
    with binary_cursor() as cursor:
        cursor.execute(
            _INSERT_EVENTS,
            [
                [event.alert_id for event in events],
                [event.kind for event in events],
                [event.at for event in events],
                [event.message for event in events],
                [event.actor_id for event in events],
            ],
        )
        ids = sorted(row[0] for row in cursor.fetchall())
    for event, event_id in zip(events, ids, strict=True):
        event.id = event_id
        event._state.adding = False
    notifications_for_events(events=events)
    return events


_ALERT_TABLE = Alert.table.field
_ALERT_CONNECTION = Alert.connection.field
_EVENT_ALERT = AlertEvent.alert.field


def _event(alert: Alert, *, kind: str, at: datetime, message: str) -> AlertEvent:
    """A new event of `alert` (not saved), its alert attached."""
    event = AlertEvent(alert_id=alert.pk, kind=kind, at=at, message=message)
    _EVENT_ALERT.set_cached_value(event, alert)
    return event


# Unresolved is written as the predicate of the partial unique index `alert_one_unresolved_per_problem`
# (connection, table, kind) WHERE NOT status = 'resolved', so the planner reads the batch's alerts by that index
# even on statistics gathered before a burst of new alerts (with `status = ANY(open, acknowledged)` it read every
# unresolved alert of the connection by (connection, status): 15 ms against 0.2 ms a batch at 20,000 alerts).
_UNRESOLVED = f"""
SELECT {", ".join(field.column for field in Alert._meta.concrete_fields)} FROM alerts_alert
WHERE connection_id = %s AND (table_id IS NULL OR table_id = ANY(%s)) AND NOT status = '{Alert.Status.RESOLVED.value}'
"""


def _unresolved(
    connection: Connection, *, tables_by_id: dict[int, MonitoredTable]
) -> dict[tuple[int | None, str], Alert]:
    """The unresolved alerts of the connection itself and of the batch's tables (never the connection's every
    alert: with 100,000 failing tables, each batch would read them all), with the batch's connection and table
    objects attached (the messages of their transitions name them) instead of reading them again."""
    with binary_cursor() as cursor:
        cursor.execute(_UNRESOLVED, [connection.pk, list(tables_by_id)])
        rows = cursor.fetchall()
    unresolved = {}
    for row in rows:
        alert = Alert.from_db(db_connection.alias, None, row)
        _ALERT_CONNECTION.set_cached_value(alert, connection)
        if alert.table_id is not None:
            _ALERT_TABLE.set_cached_value(alert, tables_by_id[alert.table_id])
        unresolved[(alert.table_id, alert.kind)] = alert
    return unresolved


def _streak_of(rows, *, kind: str, runs: int) -> int:
    """How many of the latest `runs` runs failed in a row, from their results (started_at, bucket_start, status)."""
    by_run: dict[datetime, bool] = {}
    for started_at, bucket_start, status in rows:
        key = bucket_start if kind == CheckKind.VOLUME and bucket_start is not None else started_at
        by_run[key] = by_run.get(key, False) or status == Status.FAIL
    streak = 0
    for failed in list(by_run.values())[:runs]:
        if not failed:
            break
        streak += 1
    return streak


def _failing_streak(*, connection: Connection, table_id: int | None, kind: str, runs: int) -> int:
    """How many of the latest `runs` runs of (table, kind) failed in a row (a run fails if any result failed).

    Volume counts buckets, not runs: every run within an hour repeats that hour's verdict, and one odd hour
    is not yet an incident — `failure_threshold` anomalous buckets in a row are.
    """
    rows = (
        CheckResult.objects.filter(connection=connection, table_id=table_id, kind=kind)
        .exclude(status__in=(Status.ERROR, Status.SKIPPED))
        .order_by("-started_at", "-id")
        .values_list("started_at", "bucket_start", "status")[: runs * 50]
    )
    return _streak_of(rows, kind=kind, runs=runs)


_LATEST_RESULTS_OF_PROBLEMS = f"""
    SELECT p.table_id, p.kind, r.started_at, r.bucket_start, r.status
    FROM unnest(%s::bigint[], %s::text[], %s::int[]) AS p(table_id, kind, latest)
    CROSS JOIN LATERAL (
        SELECT started_at, bucket_start, status, id FROM {CheckResult._meta.db_table} r
        WHERE r.table_id = p.table_id AND r.kind = p.kind AND r.status <> ALL(%s)
        ORDER BY r.started_at DESC, r.id DESC
        LIMIT p.latest
    ) r
    ORDER BY p.table_id, p.kind, r.started_at DESC, r.id DESC
"""


def _failing_streaks(*, runs: dict[tuple[int, str], int]) -> dict[tuple[int, str], int]:
    """`_failing_streak` of many table problems {(table_id, kind): runs} in one statement, each read by the
    (table, kind, started_at) index: a table's results are its connection's, and with the connection in the
    condition the planner chose the (connection, kind, started_at) index and filtered every result of the
    connection (100,000 tables: 16 ms per table instead of 0.04)."""
    if not runs:
        return {}
    problems = list(runs)
    rows: dict[tuple[int, str], list] = defaultdict(list)
    with binary_cursor() as cursor:
        cursor.execute(
            _LATEST_RESULTS_OF_PROBLEMS,
            [
                [table_id for table_id, _ in problems],
                [kind for _, kind in problems],
                [runs[problem] * 50 for problem in problems],
                [str(Status.ERROR), str(Status.SKIPPED)],
            ],
        )
        for table_id, kind, started_at, bucket_start, status in cursor.fetchall():
            rows[(table_id, kind)].append((started_at, bucket_start, status))
    return {problem: _streak_of(rows[problem], kind=problem[1], runs=runs[problem]) for problem in problems}


@dataclass
class _Opening:
    """An alert a failing problem opens, or reopens if the same problem's alert was auto-resolved moments ago."""

    table: MonitoredTable | None
    kind: str
    severity: str
    message: str
    failures: int

    @property
    def problem(self) -> tuple[int | None, str]:
        return (None if self.table is None else self.table.pk, self.kind)


# The latest resolved alert of each problem: whether it was resolved by hand while failing, and whether it was
# resolved recently enough to be reopened. Table problems read by the alerts' table index; the part whose
# condition on p.table_id is false is not run.
_LAST_RESOLVED = """
SELECT p.n, a.id, a.resolved_at, a.resolved_while_failing_at
FROM unnest(%s::bigint[], %s::text[]) WITH ORDINALITY AS p(table_id, kind, n)
CROSS JOIN LATERAL (
    (SELECT id, resolved_at, resolved_while_failing_at FROM alerts_alert a
     WHERE p.table_id IS NOT NULL AND a.table_id = p.table_id AND a.connection_id = %s AND a.kind = p.kind
       AND a.status = 'resolved'
     ORDER BY a.resolved_at DESC, a.id DESC LIMIT 1)
    UNION ALL
    (SELECT id, resolved_at, resolved_while_failing_at FROM alerts_alert a
     WHERE p.table_id IS NULL AND a.table_id IS NULL AND a.connection_id = %s AND a.kind = p.kind
       AND a.status = 'resolved'
     ORDER BY a.resolved_at DESC, a.id DESC LIMIT 1)
) a
"""

# New alerts; a problem whose unresolved alert another process opened meanwhile is left to that alert (the
# conditional unique index `alert_one_unresolved_per_problem`).
_INSERT_ALERTS = """
INSERT INTO alerts_alert (
    connection_id, table_id, kind, severity, status, message, opened_at, last_seen_at, consecutive_failures
)
SELECT %s, o.table_id, o.kind, o.severity, 'open', o.message, %s, %s, o.failures
FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::int[]) WITH ORDINALITY
    AS o(table_id, kind, severity, message, failures, n)
ORDER BY o.n
ON CONFLICT (connection_id, table_id, kind) WHERE NOT (status = 'resolved') DO NOTHING
RETURNING id, table_id, kind
"""

_REOPEN_ALERTS = """
UPDATE alerts_alert a SET status = 'open', resolved_at = NULL, resolved_while_failing_at = NULL, message = o.message,
    last_seen_at = %s, consecutive_failures = o.failures, snoozed_until = NULL
FROM unnest(%s::bigint[], %s::text[], %s::int[]) AS o(id, message, failures)
WHERE a.id = o.id AND a.status = 'resolved'
RETURNING a.id
"""


def _alerts_open(*, connection: Connection, openings: list[_Opening], now: datetime) -> dict[tuple, Alert]:
    """Open (or reopen) the alerts of `openings`, write their events and notifications: a few statements for any
    number. A problem whose last alert was resolved by hand while failing opens nothing until its check has
    passed since (`_held_by_hand`). Returns {problem: alert} of those opened."""
    if not openings:
        return {}
    with binary_cursor() as cursor:
        cursor.execute(
            _LAST_RESOLVED,
            [[o.problem[0] for o in openings], [o.kind for o in openings], connection.pk, connection.pk],
        )
        last_resolved = {n - 1: (alert_id, at, held_at) for n, alert_id, at, held_at in cursor.fetchall()}
    fresh, reopening = [], {}
    for index, opening in enumerate(openings):
        alert_id, resolved_at, held_at = last_resolved.get(index, (None, None, None))
        if held_at is not None and _held_by_hand(connection=connection, problem=opening.problem, held_at=held_at):
            continue
        if alert_id is not None and resolved_at >= now - REOPEN_WITHIN:
            reopening[alert_id] = opening
        else:
            fresh.append(opening)
    opened = _alerts_reopen(connection=connection, reopening=reopening, now=now)
    events = [_event(alert, kind=AlertEvent.Kind.REOPENED, at=now, message=alert.message) for alert in opened]
    for alert in _alerts_insert(connection=connection, openings=fresh, now=now):
        opened.append(alert)
        events.append(_event(alert, kind=AlertEvent.Kind.OPENED, at=now, message=alert.message))
    events_write(events=events)
    return {(alert.table_id, alert.kind): alert for alert in opened}


def _alerts_insert(*, connection: Connection, openings: list[_Opening], now: datetime) -> list[Alert]:
    if not openings:
        return []
    with binary_cursor() as cursor:
        cursor.execute(
            _INSERT_ALERTS,
            [
                connection.pk,
                now,
                now,
                [o.problem[0] for o in openings],
                [o.kind for o in openings],
                [o.severity for o in openings],
                [o.message for o in openings],
                [o.failures for o in openings],
            ],
        )
        ids = {(table_id, kind): alert_id for alert_id, table_id, kind in cursor.fetchall()}
    alerts = []
    for opening in openings:
        alert_id = ids.get(opening.problem)
        if alert_id is None:
            logger.info("alert for %s/%s already opened by another process", *opening.problem)
            continue
        alert = Alert(
            id=alert_id,
            connection=connection,
            table=opening.table,
            kind=opening.kind,
            severity=opening.severity,
            status=Alert.Status.OPEN,
            message=opening.message,
            opened_at=now,
            last_seen_at=now,
            consecutive_failures=opening.failures,
        )
        alert._state.adding = False
        alerts.append(alert)
    return alerts


def _alerts_reopen(*, connection: Connection, reopening: dict[int, _Opening], now: datetime) -> list[Alert]:
    """Reopen resolved alerts {alert id: opening}; where another process opened the same problem's alert meanwhile
    (the unique index refuses the batch), each is reopened on its own and the one refused is left to the other."""
    if not reopening:
        return []
    try:
        with transaction.atomic(), binary_cursor() as cursor:
            cursor.execute(
                _REOPEN_ALERTS,
                [
                    now,
                    list(reopening),
                    [o.message for o in reopening.values()],
                    [o.failures for o in reopening.values()],
                ],
            )
            ids = [row[0] for row in cursor.fetchall()]
    except psycopg.errors.UniqueViolation:  # raw psycopg's: the binary cursor works below Django
        if len(reopening) == 1:
            [opening] = reopening.values()
            logger.info("alert for %s/%s already opened by another process", *opening.problem)
            return []
        return [
            alert
            for alert_id, opening in reopening.items()
            for alert in _alerts_reopen(connection=connection, reopening={alert_id: opening}, now=now)
        ]
    alerts = list(Alert.objects.filter(id__in=ids).order_by("id"))
    for alert in alerts:
        _ALERT_CONNECTION.set_cached_value(alert, connection)
        _ALERT_TABLE.set_cached_value(alert, reopening[alert.id].table)
    return alerts


def _seen_again(alert: Alert, *, message: str, now: datetime) -> None:
    _seen_again_all({alert.pk: message}, now=now)


_SEEN_AGAIN = """
UPDATE alerts_alert a SET last_seen_at = %s, message = s.message, consecutive_failures = a.consecutive_failures + 1
FROM unnest(%s::bigint[], %s::text[]) AS s(id, message) WHERE a.id = s.id
"""


def _seen_again_all(messages: dict[int, str], *, now: datetime) -> None:
    """Alerts still failing, {alert id: message}: seen again now, one failure more (one statement for a batch)."""
    if messages:
        with db_connection.cursor() as cursor:
            cursor.execute(_SEEN_AGAIN, [now, list(messages), list(messages.values())])


def _problem_results(*, connection_id: int, table_id: int | None, kind: str):
    """The results that decide whether a problem fails: its check's, or for connection_error every check's."""
    if kind == Alert.Kind.CONNECTION_ERROR:
        return CheckResult.objects.filter(connection_id=connection_id)
    return CheckResult.objects.filter(connection_id=connection_id, table_id=table_id, kind=kind)


def _still_failing_at(alert: Alert) -> datetime | None:
    """When the alert's check last failed, if that is still its latest verdict; else None.

    A verdict is a pass or a fail (for connection_error: a run that could not run, or one that did).
    """
    results = _problem_results(connection_id=alert.connection_id, table_id=alert.table_id, kind=alert.kind)
    latest = results.exclude(status=Status.SKIPPED).order_by("-started_at", "-id").values_list("started_at", "status")
    if alert.kind != Alert.Kind.CONNECTION_ERROR:
        latest = latest.exclude(status=Status.ERROR)
    row = latest.first()
    if row is None:
        return None
    started_at, status = row
    failing = Status.ERROR if alert.kind == Alert.Kind.CONNECTION_ERROR else Status.FAIL
    return started_at if status == failing else None


def _held_by_hand(*, connection: Connection, problem: tuple[int | None, str], held_at: datetime) -> bool:
    """Whether a problem whose last alert was resolved by hand while failing (at `held_at`) is still held: its
    check has not passed since. (For connection_error, "passed" means a check ran: a pass or a fail.)"""
    table_id, kind = problem
    recovered = (Status.FAIL, Status.PASS) if kind == Alert.Kind.CONNECTION_ERROR else (Status.PASS,)
    results = _problem_results(connection_id=connection.id, table_id=table_id, kind=kind)
    return not results.filter(status__in=recovered, started_at__gt=held_at).exists()


_RESOLVE_ALERTS = "UPDATE alerts_alert SET status = 'resolved', resolved_at = %s WHERE id = ANY(%s)"


def _alerts_resolve(resolutions: list[tuple[Alert, str]], *, now: datetime) -> None:
    """Resolve alerts whose checks pass again, [(alert, the passing message)]: one UPDATE, one INSERT of events."""
    if not resolutions:
        return
    with binary_cursor() as cursor:
        cursor.execute(_RESOLVE_ALERTS, [now, [alert.pk for alert, _ in resolutions]])
    for alert, _ in resolutions:
        alert.status, alert.resolved_at = Alert.Status.RESOLVED, now
    events_write(
        events=[
            _event(alert, kind=AlertEvent.Kind.RESOLVED, at=now, message=f"recovered: {message}")
            for alert, message in resolutions
        ]
    )


def _lag_holds_freshness(connection: Connection, unresolved: dict, now: datetime) -> bool:
    if (None, CheckKind.REPLICATION_LAG) in unresolved:
        return True
    latest = (
        CheckResult.objects.filter(
            connection=connection,
            table=None,
            kind=CheckKind.REPLICATION_LAG,
            started_at__gte=now - LAG_HOLDS_FRESHNESS_FOR,
        )
        .order_by("-started_at")
        .values_list("status", flat=True)
        .first()
    )
    return latest == Status.FAIL


# How a related alert reads in the message of another alert of the same table; other kinds: "<Label> also fails".
RELATED_PHRASES = {
    CheckKind.FRESHNESS: "the table is also stale",
    CheckKind.VOLUME: "its row volume is also anomalous",
    CheckKind.SCHEMA_CHANGE: "its schema also changed",
}


def _with_related(message: str, *, table_id: int | None, kind: str, open_now: dict[int, dict[str, Alert]]) -> str:
    """`message`, followed by the other unresolved alerts of the same table (one cause often fails several checks);
    `open_now`: {table id: {kind: alert}}."""
    if table_id is None or table_id not in open_now:
        return message
    related = [
        f"{RELATED_PHRASES.get(other_kind, Alert.Kind(other_kind).label + ' also fails')} "
        f"({Alert.Kind(other_kind).label.lower()} alert {alert.id})"
        for other_kind, alert in sorted(open_now[table_id].items(), key=lambda item: item[1].id)
        if other_kind != kind
    ]
    if not related:
        return message
    return f"{message.rstrip('.')}. Related: {'; '.join(related)}."


def _could_not_run(result: CheckResult) -> bool:
    return result.status == Status.ERROR or (
        result.status == Status.SKIPPED and (result.details or {}).get("reason") in COULD_NOT_RUN_REASONS
    )


def _track_connection_errors(*, connection, results, unresolved, quiet, now) -> None:
    failed = [r for r in results if _could_not_run(r)]
    if not failed:
        if any(r.status in (Status.PASS, Status.FAIL) for r in results):
            connection_error_streak_reset(connection=connection)
            connection.error_streak = 0
            alert = unresolved.get((None, Alert.Kind.CONNECTION_ERROR))
            if alert:
                _alerts_resolve([(alert, "checks run again")], now=now)
        return
    streak = connection_error_streak_bump(connection=connection)
    where = failed[0].table.qualified_name + " " if failed[0].table_id else ""
    message = f"{len(failed)} check(s) could not run, e.g. {where}{failed[0].kind}: {failed[0].message}"
    alert = unresolved.get((None, Alert.Kind.CONNECTION_ERROR))
    if alert:
        _seen_again(alert, message=message, now=now)
    elif streak >= connection.connection_error_threshold and not quiet:
        opening = _Opening(
            table=None,
            kind=Alert.Kind.CONNECTION_ERROR,
            severity=Alert.Severity.CRITICAL,
            message=message,
            failures=streak,
        )
        _alerts_open(connection=connection, openings=[opening], now=now)


def _table_streaks(*, connection, problems, unresolved, now) -> dict[tuple[int, str], int]:
    """The failing streaks `results_process` will weigh for its tables' new failures, read in one statement."""
    runs = {}
    holding = None
    for (table_id, kind), problem_results in problems:
        failing = [r for r in problem_results if r.status == Status.FAIL]
        if table_id is None or not failing or (table_id, kind) in unresolved:
            continue
        if kind == CheckKind.FRESHNESS:
            holding = _lag_holds_freshness(connection, unresolved, now) if holding is None else holding
            if holding:
                continue
        runs[(table_id, kind)] = failing[0].table.failure_threshold
    return _failing_streaks(runs=runs)


def results_process(*, connection: Connection, results: list[CheckResult], now: datetime | None = None) -> None:
    """Move alerts according to a batch of freshly recorded results (at the time they were taken)."""
    if not results:
        return
    now = now or max(r.started_at for r in results)
    tables_by_id = {r.table_id: r.table for r in results if r.table_id is not None}
    unresolved = _unresolved(connection, tables_by_id=tables_by_id)
    # A discovery's missing-tables result says nothing about whether checks run: it leaves connection_error alone.
    checked = [r for r in results if not (r.details or {}).get("discovery")]
    if not unresolved and all(r.status == Status.PASS for r in results):
        if checked:
            connection_error_streak_reset(connection=connection)  # nothing open and nothing wrong: the common case
        return
    quiet = maintenance.in_maintenance(connection=connection, at=now)
    _track_connection_errors(connection=connection, results=checked, unresolved=unresolved, quiet=quiet, now=now)

    by_problem: dict[tuple[int | None, str], list[CheckResult]] = defaultdict(list)
    for result in results:
        if result.kind in TRACKED_KINDS:
            by_problem[(result.table_id, result.kind)].append(result)
    open_now: dict[int, dict[str, Alert]] = defaultdict(dict)
    for (table_id, kind), alert in unresolved.items():
        if table_id is not None:
            open_now[table_id][kind] = alert
    for (table_id, kind), problem_results in by_problem.items():
        statuses = {r.status for r in problem_results}
        if Status.PASS in statuses and Status.FAIL not in statuses and table_id in open_now:
            open_now[table_id].pop(kind, None)  # resolves below: related no more
    # Freshness first: a table that stopped receiving rows is stale before its volume drops, and an alert
    # opened later in this run names the ones opened before it ("Related: the table is also stale").
    problems = sorted(by_problem.items(), key=lambda item: item[0][1] != CheckKind.FRESHNESS)
    streaks = {} if quiet else _table_streaks(connection=connection, problems=problems, unresolved=unresolved, now=now)
    decisions = _Decisions(connection=connection, now=now, open_now=open_now)
    holding = None
    for (table_id, kind), problem_results in problems:
        failing = [r for r in problem_results if r.status == Status.FAIL]
        passing = [r for r in problem_results if r.status == Status.PASS]
        alert = unresolved.get((table_id, kind))
        if failing:
            message = "; ".join(r.message for r in failing)
            message = _with_related(message, table_id=table_id, kind=kind, open_now=decisions.related_to(table_id))
            if alert:
                decisions.seen_again[alert.pk] = message
                continue
            table = failing[0].table if table_id else None
            threshold = table.failure_threshold if table else CONNECTION_ALERT_THRESHOLDS.get(kind, LAG_ALERT_THRESHOLD)
            if quiet:
                continue
            if kind == CheckKind.FRESHNESS:
                holding = _lag_holds_freshness(connection, unresolved, now) if holding is None else holding
                if holding:
                    continue
            streak = streaks.get((table_id, kind))
            if streak is None:
                streak = _failing_streak(connection=connection, table_id=table_id, kind=kind, runs=threshold)
            if streak >= threshold:
                decisions.opening(
                    _Opening(table=table, kind=kind, severity=Alert.Severity.WARNING, message=message, failures=streak)
                )
        elif passing and alert:
            decisions.resolutions.append((alert, passing[0].message))
    decisions.write()


class _Decisions:
    """What `results_process` decided for a batch, written together at the end (a few statements for any number of
    tables): alerts to open, to resolve, and seen failing again.

    Openings wait until a message needs them: an alert's message names its table's other unresolved alerts, those
    opened earlier in the same run too, so the openings waiting are written (and get their ids) before a later
    problem of one of their tables composes its message; with one failing problem per table, once per batch."""

    def __init__(self, *, connection: Connection, now: datetime, open_now: dict[int, dict[str, Alert]]):
        self.connection, self.now, self.open_now = connection, now, open_now
        self.openings: list[_Opening] = []
        self.waiting_tables: set[int | None] = set()
        self.resolutions: list[tuple[Alert, str]] = []
        self.seen_again: dict[int, str] = {}

    def opening(self, opening: _Opening) -> None:
        self.openings.append(opening)
        self.waiting_tables.add(opening.problem[0])

    def related_to(self, table_id: int | None) -> dict[int, dict[str, Alert]]:
        """`open_now` for a message of `table_id`, with the openings of that table waiting written first."""
        if table_id is not None and table_id in self.waiting_tables:
            self._open_waiting()
        return self.open_now

    def _open_waiting(self) -> None:
        opened = _alerts_open(connection=self.connection, openings=self.openings, now=self.now)
        for (table_id, kind), alert in opened.items():
            if table_id is not None:
                self.open_now[table_id][kind] = alert
        self.openings, self.waiting_tables = [], set()

    def write(self) -> None:
        self._open_waiting()
        _alerts_resolve(self.resolutions, now=self.now)
        _seen_again_all(self.seen_again, now=self.now)


def alert_acknowledge(*, alert: Alert, user=None) -> Alert:
    """Keep the alert open but stop reminders."""
    if alert.status == Alert.Status.RESOLVED:
        raise AlertStateError("A resolved alert cannot be acknowledged.")
    if alert.status == Alert.Status.ACKNOWLEDGED:
        raise AlertStateError("The alert is already acknowledged.")
    with transaction.atomic():
        alert.status = Alert.Status.ACKNOWLEDGED
        alert.save(update_fields=["status"])
        event_write(alert=alert, kind=AlertEvent.Kind.ACKNOWLEDGED, at=timezone.now(), actor=user)
    return alert


RESOLVED_WHILE_FAILING = (
    "resolved by hand while the check still fails: no new alert for this failure; "
    "the check alerts again only if it fails after passing once"
)


def alert_resolve(*, alert: Alert, user=None) -> Alert:
    """Close the alert by hand. For a schema change, the table's current columns become the reference.

    If the check still fails (its latest verdict), the resolve holds until the check recovers: the failure
    that goes on opens no new alert (`resolved_while_failing_at`, read by `results_process`), so nobody is
    paged "resolved" and then "failing again" for one problem. A failure after a pass alerts as usual.
    """
    if alert.status == Alert.Status.RESOLVED:
        raise AlertStateError("The alert is already resolved.")
    now = timezone.now()
    with transaction.atomic():
        alert.status = Alert.Status.RESOLVED
        alert.resolved_at = now
        alert.resolved_while_failing_at = _still_failing_at(alert)
        alert.save(update_fields=["status", "resolved_at", "resolved_while_failing_at"])
        if alert.kind == Alert.Kind.SCHEMA_CHANGE and alert.table_id:
            tables.table_schema_accept_current(table=alert.table)
        message = RESOLVED_WHILE_FAILING if alert.resolved_while_failing_at else "resolved by hand"
        event_write(alert=alert, kind=AlertEvent.Kind.RESOLVED, at=now, actor=user, message=message)
    return alert


def alert_snooze(*, alert: Alert, until: datetime, user=None) -> Alert:
    """Silence notifications until `until`; the alert's state is still tracked."""
    if alert.status == Alert.Status.RESOLVED:
        raise AlertStateError("A resolved alert cannot be snoozed.")
    now = timezone.now()
    if until <= now:
        raise AlertStateError("The snooze must end in the future.")
    with transaction.atomic():
        alert.snoozed_until = until
        alert.save(update_fields=["snoozed_until"])
        event_write(
            alert=alert, kind=AlertEvent.Kind.SNOOZED, at=now, actor=user, message=f"snoozed until {until.isoformat()}"
        )
    return alert


def volume_alert_resolve_for_rebaseline(*, table: MonitoredTable) -> None:
    """A rebaseline accepts the new level: the open volume alert of the table resolves."""
    now = timezone.now()
    for alert in Alert.objects.filter(table=table, kind=Alert.Kind.VOLUME, status__in=UNRESOLVED):
        with transaction.atomic():
            alert.status = Alert.Status.RESOLVED
            alert.resolved_at = now
            alert.save(update_fields=["status", "resolved_at"])
            event_write(alert=alert, kind=AlertEvent.Kind.RESOLVED, at=now, message="rebaselined: new level accepted")


def table_rebaseline_accept(*, table: MonitoredTable, since: datetime | None = None) -> MonitoredTable:
    """Rebaseline the table (monitors.tables) and resolve its open volume alert, in one transaction."""
    with transaction.atomic():
        table = tables.table_rebaseline(table=table, since=since)
        volume_alert_resolve_for_rebaseline(table=table)
    return table
