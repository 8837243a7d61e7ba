"""Running one batch of claimed tables of one connection: one guarded, read-only replica session."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone
from psycopg import sql

from connections import guardrails, replica
from connections.models import Connection
from monitors import checks
from monitors.anomalies import volume_judge
from monitors.checks import CheckContext, Outcome
from monitors.claims import Claim
from monitors.models import Check, CheckResult, MonitoredTable
from monitors.recording import TableRun, results_record_with_retry

logger = logging.getLogger(__name__)

SLOT_WAIT_SECONDS = 30.0
LAG_CHECK_INTERVAL = timedelta(seconds=30)
_REPLICA_STATE = sql.SQL(
    "SELECT pg_is_in_recovery(), clock_timestamp(), pg_last_xact_replay_timestamp(),"
    " pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn(),"
    " pg_catalog.pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())"
)


@dataclass(frozen=True)
class ReplicaState:
    in_recovery: bool
    now: datetime
    replay_timestamp: datetime | None
    caught_up: bool
    lag_bytes: float

    @property
    def data_as_of(self) -> datetime:
        """The point in time the replica's data reflects: now when caught up, else the last replayed commit."""
        if not self.in_recovery or self.caught_up or self.replay_timestamp is None:
            return self.now
        return min(self.now, self.replay_timestamp)

    @property
    def lag_seconds(self) -> float:
        return max(0.0, (self.now - self.data_as_of).total_seconds())


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
        outcome = Outcome(kind=kind, status="skipped", message=str(stop), details={"reason": stop.reason})
    except guardrails.CheckError as exc:
        outcome = Outcome(kind=kind, status="error", message=str(exc))
    outcome.duration_ms = int((time.monotonic() - started) * 1000)
    outcome.queries_used = runner.queries_sent - sent_before
    outcome.check_id = check.pk if check else None
    return outcome


def _lag_outcome(connection: Connection, state: ReplicaState) -> Outcome:
    threshold = connection.replication_lag_threshold_seconds
    lag = round(state.lag_seconds, 3)
    details = {"lag_bytes": state.lag_bytes, "caught_up": state.caught_up}
    if lag > threshold:
        return Outcome(
            kind="replication_lag",
            status="fail",
            observed_value=lag,
            expected_upper=threshold,
            details=details,
            message=f"replica is {lag:,.0f} s behind (limit {threshold} s); {state.lag_bytes:,.0f} bytes to replay",
        )
    return Outcome(
        kind="replication_lag",
        status="pass",
        observed_value=lag,
        expected_upper=threshold,
        details=details,
        message="replica is caught up" if state.caught_up else f"replica is {lag:,.1f} s behind",
    )


def _lag_due(connection: Connection, now: datetime) -> bool:
    """Claim this cycle's replication-lag check of a connection: one process wins (conditional UPDATE)."""
    if connection.lag_checked_at is not None and now - connection.lag_checked_at < LAG_CHECK_INTERVAL:
        return False  # known to be taken already, without asking the database
    return bool(
        Connection.objects.filter(pk=connection.pk)
        .filter(Q(lag_checked_at__isnull=True) | Q(lag_checked_at__lte=now - LAG_CHECK_INTERVAL))
        .update(lag_checked_at=now)
    )


def _everything(runs: list[TableRun], plans: dict, *, status: str, message: str, reason: str = "") -> None:
    details = {"reason": reason} if reason else {}
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


def batch_run(*, connection: Connection, claim: Claim, tables: list[MonitoredTable]) -> list[CheckResult]:
    """Check `tables` (all of `connection`, leased by `claim`) in one replica session and record the results."""
    started_at = timezone.now()
    plans = {t.id: planned_checks(t) for t in tables}
    runs = [
        TableRun(table=t, plan_costs=dict(t.plan_costs or {}), update_times=list(t.update_times or [])) for t in tables
    ]
    connection_outcomes: list[Outcome] = []
    allowance = guardrails.Allowance(connection=connection, now=started_at)
    try:
        with guardrails.replica_slot(connection=connection, wait_seconds=SLOT_WAIT_SECONDS):
            planned = 1 + sum(module.QUERIES for plan in plans.values() for module, _ in plan)
            allowance.reserve(planned)  # if the whole batch doesn't fit, queries are reserved one by one
            connection_outcomes = _run_on_replica(connection, runs, plans, allowance, started_at)
    except guardrails.GuardrailStop as stop:
        _everything(runs, plans, status="skipped", message=str(stop), reason=stop.reason)
    finally:
        allowance.settle()
    volume_judge(runs=runs)
    return results_record_with_retry(
        connection=connection,
        token=claim.token,
        runs=runs,
        connection_outcomes=connection_outcomes,
        started_at=started_at,
    )


def _run_on_replica(connection, runs, plans, allowance, started_at) -> list[Outcome]:
    try:
        session = replica.connect(conninfo=connection.conninfo(), statement_timeout_ms=connection.statement_timeout_ms)
    except (replica.ReplicaError, ValueError) as exc:
        guardrails.contact_failed(connection=connection, status=Connection.Status.ERROR, error=str(exc), now=started_at)
        _everything(runs, plans, status="error", message=str(exc))
        return []
    try:
        runner = guardrails.QueryRunner(session=session, connection=connection, allowance=allowance)
        try:
            in_recovery, now, replayed_at, caught_up, lag_bytes = runner.fetchone(_REPLICA_STATE)
            state = ReplicaState(
                in_recovery=in_recovery,
                now=now,
                replay_timestamp=replayed_at,
                caught_up=caught_up is not False,
                lag_bytes=float(lag_bytes or 0),
            )
        except guardrails.CheckError as exc:
            guardrails.contact_failed(
                connection=connection, status=Connection.Status.ERROR, error=str(exc), now=started_at
            )
            _everything(runs, plans, status="error", message=str(exc))
            return []
        if connection.require_replica and not state.in_recovery:
            message = "not a read replica (pg_is_in_recovery() is false): no checks run"
            guardrails.contact_failed(
                connection=connection, status=Connection.Status.NOT_REPLICA, error=message, now=started_at
            )
            _everything(runs, plans, status="error", message=message)
            return []
        guardrails.contact_succeeded(connection=connection, now=started_at)
        connection_outcomes = []
        if state.in_recovery and _lag_due(connection, started_at):
            connection_outcomes.append(_lag_outcome(connection, state))
        for index, run in enumerate(runs):
            ctx = CheckContext(
                runner=runner,
                table=run.table,
                now=state.now,
                data_as_of=state.data_as_of,
                plan_costs=run.plan_costs,
                update_times=run.update_times,
            )
            try:
                for module, check in plans[run.table.id]:
                    run.outcomes.append(_timed(module, check, ctx))
            except guardrails.SessionLost as lost:
                guardrails.contact_failed(
                    connection=connection, status=Connection.Status.ERROR, error=str(lost), now=started_at
                )
                done = {(o.kind, o.check_id) for o in run.outcomes}
                for module, check in plans[run.table.id]:
                    key = (module.KIND, check.pk if check else None)
                    if key not in done:
                        run.outcomes.append(Outcome(kind=key[0], status="error", message=str(lost), check_id=key[1]))
                _everything(runs[index + 1 :], plans, status="error", message=str(lost))
                break
        return connection_outcomes
    finally:
        session.close()
