"""Writing a batch's outcomes to Pulse's database: results, table state, budget refund, contact status.

Everything a batch writes after its replica work goes through `batch_bookkeep`, one transaction retried
(reconnecting, with backoff) for `PULSE_RECORD_RETRY_SECONDS`; after that the batch goes to the local
spool (monitors/spool.py) and is recorded when the database is back. Replica results already obtained
are therefore never discarded by a failure in bookkeeping.

Recording against the lease:
- while the batch's lease is its own, results, table state and alerts are recorded as usual;
- when the lease is gone (expired during an outage of Pulse's database, or taken over), the results are
  still recorded as history rows, but the table's state (status, next due time, errors) is only written
  if nobody holds the table now and no newer check of it was recorded; otherwise the table is left to
  its newer state. Alerts only react to results whose table state was written (and to the connection's
  replication lag), so a late result never reopens or resolves an alert behind a newer one.

The hand-off: whoever records a batch names what reacts to its results, an `on_recorded` handler
(`ResultsHandler`). It is called once per batch with the results whose table state was written, inside
the recording transaction, so what it writes (alerts, notifications) commits together with the results,
and an exception it raises rolls the whole batch back. `runchecks` binds alerts' intake; tools that only
check (benchmarks, tests of checking) pass `results_ignore`.
"""

import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

import psycopg
from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections, transaction
from django.db import connection as pulse_db
from django.utils import timezone

from connections import guardrails, state
from connections.models import Connection
from monitors import spool
from monitors.anomalies import volume_judge
from monitors.checks import Outcome, Status, schema_change, volume
from monitors.database import binary_cursor, model_new
from monitors.models import CheckResult, MonitoredTable

logger = logging.getLogger(__name__)
RETRY_BACKOFF_MAX_SECONDS = 5.0


class ResultsHandler(Protocol):
    """What reacts to a batch's recorded results; called inside the recording transaction."""

    def __call__(self, *, connection: Connection, results: list[CheckResult]) -> None: ...


def results_ignore(*, connection: Connection, results: list[CheckResult]) -> None:
    """A handler for tools that only check: nothing reacts to the results."""


@dataclass
class TableRun:
    table: MonitoredTable
    outcomes: list[Outcome] = field(default_factory=list)
    plan_costs: dict = field(default_factory=dict)
    update_times: list = field(default_factory=list)

    @property
    def status(self) -> str:
        statuses = {o.status for o in self.outcomes}
        if Status.ERROR in statuses:
            return MonitoredTable.Status.ERROR
        if Status.FAIL in statuses:
            return MonitoredTable.Status.FAILING
        if statuses <= {Status.SKIPPED}:
            return self.table.status
        if any(o.details.get("learning") for o in self.outcomes):
            return MonitoredTable.Status.LEARNING
        return MonitoredTable.Status.HEALTHY

    def next_check_at(self, checked_at: datetime) -> datetime:
        """The next due time: an interval on, or sooner when a guardrail held checks back until a known moment
        (`retry_at`, the replica time share): then the held-back checks run as soon as it allows."""
        due = checked_at + timedelta(seconds=self.table.check_interval_seconds)
        retries = [datetime.fromisoformat(o.details["retry_at"]) for o in self.outcomes if o.details.get("retry_at")]
        return min([due, *retries])

    @property
    def backfilled(self) -> bool:
        return any("backfilled" in o.details for o in self.outcomes)

    @property
    def volume_series(self) -> tuple[str, int]:
        """The volume series this run started (its key and bucket width in seconds), or ("", 0); a width
        re-chosen as the rate drifted is stored beside the current key, so the next run starts its series."""
        for outcome in self.outcomes:
            if outcome.kind == volume.KIND and "width_change" in outcome.details:
                return outcome.details.get("series", ""), outcome.details["width_change"]["to_seconds"]
            if outcome.kind == volume.KIND and "backfilled" in outcome.details:
                return outcome.details.get("series", ""), outcome.details.get("bucket_seconds", 0)
        return "", 0

    @property
    def error(self) -> str:
        return next((o.message for o in self.outcomes if o.status in (Status.ERROR, Status.SKIPPED)), "")

    @property
    def schema_reference(self):
        if self.table.schema_reference is not None:
            return None
        return next(
            (o.details["columns"] for o in self.outcomes if o.kind == schema_change.KIND and o.status == Status.PASS),
            None,
        )


_UPDATE_TABLES = """
UPDATE monitors_monitoredtable t SET
    status = v.status, last_checked_at = %b, next_check_at = v.next_check_at, last_error = v.last_error,
    lease_token = NULL, lease_expires_at = NULL, plan_costs = v.plan_costs::jsonb,
    schema_reference = COALESCE(t.schema_reference, v.schema_reference::jsonb),
    backfilled_at = CASE WHEN v.backfilled THEN %b ELSE t.backfilled_at END,
    update_times = v.update_times::jsonb,
    volume_series = CASE WHEN v.volume_series <> '' THEN v.volume_series ELSE t.volume_series END,
    volume_bucket_seconds = CASE WHEN v.volume_series <> '' THEN v.bucket_seconds ELSE t.volume_bucket_seconds END
FROM unnest(
    %b::bigint[], %b::text[], %b::timestamptz[], %b::text[], %b::text[], %b::text[], %b::boolean[], %b::text[],
    %b::text[], %b::int[]
) AS v(
    id, status, next_check_at, last_error, plan_costs, schema_reference, backfilled, update_times, volume_series,
    bucket_seconds
)
WHERE t.id = v.id AND (
    t.lease_token = %b
    OR ((t.lease_token IS NULL OR t.lease_expires_at < %b) AND (t.last_checked_at IS NULL OR t.last_checked_at < %b))
)
RETURNING t.id
"""


def _update_tables(*, runs: list[TableRun], token: uuid.UUID, checked_at: datetime) -> set[int]:
    ids, statuses, nexts, errors, costs, references, backfilled, update_times = [], [], [], [], [], [], [], []
    series, widths = [], []
    for run in runs:
        ids.append(run.table.id)
        statuses.append(run.status)
        nexts.append(run.next_check_at(checked_at))
        errors.append(run.error[:2000])
        costs.append(json.dumps(run.plan_costs))
        reference = run.schema_reference
        references.append(None if reference is None else json.dumps(reference))
        backfilled.append(run.backfilled)
        update_times.append(json.dumps(run.update_times))
        key, width = run.volume_series
        series.append(key)
        widths.append(width)
    with binary_cursor() as cursor:
        cursor.execute(
            _UPDATE_TABLES,
            [
                checked_at,
                checked_at,
                ids,
                statuses,
                nexts,
                errors,
                costs,
                references,
                backfilled,
                update_times,
                series,
                widths,
                token,
                timezone.now(),
                checked_at,
            ],
        )
        return {row[0] for row in cursor.fetchall()}


_TABLE_CACHE = CheckResult.table.field
_CONNECTION_CACHE = CheckResult.connection.field


def _result(outcome: Outcome, *, connection: Connection, table: MonitoredTable | None, started_at) -> CheckResult:
    """A result as a model instance (for the alert lifecycle), built from positional values (`model_new`): several
    times cheaper per result than keyword arguments through the related-object descriptors."""
    result = model_new(
        CheckResult,
        (
            None,  # id, set by the INSERT
            connection.pk,
            None if table is None else table.pk,
            outcome.check_id,
            outcome.kind,
            outcome.status,
            outcome.observed_value,
            outcome.expected_lower,
            outcome.expected_upper,
            outcome.message[:4000],
            started_at,
            outcome.duration_ms,
            min(outcome.queries_used, 32767),
            outcome.bucket_start,
            outcome.details.get("series", "") if outcome.kind == volume.KIND else "",
            outcome.details,
            outcome.is_anomaly,
            False,  # marked_expected
        ),
    )
    _CONNECTION_CACHE.set_cached_value(result, connection)
    _TABLE_CACHE.set_cached_value(result, table)
    return result


def _backfilled_results(run: TableRun, connection: Connection) -> list[CheckResult]:
    """Values read from the table's own history, stored as past volume results to train the baseline."""
    return [
        CheckResult(
            connection=connection,
            table=run.table,
            kind=volume.KIND,
            status=Status.PASS,
            observed_value=value,
            bucket_start=bucket,
            series=outcome.details.get("series", ""),
            started_at=bucket,
            message="backfilled from the table's own history",
            details={"backfill": True},
        )
        for outcome in run.outcomes
        for bucket, value in outcome.history
    ]


# The batch's result ids, taken from the table's identity sequence in one statement, then its rows in one binary COPY
# (psycopg encodes COPY rows in C; binding them as arrays dumped every element in Python).
_RESULT_IDS = """
SELECT nextval(seq) FROM CAST(pg_get_serial_sequence('monitors_checkresult', 'id') AS regclass) AS seq,
     generate_series(1, %b)
"""
_COPY_RESULTS = """
COPY monitors_checkresult (
    id, connection_id, table_id, check_definition_id, kind, status, observed_value, expected_lower, expected_upper,
    message, started_at, duration_ms, queries_used, bucket_start, details, is_anomaly, marked_expected, series
) FROM STDIN (FORMAT BINARY)
"""
_COPY_TYPES = (
    "int8", "int8", "int8", "int8", "text", "text", "float8", "float8", "float8",
    "text", "timestamptz", "int4", "int2", "timestamptz", "jsonb", "bool", "bool", "text",
)  # fmt: skip


def _float(value) -> float | None:
    return None if value is None else float(value)


def _insert_results(results: list[CheckResult]) -> None:
    """Write a batch's results with one id read and one COPY (the ORM's bulk_create costs more CPU than the
    checks); sets their ids, ascending in the list's order."""
    if not results:
        return
    with binary_cursor() as cursor:
        cursor.execute(_RESULT_IDS, [len(results)])
        ids = sorted(row[0] for row in cursor.fetchall())
        with cursor.copy(_COPY_RESULTS) as copy:
            copy.set_types(_COPY_TYPES)
            for result, new_id in zip(results, ids, strict=True):
                copy.write_row(
                    (
                        new_id,
                        result.connection_id,
                        result.table_id,
                        result.check_definition_id,
                        result.kind,
                        result.status,
                        _float(result.observed_value),
                        _float(result.expected_lower),
                        _float(result.expected_upper),
                        result.message,
                        result.started_at,
                        result.duration_ms,
                        result.queries_used,
                        result.bucket_start,
                        result.details,
                        result.is_anomaly,
                        result.marked_expected,
                        result.series,
                    )
                )
    for result, new_id in zip(results, ids, strict=True):
        result.id = result.pk = new_id
        result._state.adding = False


def _existing_tables(table_ids: list[int]) -> set[int]:
    """Tables still present (and kept so until commit: FOR KEY SHARE blocks their deletion)."""
    if not table_ids:
        return set()
    with pulse_db.cursor() as cursor:
        cursor.execute("SELECT id FROM monitors_monitoredtable WHERE id = ANY(%s) FOR KEY SHARE", [table_ids])
        return {row[0] for row in cursor.fetchall()}


def results_record(
    *,
    connection: Connection,
    token: uuid.UUID,
    runs: list[TableRun],
    connection_outcomes: list[Outcome],
    started_at: datetime,
    on_recorded: ResultsHandler,
) -> list[CheckResult]:
    """Record a batch in one transaction: every result as history; table state as described in the module
    docstring. `on_recorded` gets the results whose table state was written (and the connection's), in the
    same transaction. Returns those results."""
    with transaction.atomic():
        kept = _update_tables(runs=runs, token=token, checked_at=started_at) if runs else set()
        late = [run.table.id for run in runs if run.table.id not in kept]
        present = kept | _existing_tables(late)
        if late:
            logger.warning("lease lost for tables %s: results recorded, table state left to its newer owner", late)
        current = [
            _result(outcome, connection=connection, table=run.table, started_at=started_at)
            for run in runs
            if run.table.id in kept
            for outcome in run.outcomes
        ]
        current += [_result(o, connection=connection, table=None, started_at=started_at) for o in connection_outcomes]
        history = [
            _result(outcome, connection=connection, table=run.table, started_at=started_at)
            for run in runs
            if run.table.id in present and run.table.id not in kept
            for outcome in run.outcomes
        ]
        history += [r for run in runs if run.table.id in kept for r in _backfilled_results(run, connection)]
        _insert_results(history + current)
        on_recorded(connection=connection, results=current)
    return current


@dataclass
class Bookkeeping:
    """Everything a batch writes to Pulse's database once its replica work is done."""

    connection: Connection
    token: uuid.UUID
    started_at: datetime
    runs: list[TableRun]
    connection_outcomes: list[Outcome] = field(default_factory=list)
    unused_queries: int = 0  # reserved from the hourly budget but not sent: given back
    contact_status: str = ""  # the connection's status after this contact ("" = not contacted)
    contact_error: str = ""


def bookkeeping_write(book: Bookkeeping, *, on_recorded: ResultsHandler) -> list[CheckResult]:
    """One try, in one transaction: volume verdicts, results, table state, `on_recorded`, then the contact status
    and the budget refund. Those two come last: they lock the connection's row and its allowance row, which the
    batches of every process update, so the rows stay locked only while the transaction commits."""
    with transaction.atomic():
        volume_judge(runs=book.runs)
        recorded = results_record(
            connection=book.connection,
            token=book.token,
            runs=book.runs,
            connection_outcomes=book.connection_outcomes,
            started_at=book.started_at,
            on_recorded=on_recorded,
        )
        if book.contact_status == Connection.Status.OK:
            state.contact_succeeded(connection=book.connection, now=book.started_at)
        elif book.contact_status:
            state.contact_failed(
                connection=book.connection, status=book.contact_status, error=book.contact_error, now=book.started_at
            )
        guardrails.allowance_refund(connection=book.connection, queries=book.unused_queries, now=book.started_at)
        return recorded


# What a retry can outlive: Pulse's database went away, or PostgreSQL rolled the transaction back (a deadlock, a
# lock timeout) — not a bad row. Raw psycopg errors are listed too: the binary cursor of `binary_cursor` works
# below Django, so its errors are not wrapped in Django's classes.
RETRYABLE_DATABASE_ERRORS = (OperationalError, InterfaceError, psycopg.OperationalError, psycopg.InterfaceError)


def batch_bookkeep(
    book: Bookkeeping, *, on_recorded: ResultsHandler, retry_seconds: float | None = None
) -> list[CheckResult]:
    """Write `book`, riding out a restart or an outage of Pulse's own database: reconnect and retry with
    backoff for `retry_seconds` (default `PULSE_RECORD_RETRY_SECONDS`), then hand it to the spool."""
    budget = settings.PULSE_RECORD_RETRY_SECONDS if retry_seconds is None else retry_seconds
    deadline = time.monotonic() + budget
    delay = 0.5
    while True:
        try:
            return bookkeeping_write(book, on_recorded=on_recorded)
        except RETRYABLE_DATABASE_ERRORS as exc:
            if pulse_db.in_atomic_block:
                raise
            pulse_db.close()
            if time.monotonic() + delay > deadline:
                path = spool.spool_put(bookkeeping_dump(book), name=f"{book.started_at:%Y%m%dT%H%M%S%f}-{book.token}")
                logger.warning("recording a batch failed for %.0f s: batch spooled to %s", budget, path)
                return []
            logger.warning("recording a batch failed (%s); retrying in %.1f s", type(exc).__name__, delay)
            time.sleep(delay)
            delay = min(delay * 2, RETRY_BACKOFF_MAX_SECONDS)
            close_old_connections()


# --- the spool: a batch as plain JSON, and recording it late ------------------------------------------


def _outcome_dump(outcome: Outcome) -> dict:
    data = dict(outcome.__dict__)
    data["bucket_start"] = outcome.bucket_start.isoformat() if outcome.bucket_start else None
    data["history"] = [[at.isoformat(), value] for at, value in outcome.history]
    return data


def _outcome_load(data: dict) -> Outcome:
    data = dict(data)
    data["bucket_start"] = datetime.fromisoformat(data["bucket_start"]) if data["bucket_start"] else None
    data["history"] = [(datetime.fromisoformat(at), value) for at, value in data["history"]]
    return Outcome(**data)


def bookkeeping_dump(book: Bookkeeping) -> dict:
    return {
        "version": 1,
        "connection_id": book.connection.pk,
        "token": str(book.token),
        "started_at": book.started_at.isoformat(),
        "unused_queries": book.unused_queries,
        "contact_status": book.contact_status,
        "contact_error": book.contact_error,
        "connection_outcomes": [_outcome_dump(o) for o in book.connection_outcomes],
        "runs": [
            {
                "table_id": run.table.id,
                "plan_costs": run.plan_costs,
                "update_times": run.update_times,
                "outcomes": [_outcome_dump(o) for o in run.outcomes],
            }
            for run in book.runs
        ],
    }


def bookkeeping_load(data: dict) -> Bookkeeping | None:
    """Rebuild a spooled batch against the database as it is now; None when its connection is gone.
    Runs of tables deleted meanwhile are dropped."""
    connection = Connection.objects.filter(pk=data["connection_id"]).first()
    if connection is None:
        return None
    tables = MonitoredTable.objects.in_bulk([run["table_id"] for run in data["runs"]])
    runs = []
    for run in data["runs"]:
        table = tables.get(run["table_id"])
        if table is None:
            continue
        table.connection = connection
        runs.append(
            TableRun(
                table=table,
                outcomes=[_outcome_load(o) for o in run["outcomes"]],
                plan_costs=run["plan_costs"],
                update_times=run["update_times"],
            )
        )
    return Bookkeeping(
        connection=connection,
        token=uuid.UUID(data["token"]),
        started_at=datetime.fromisoformat(data["started_at"]),
        runs=runs,
        connection_outcomes=[_outcome_load(o) for o in data["connection_outcomes"]],
        unused_queries=data["unused_queries"],
        contact_status=data["contact_status"],
        contact_error=data["contact_error"],
    )


def spool_flush(*, on_recorded: ResultsHandler) -> int:
    """Record spooled batches while Pulse's database answers, handing their results to `on_recorded` as a
    batch recorded in time would; returns how many were recorded.

    A spooled batch's lease is usually gone by now: see the module docstring for what it may change.
    """
    recorded = 0
    for path, payload in spool.spool_claim():
        try:
            book = bookkeeping_load(payload)
            if book is not None:
                bookkeeping_write(book, on_recorded=on_recorded)
        except RETRYABLE_DATABASE_ERRORS:
            spool.spool_return(path)
            pulse_db.close()
            logger.warning("Pulse's database is still unreachable; spooled batches wait for the next tick")
            return recorded
        except Exception:
            logger.exception("spooled batch %s could not be recorded; moved aside", path.name)
            spool.spool_reject(path)
            continue
        spool.spool_done(path)
        recorded += 1
        logger.info("recorded spooled batch %s", path.name)
    return recorded
