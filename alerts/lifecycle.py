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
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db import connection as db_connection
from django.db.models import Q
from django.utils import timezone

from alerts.models import Alert, AlertEvent
from alerts.outbox import notifications_for_event
from connections import maintenance
from connections.models import Connection
from connections.state import connection_error_streak_bump, connection_error_streak_reset
from monitors import tables
from monitors.checks import TABLE_KINDS, CheckKind, Status
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
    event = AlertEvent.objects.create(alert=alert, kind=kind, at=at, message=message, actor=actor)
    notifications_for_event(event=event)
    return event


def _unresolved(connection: Connection, *, table_ids) -> dict[tuple[int | None, str], Alert]:
    """The unresolved alerts of the connection itself and of the batch's tables (never the connection's every
    alert: with 100,000 failing tables, each batch would read them all)."""
    alerts = Alert.objects.filter(
        Q(table_id__isnull=True) | Q(table_id__in=table_ids), connection=connection, status__in=UNRESOLVED
    ).select_related("table")
    return {(a.table_id, a.kind): a for a in alerts}


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
    with db_connection.cursor() as cursor:
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


def _open(*, connection, table, kind, severity, message, now, failures) -> Alert:
    """Open an alert, or reopen the same problem's alert if it was auto-resolved moments ago."""
    recent = (
        Alert.objects.filter(
            connection=connection,
            table=table,
            kind=kind,
            status=Alert.Status.RESOLVED,
            resolved_at__gte=now - REOPEN_WITHIN,
        )
        .order_by("-resolved_at")
        .first()
    )
    if recent is not None:
        recent.status = Alert.Status.OPEN
        recent.resolved_at = None
        recent.resolved_while_failing_at = None
        recent.message = message
        recent.last_seen_at = now
        recent.consecutive_failures = failures
        recent.snoozed_until = None
        recent.save()
        event_write(alert=recent, kind=AlertEvent.Kind.REOPENED, at=now, message=message)
        return recent
    alert = Alert.objects.create(
        connection=connection,
        table=table,
        kind=kind,
        severity=severity,
        message=message,
        opened_at=now,
        last_seen_at=now,
        consecutive_failures=failures,
    )
    event_write(alert=alert, kind=AlertEvent.Kind.OPENED, at=now, message=message)
    return alert


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


def _held_by_hand(*, connection: Connection, table_id: int | None, kind: str) -> bool:
    """Whether the problem's last alert was resolved by hand while failing, and its check has not passed since.

    (For connection_error, "passed" means a check ran: a pass or a fail.)"""
    held_at = (
        Alert.objects.filter(connection=connection, table_id=table_id, kind=kind, status=Alert.Status.RESOLVED)
        .order_by("-resolved_at", "-id")
        .values_list("resolved_while_failing_at", flat=True)
        .first()
    )
    if held_at is None:
        return False
    recovered = (Status.FAIL, Status.PASS) if kind == Alert.Kind.CONNECTION_ERROR else (Status.PASS,)
    results = _problem_results(connection_id=connection.id, table_id=table_id, kind=kind)
    return not results.filter(status__in=recovered, started_at__gt=held_at).exists()


def _auto_resolve(alert: Alert, *, message: str, now: datetime) -> None:
    alert.status = Alert.Status.RESOLVED
    alert.resolved_at = now
    alert.save(update_fields=["status", "resolved_at"])
    event_write(alert=alert, kind=AlertEvent.Kind.RESOLVED, at=now, message=f"recovered: {message}")


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


def _with_related(message: str, *, table_id: int | None, kind: str, open_now: dict) -> str:
    """`message`, followed by the other unresolved alerts of the same table (one cause often fails several checks)."""
    if table_id is None:
        return message
    related = [
        f"{RELATED_PHRASES.get(other_kind, Alert.Kind(other_kind).label + ' also fails')} "
        f"({Alert.Kind(other_kind).label.lower()} alert {alert.id})"
        for (other_table_id, other_kind), alert in sorted(open_now.items(), key=lambda item: item[1].id)
        if other_table_id == table_id and other_kind != kind
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
                _auto_resolve(alert, message="checks run again", now=now)
        return
    streak = connection_error_streak_bump(connection=connection)
    where = failed[0].table.qualified_name + " " if failed[0].table_id else ""
    message = f"{len(failed)} check(s) could not run, e.g. {where}{failed[0].kind}: {failed[0].message}"
    alert = unresolved.get((None, Alert.Kind.CONNECTION_ERROR))
    if alert:
        _seen_again(alert, message=message, now=now)
    elif (
        streak >= connection.connection_error_threshold
        and not quiet
        and not _held_by_hand(connection=connection, table_id=None, kind=Alert.Kind.CONNECTION_ERROR)
    ):
        _open(
            connection=connection,
            table=None,
            kind=Alert.Kind.CONNECTION_ERROR,
            severity=Alert.Severity.CRITICAL,
            message=message,
            now=now,
            failures=streak,
        )


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
    unresolved = _unresolved(connection, table_ids=list({r.table_id for r in results if r.table_id is not None}))
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
    holding = None
    open_now = {problem: alert for problem, alert in unresolved.items() if problem[0] is not None}
    for problem, problem_results in by_problem.items():
        statuses = {r.status for r in problem_results}
        if Status.PASS in statuses and Status.FAIL not in statuses:
            open_now.pop(problem, None)  # resolves below: related no more
    # Freshness first: a table that stopped receiving rows is stale before its volume drops, and an alert
    # opened later in this run names the ones opened before it ("Related: the table is also stale").
    problems = sorted(by_problem.items(), key=lambda item: item[0][1] != CheckKind.FRESHNESS)
    streaks = {} if quiet else _table_streaks(connection=connection, problems=problems, unresolved=unresolved, now=now)
    seen_again: dict[int, str] = {}
    for (table_id, kind), problem_results in problems:
        failing = [r for r in problem_results if r.status == Status.FAIL]
        passing = [r for r in problem_results if r.status == Status.PASS]
        alert = unresolved.get((table_id, kind))
        if failing:
            message = "; ".join(r.message for r in failing)
            message = _with_related(message, table_id=table_id, kind=kind, open_now=open_now)
            if alert:
                seen_again[alert.pk] = message
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
            if streak >= threshold and not _held_by_hand(connection=connection, table_id=table_id, kind=kind):
                try:
                    with transaction.atomic():
                        open_now[(table_id, kind)] = _open(
                            connection=connection,
                            table=table,
                            kind=kind,
                            severity=Alert.Severity.WARNING,
                            message=message,
                            now=now,
                            failures=streak,
                        )
                except IntegrityError:
                    # Another process opened it at the same moment: the constraint keeps one alert.
                    logger.info("alert for %s/%s already opened by another process", table_id, kind)
        elif passing and alert:
            _auto_resolve(alert, message=passing[0].message, now=now)
    _seen_again_all(seen_again, now=now)


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
