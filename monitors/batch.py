"""Running one batch of claimed tables of one connection: one guarded, read-only replica session.

The replica work writes nothing to Pulse's database but the guardrails' own slots and reservations;
everything else (results, table state, contact status, budget refund) is written afterwards by
`recording.batch_bookkeep`, which survives an outage of Pulse's database.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from connections import guardrails, replica, state
from connections.models import Connection
from monitors import checks
from monitors.checks import CheckContext, Outcome, Status, replication_lag, volume
from monitors.checks.base import catalogs_read
from monitors.checks.replication_lag import ReplicaState
from monitors.claims import Claim, lease_release
from monitors.models import Check, CheckResult, MonitoredTable
from monitors.recording import Bookkeeping, ResultsHandler, TableRun, batch_bookkeep

logger = logging.getLogger(__name__)

SLOT_WAIT_SECONDS = 30.0


def planned_checks(table: MonitoredTable) -> list[tuple[object, Check | None]]:
    """The (kind module, check definition) pairs a run of this table executes."""
    plan = [(checks.BUILT_IN["schema_change"], None), (checks.BUILT_IN["volume"], None)]
    if table.timestamp_column:
        plan.append((checks.BUILT_IN["freshness"], None))
    active = getattr(table, "active_checks", None)  # set by the claim; else read them now
    if active is None:
        active = [c for c in table.checks.all() if c.is_active]
    plan += [(checks.CONFIGURABLE[c.kind], c) for c in active]
    return plan


def _timed(module, check: Check | None, ctx: CheckContext) -> Outcome:
    """Run one check, turning guardrail stops into `skipped` and query failures into `error` outcomes."""
    kind, runner = module.KIND, ctx.runner
    started, sent_before = time.monotonic(), runner.queries_sent
    try:
        outcome = module.run(ctx, check)
    except guardrails.SessionLost:
        raise
    except guardrails.GuardrailStop as stop:
        outcome = Outcome(kind=kind, status=Status.SKIPPED, message=str(stop), details={"reason": stop.reason})
    except guardrails.CheckError as exc:
        outcome = Outcome(kind=kind, status=Status.ERROR, message=str(exc))
    outcome.duration_ms = int((time.monotonic() - started) * 1000)
    outcome.queries_used = runner.queries_sent - sent_before
    outcome.check_id = check.pk if check else None
    return outcome


def _lag_due(connection: Connection, now: datetime) -> bool:
    """Claim this cycle's replication-lag check of the connection (one process wins).

    With Pulse's database unreachable nobody can win it: the lag check waits for a later batch."""
    try:
        return state.connection_lag_check_claim(
            connection=connection, now=now, interval=replication_lag.LAG_CHECK_INTERVAL
        )
    except DatabaseError:
        logger.warning("Pulse's database unreachable: the replication-lag check of connection %s waits", connection.pk)
        return False


class ConnectionBusy(Exception):
    """Every session slot of the connection is taken; the batch's tables were given back unchecked."""


def batch_time_limit(*, connection: Connection, tables: list[MonitoredTable]) -> float:
    """Seconds a batch of `tables` may take at most: waiting for a slot, connecting, every planned query
    up to its statement timeout (with its recovery-conflict retries) at the connection's rate, and
    recording (retried while Pulse's database is away). Its lease is renewed for that long."""
    queries = 1 + sum(module.QUERIES for table in tables for module, _ in planned_checks(table))
    per_query = (
        connection.statement_timeout_ms / 1000 * (1 + guardrails.RECOVERY_CONFLICT_RETRIES)
        + connection.min_query_interval
    )
    share_waits = (1 + len(tables)) * guardrails.SHARE_WAIT_MAX_SECONDS  # at the start and between tables
    return (
        SLOT_WAIT_SECONDS
        + replica.CONNECT_TIMEOUT_SECONDS
        + queries * per_query
        + share_waits
        + settings.PULSE_RECORD_RETRY_SECONDS
    )


def _everything(
    runs: list[TableRun],
    plans: dict,
    *,
    status: Status,
    message: str,
    reason: str = "",
    retry_at: datetime | None = None,
) -> None:
    details = {"reason": reason} if reason else {}
    if retry_at is not None:
        details["retry_at"] = retry_at.isoformat()
    for run in runs:
        run.outcomes = [
            Outcome(
                kind=module.KIND,
                status=status,
                message=message,
                check_id=check.pk if check else None,
                details=dict(details),
            )
            for module, check in plans[run.table.id]
        ]


def batch_run(
    *,
    connection: Connection,
    claim: Claim,
    tables: list[MonitoredTable],
    on_recorded: ResultsHandler,
    slot_wait_seconds: float = SLOT_WAIT_SECONDS,
    release_when_busy: bool = False,
    sessions: guardrails.SessionKeeper | None = None,
) -> list[CheckResult]:
    """Check `tables` (all of `connection`, leased by `claim`) in one replica session and record the results;
    `on_recorded` gets the recorded results inside the recording transaction (see monitors.recording).

    With `sessions` (the daemon's keeper) the batch runs in a warm session kept from an earlier batch when one
    is idle, and its session is kept for the next one when everything went well; else it is closed at the end.

    With every session slot busy for `slot_wait_seconds`, the tables are `skipped` (concurrency), or with
    `release_when_busy` given back unchecked (their due time unchanged) and ConnectionBusy is raised.
    """
    started_at = timezone.now()
    plans = {t.id: planned_checks(t) for t in tables}
    runs = [
        TableRun(table=t, plan_costs=dict(t.plan_costs or {}), update_times=list(t.update_times or [])) for t in tables
    ]
    book = Bookkeeping(connection=connection, token=claim.token, started_at=started_at, runs=runs)
    allowance = guardrails.Allowance(
        connection=connection, now=started_at, shared=guardrails.query_caps_bind(connection)
    )
    share = guardrails.TimeShare(connection=connection)
    checkout = sessions.checkout if sessions is not None else guardrails.one_off_checkout
    try:
        with checkout(connection=connection, wait_seconds=slot_wait_seconds) as held:
            share.admit()
            planned = 1 + sum(module.QUERIES for plan in plans.values() for module, _ in plan)
            allowance.reserve(planned)  # if the whole batch doesn't fit, queries are reserved one by one
            try:
                _run_on_replica(connection, held, runs, plans, allowance, share, book)
            finally:
                if not allowance.shared:
                    share.count_queries(allowance.used)
                share.settle()
    except guardrails.GuardrailStop as stop:
        if stop.reason == "concurrency" and release_when_busy:
            lease_release(table_ids=[t.id for t in tables], token=claim.token)
            raise ConnectionBusy(str(stop)) from None
        _everything(runs, plans, status=Status.SKIPPED, message=str(stop), reason=stop.reason, retry_at=stop.retry_at)
    book.unused_queries = allowance.unused
    return batch_bookkeep(book, on_recorded=on_recorded)


def _contact(book: Bookkeeping, status: str, error: str = "") -> None:
    book.contact_status, book.contact_error = status, error


def _read_together(contexts: list[CheckContext]) -> None:
    """Read the catalog entries of every table of the batch in one statement, then the backfill of the tables
    checked for the first time (`volume.batch_backfill`) and the data of every table that can be read together
    (`volume.batch_read`), each in as few statements as the cost limit allows. A statement that fails (a lock, a table
    dropped meanwhile, a permission, a guardrail) leaves its facts unset: each table then reads its own, so one
    bad table never costs the others their result. SessionLost propagates."""
    try:
        catalogs_read(contexts)
    except (guardrails.GuardrailStop, guardrails.CheckError) as exc:
        logger.info("a batch's catalog statement failed (%s): each table reads its own", exc)
        return
    volume.batch_backfill(contexts)
    volume.batch_read(contexts)


def _read_already(ctx: CheckContext, plan: list) -> bool:
    """True when the batch's statements read everything this table's run needs (built-in checks only; the
    newest timestamp too when freshness is checked)."""
    read = ctx.facts.get("batch_read")
    if read is None or any(check is not None for _, check in plan):
        return False
    return not ctx.table.timestamp_column or read.kind != "count"


def _run_on_replica(connection, held: guardrails.Checkout, runs, plans, allowance, share, book: Bookkeeping) -> None:
    """Run the plans in the checkout's session (a new one unless it is warm); outcomes go to `runs`, the
    contact's result and lag outcome to `book`. `held.keep` is set when the session may serve another batch: no
    statement failed and the replica is still in recovery (the checkout closes the session otherwise).

    The session's start-up and every statement are spent from the replica time `share`; between tables it
    may sleep a short refill or hold the remaining tables back (`skipped`, with when they run again)."""
    if held.session is None:
        connecting = time.perf_counter()
        try:
            held.session = replica.connect(
                conninfo=connection.conninfo(), statement_timeout_ms=connection.statement_timeout_ms
            )
        except (replica.ReplicaError, ValueError) as exc:
            # Not charged: a replica that cannot be reached did no work, and its outage must read as an error.
            _contact(book, Connection.Status.ERROR, str(exc))
            _everything(runs, plans, status=Status.ERROR, message=str(exc))
            return
        share.spend((time.perf_counter() - connecting) * 1000)  # a backend's start-up is server time too
    held.tables_seen.update(run.table.id for run in runs)
    runner = guardrails.QueryRunner(session=held.session, connection=connection, allowance=allowance, share=share)
    _checks_run(connection, runner, runs, plans, share, book)
    held.keep = book.contact_status == Connection.Status.OK and not runner.failed


def _checks_run(connection, runner, runs, plans, share, book: Bookkeeping) -> None:
    """The batch's statements on `runner`'s session: the replica's state, the batch's set-based reads, each table."""
    started_at = book.started_at
    try:
        replica_state = ReplicaState.from_row(runner.fetchone(replication_lag.STATE_QUERY))
    except guardrails.CheckError as exc:
        _contact(book, Connection.Status.ERROR, str(exc))
        _everything(runs, plans, status=Status.ERROR, message=str(exc))
        return
    if connection.require_replica and not replica_state.in_recovery:
        message = "not a read replica (pg_is_in_recovery() is false): no checks run"
        _contact(book, Connection.Status.NOT_REPLICA, message)
        _everything(runs, plans, status=Status.ERROR, message=message)
        return
    _contact(book, Connection.Status.OK)
    if replica_state.in_recovery and _lag_due(connection, started_at):
        book.connection_outcomes.append(replication_lag.outcome(connection=connection, state=replica_state))
    contexts = [
        CheckContext(
            runner=runner,
            table=run.table,
            now=replica_state.now,
            data_as_of=replica_state.data_as_of,
            plan_costs=run.plan_costs,
            update_times=run.update_times,
        )
        for run in runs
    ]
    try:
        _read_together(contexts)
    except guardrails.SessionLost as lost:
        _contact(book, Connection.Status.ERROR, str(lost))
        _everything(runs, plans, status=Status.ERROR, message=str(lost))
        return
    for index, (run, ctx) in enumerate(zip(runs, contexts, strict=True)):
        try:
            if index and not _read_already(ctx, plans[run.table.id]):  # the first was admitted with the batch
                share.checkpoint()
        except guardrails.GuardrailStop as stop:
            _everything(
                runs[index:],
                plans,
                status=Status.SKIPPED,
                message=str(stop),
                reason=stop.reason,
                retry_at=stop.retry_at,
            )
            break
        try:
            for module, check in plans[run.table.id]:
                run.outcomes.append(_timed(module, check, ctx))
        except guardrails.SessionLost as lost:
            _contact(book, Connection.Status.ERROR, str(lost))
            done = {(o.kind, o.check_id) for o in run.outcomes}
            for module, check in plans[run.table.id]:
                key = (module.KIND, check.pk if check else None)
                if key not in done:
                    run.outcomes.append(Outcome(kind=key[0], status=Status.ERROR, message=str(lost), check_id=key[1]))
            _everything(runs[index + 1 :], plans, status=Status.ERROR, message=str(lost))
            break
