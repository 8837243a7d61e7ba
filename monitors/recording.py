"""Writing a batch's outcomes: results, table state, and the lease check that makes recording exactly-once."""

import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import psycopg
from django.db import InterfaceError, OperationalError, close_old_connections, transaction
from django.db import connection as pulse_db

from connections.models import Connection
from monitors.checks import Outcome
from monitors.models import CheckResult, MonitoredTable
from monitors.signals import results_recorded

logger = logging.getLogger(__name__)
RECORD_RETRIES = 6  # Pulse's own database may be restarting: wait up to about a minute


@dataclass
class TableRun:
    table: MonitoredTable
    outcomes: list[Outcome] = field(default_factory=list)
    plan_costs: dict = field(default_factory=dict)
    update_times: list = field(default_factory=list)

    @property
    def status(self) -> str:
        statuses = {o.status for o in self.outcomes}
        if "error" in statuses:
            return MonitoredTable.Status.ERROR
        if "fail" in statuses:
            return MonitoredTable.Status.FAILING
        if statuses <= {"skipped"}:
            return self.table.status
        if any(o.details.get("learning") for o in self.outcomes):
            return MonitoredTable.Status.LEARNING
        return MonitoredTable.Status.HEALTHY

    @property
    def backfilled(self) -> bool:
        return any("backfilled" in o.details for o in self.outcomes)

    @property
    def error(self) -> str:
        return next((o.message for o in self.outcomes if o.status in ("error", "skipped")), "")

    @property
    def schema_reference(self):
        if self.table.schema_reference is not None:
            return None
        return next(
            (o.details["columns"] for o in self.outcomes if o.kind == "schema_change" and o.status == "pass"), None
        )


def _binary_cursor() -> psycopg.Cursor:
    """A psycopg cursor on Django's connection (same transaction) that binds parameters server-side, in
    binary: Django's own cursor interpolates arrays as text, which costs more CPU than the checks."""
    pulse_db.ensure_connection()
    return psycopg.Cursor(pulse_db.connection)


_UPDATE_TABLES = """
UPDATE monitors_monitoredtable t SET
    status = v.status, last_checked_at = %b, next_check_at = v.next_check_at, last_error = v.last_error,
    lease_token = NULL, lease_expires_at = NULL, plan_costs = v.plan_costs::jsonb,
    schema_reference = COALESCE(t.schema_reference, v.schema_reference::jsonb),
    backfilled_at = CASE WHEN v.backfilled THEN %b ELSE t.backfilled_at END,
    update_times = v.update_times::jsonb
FROM unnest(
    %b::bigint[], %b::text[], %b::timestamptz[], %b::text[], %b::text[], %b::text[], %b::boolean[], %b::text[]
) AS v(id, status, next_check_at, last_error, plan_costs, schema_reference, backfilled, update_times)
WHERE t.id = v.id AND t.lease_token = %b
RETURNING t.id
"""


def _update_tables(*, runs: list[TableRun], token: uuid.UUID, checked_at: datetime) -> set[int]:
    ids, statuses, nexts, errors, costs, references, backfilled, update_times = [], [], [], [], [], [], [], []
    for run in runs:
        ids.append(run.table.id)
        statuses.append(run.status)
        nexts.append(checked_at + timedelta(seconds=run.table.check_interval_seconds))
        errors.append(run.error[:2000])
        costs.append(json.dumps(run.plan_costs))
        reference = run.schema_reference
        references.append(None if reference is None else json.dumps(reference))
        backfilled.append(run.backfilled)
        update_times.append(json.dumps(run.update_times))
    with _binary_cursor() as cursor:
        cursor.execute(
            _UPDATE_TABLES,
            [checked_at, checked_at, ids, statuses, nexts, errors, costs, references, backfilled, update_times, token],
        )
        return {row[0] for row in cursor.fetchall()}


def _result(outcome: Outcome, *, connection: Connection, table: MonitoredTable | None, started_at) -> CheckResult:
    return CheckResult(
        connection=connection,
        table=table,
        check_definition_id=outcome.check_id,
        kind=outcome.kind,
        status=outcome.status,
        observed_value=outcome.observed_value,
        expected_lower=outcome.expected_lower,
        expected_upper=outcome.expected_upper,
        message=outcome.message[:4000],
        started_at=started_at,
        duration_ms=outcome.duration_ms,
        queries_used=min(outcome.queries_used, 32767),
        bucket_start=outcome.bucket_start,
        details=outcome.details,
        is_anomaly=outcome.is_anomaly,
    )


def _backfilled_results(run: TableRun, connection: Connection) -> list[CheckResult]:
    """Values read from the table's own history, stored as past volume results to train the baseline."""
    return [
        CheckResult(
            connection=connection,
            table=run.table,
            kind="volume",
            status="pass",
            observed_value=value,
            bucket_start=bucket,
            started_at=bucket,
            message="backfilled from the table's own history",
            details={"backfill": True},
        )
        for outcome in run.outcomes
        for bucket, value in outcome.history
    ]


_INSERT_RESULTS = """
INSERT INTO monitors_checkresult (
    connection_id, table_id, check_definition_id, kind, status, observed_value, expected_lower, expected_upper,
    message, started_at, duration_ms, queries_used, bucket_start, details, is_anomaly, marked_expected
)
SELECT v.connection_id, v.table_id, v.check_id, v.kind, v.status, v.observed, v.lower, v.upper, v.message,
       v.started_at, v.duration_ms, v.queries_used, v.bucket_start, v.details::jsonb, v.is_anomaly, false
FROM unnest(
    %b::bigint[], %b::bigint[], %b::bigint[], %b::text[], %b::text[], %b::float8[], %b::float8[], %b::float8[],
    %b::text[], %b::timestamptz[], %b::int[], %b::smallint[], %b::timestamptz[], %b::text[], %b::boolean[]
) WITH ORDINALITY AS v(
    connection_id, table_id, check_id, kind, status, observed, lower, upper, message, started_at, duration_ms,
    queries_used, bucket_start, details, is_anomaly, n
)
ORDER BY v.n
RETURNING id
"""
_RESULT_COLUMNS = (
    "connection_id",
    "table_id",
    "check_definition_id",
    "kind",
    "status",
    "observed_value",
    "expected_lower",
    "expected_upper",
    "message",
    "started_at",
    "duration_ms",
    "queries_used",
    "bucket_start",
    "details",
    "is_anomaly",
)


def _insert_results(results: list[CheckResult]) -> None:
    """One INSERT for a batch's results (the ORM's bulk_create costs more CPU than the checks); sets their ids."""
    if not results:
        return
    columns = [[getattr(r, name) for r in results] for name in _RESULT_COLUMNS]
    for index in (5, 6, 7):  # observed_value and the band: one element type per array
        columns[index] = [None if v is None else float(v) for v in columns[index]]
    columns[13] = [json.dumps(details) for details in columns[13]]
    with _binary_cursor() as cursor:
        cursor.execute(_INSERT_RESULTS, columns)
        for result, (new_id,) in zip(results, cursor.fetchall(), strict=True):
            result.id = result.pk = new_id
            result._state.adding = False


def results_record(
    *,
    connection: Connection,
    token: uuid.UUID,
    runs: list[TableRun],
    connection_outcomes: list[Outcome],
    started_at: datetime,
) -> list[CheckResult]:
    """Record a batch in one transaction; tables whose lease was lost meanwhile are left to their new owner."""
    with transaction.atomic():
        kept = _update_tables(runs=runs, token=token, checked_at=started_at) if runs else set()
        lost = [run.table.id for run in runs if run.table.id not in kept]
        if lost:
            logger.warning("lease lost for tables %s; their results are discarded", lost)
        results = [
            _result(outcome, connection=connection, table=run.table, started_at=started_at)
            for run in runs
            if run.table.id in kept
            for outcome in run.outcomes
        ]
        results += [_result(o, connection=connection, table=None, started_at=started_at) for o in connection_outcomes]
        history = [r for run in runs if run.table.id in kept for r in _backfilled_results(run, connection)]
        _insert_results(history + results)
        results_recorded.send(sender=CheckResult, connection=connection, results=results)
    return results


def results_record_with_retry(**kwargs) -> list[CheckResult]:
    """Record, riding out a restart of Pulse's own database (reconnecting between tries)."""
    for attempt in range(RECORD_RETRIES):
        try:
            return results_record(**kwargs)
        except (OperationalError, InterfaceError):  # the database went away: not a bad row
            if attempt == RECORD_RETRIES - 1 or pulse_db.in_atomic_block:
                raise
            logger.warning("recording results failed; retrying", exc_info=True)
            pulse_db.close()
            time.sleep(min(2**attempt, 16))
            close_old_connections()
    raise AssertionError("unreachable")
