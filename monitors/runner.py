"""The runchecks daemon: passes of claim → check → record on an APScheduler tick, plus housekeeping.

Each tick starts work loops on the workers that are free and returns: a worker busy with one
connection's slow batch never holds up the next tick, so other connections' tables are claimed and
checked on time by the other workers. A claim holds tables of one connection only, and a connection
whose session slots are all taken is given back at once (its tables keep their due time) instead of
holding a worker for up to 30 s. Fair lanes: a worker claims from a connection that has no batch in flight
in this process while any such connection has due work, so a busy or slow connection's backlog never
takes every worker ahead of another connection's tables. Leases are renewed by the LeaseKeeper while batches run.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import InterfaceError, OperationalError, close_old_connections
from django.db import connection as pulse_db
from django.utils import timezone

from connections.guardrails import SessionKeeper
from monitors import spool
from monitors.batch import ConnectionBusy, batch_run, batch_time_limit
from monitors.checks import Status, format_value, replication_lag
from monitors.claims import Claim, LeaseKeeper, lease_release, tables_claim_due, tables_next_due
from monitors.due import idle_line
from monitors.models import CheckResult
from monitors.recording import ResultsHandler, spool_flush

logger = logging.getLogger(__name__)

DEFAULT_LEASE = timedelta(seconds=15)
DEFAULT_BATCH_SIZE = 200
"""Tables of one connection checked in one replica session. A batch sends the same few set-based statements
whatever its size, while each session costs the replica a backend start-up and ~780 blocks of catalog caches."""
BUSY_SLOT_WAIT_SECONDS = 0.5  # daemon passes: a connection with every slot taken is given back this fast
HELD_BACK_PAUSE_FIRST = timedelta(seconds=1)
HELD_BACK_PAUSE_MAX = timedelta(seconds=30)
"""After a held-back batch, a daemon leaves the connection alone until its `retry_at` plus a pause that doubles
with each held-back batch in a row (1 s up to 30 s): a backlog larger than the share then costs a held-back
batch every 30 s, not every second. Nothing is lost meanwhile: the bucket banks the refill up to its burst."""


COLLECTOR_YOUNG_THRESHOLD = 10_000
"""Net container allocations between two collections of the garbage collector's youngest generation (Python's
default: 700)."""


def collector_tune() -> None:
    """Collect the youngest generation after COLLECTOR_YOUNG_THRESHOLD net allocations instead of 700: a batch
    allocates tens of thousands of short-lived objects (rows, results, statements) that are freed when it ends,
    and at 700 their peaks set off ~150 young and one or two full collections (which walk every object of
    Django's start-up) per 2,000 tables: 22-34 us of CPU per table, about 1 us at 10,000. Cycles are still
    collected, a little later."""
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(COLLECTOR_YOUNG_THRESHOLD, middle, oldest)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _close_stale_connections() -> None:
    """Recycle Pulse's DB connection between units of work (a DB restart is survived this way)."""
    if not pulse_db.in_atomic_block:
        close_old_connections()


@dataclass
class CycleSummary:
    """What one pass did: its summary line, its errors grouped by connection, and its exit status."""

    tables: int = 0
    statuses: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    lags: dict[str, str] = field(default_factory=dict)  # connection name -> its lag, for people
    # (connection, status, message) -> the checks it hit
    problems: dict[tuple[str, str, str], list[str]] = field(default_factory=dict)
    lost_batches: int = 0  # batches or claims that ended before their results were recorded

    def add(self, result: CheckResult) -> None:
        self.statuses[result.status] += 1
        connection = result.connection.name
        if result.kind == replication_lag.KIND and result.observed_value is not None:
            lag = format_value(result.kind, result.observed_value)
            self.lags[connection] = lag if result.status == Status.PASS else f"{lag} ({result.status})"
        if result.status in (Status.ERROR, Status.SKIPPED):
            where = f"{result.table.qualified_name} {result.kind}" if result.table_id else f"{connection} {result.kind}"
            self.problems.setdefault((connection, result.status, result.message), []).append(where)

    def line(self) -> str:
        s = self.statuses
        text = (
            f"cycle: checked {self.tables} tables, {sum(s.values())} results: {s[Status.PASS]} passed, "
            f"{s[Status.FAIL]} failed, {s[Status.ERROR]} errors, {s[Status.SKIPPED]} skipped in {self.seconds:.2f}s"
        )
        if self.lags:
            text += "; replication lag: " + ", ".join(f"{name} {lag}" for name, lag in sorted(self.lags.items()))
        return text

    def problem_lines(self) -> list[str]:
        """One line per connection and distinct error (or skip reason), with the number of checks it hit."""
        lines = []
        for (connection, status, message), checks in self.problems.items():
            where = checks[0] if len(checks) == 1 else f"{connection} ({len(checks)} checks)"
            lines.append(f"  {where}: {status} — {message}")
        return lines

    @property
    def exit_code(self) -> int:
        """`runchecks --once`'s status: 2 if some check could not run (error, skipped, a lost batch), else 1 if
        some check failed, else 0. Could-not-run wins: the failures seen are then not the whole story."""
        if self.statuses[Status.ERROR] or self.statuses[Status.SKIPPED] or self.lost_batches:
            return 2
        return 1 if self.statuses[Status.FAIL] else 0


def _held_back(results: list[CheckResult]) -> bool:
    """Every table check of the batch was held back by the replica time share."""
    checks = [r for r in results if r.table_id]
    return bool(checks) and all(r.status == Status.SKIPPED and r.details.get("reason") == "time_share" for r in checks)


@dataclass
class _Pass:
    """One tick's (or one --once run's) work loops and what they share."""

    forced: bool
    table_ids: list[int] | None
    wait: bool
    summary: CycleSummary = field(default_factory=CycleSummary)
    started: float = field(default_factory=time.monotonic)
    walked: dict[int, int] = field(default_factory=dict)  # forced passes: connection -> last table id taken
    busy: set[int] = field(default_factory=set)  # connections with every session slot taken
    loops: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: threading.Event = field(default_factory=threading.Event)


class CheckRunner:
    """One process's executor of passes. With workers <= 1 batches run in the calling thread.

    `on_recorded` gets every recorded batch's results inside its recording transaction (spooled batches
    included): the one place where checking hands over to what reacts to results.
    """

    def __init__(
        self,
        *,
        on_recorded: ResultsHandler,
        workers: int = 4,
        lease: timedelta = DEFAULT_LEASE,
        batch_size: int = DEFAULT_BATCH_SIZE,
        report=None,
        verbosity: int = 1,
        sessions: SessionKeeper | None = None,
    ):
        self.on_recorded = on_recorded
        self.workers = workers
        self.lease = lease
        self.batch_size = batch_size
        self.report = report or (lambda line: None)
        self.verbosity = verbosity
        self.sessions = sessions  # the daemon's warm replica sessions (None: each batch opens and closes its own)
        self.stopping = threading.Event()
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pulse-check") if workers > 1 else None
        self.keeper = LeaseKeeper(lease=lease)
        self._cycle_lock = threading.Lock()  # inline passes (workers <= 1)
        self._state_lock = threading.Lock()
        self._running = 0  # work loops in flight on the pool
        self._in_flight: Counter = Counter()  # connection id -> its batches in flight in this process
        # connection id -> when its time share lets work run again (daemon passes: not claimed before then)
        self._held_until: dict[int, datetime] = {}
        self._held_streak: Counter = Counter()  # connection id -> its held-back batches in a row

    def stop(self) -> None:
        """Claim nothing more; wait until the batches in flight are recorded."""
        self.stopping.set()
        with self._cycle_lock:
            if self.pool:
                self.pool.shutdown(wait=True)
        self.keeper.stop()
        if self.sessions is not None:
            self.sessions.close()

    def cycle(self, *, force: bool = False, table_ids: list[int] | None = None, wait: bool = True) -> CycleSummary:
        """Record spooled batches, then check due tables on the free workers until none are left.

        With `wait` (--once), return when done and report one summary line. Without (the daemon's tick),
        return at once; the summary line is reported when the pass's last loop ends. Each worker claims
        its own batch, checks it and claims again, so no worker waits for another.
        """
        self._flush_spool()
        if self.sessions is not None:
            self.sessions.expire_idle()
        run = _Pass(forced=force or table_ids is not None, table_ids=table_ids, wait=wait)
        if self.pool is None:
            with self._cycle_lock:
                run.loops = 1
                self._loop(run)
            return run.summary
        with self._state_lock:
            free = 0 if self.stopping.is_set() else self.workers - self._running
            self._running += free
            run.loops = free
        for _ in range(free):
            self.pool.submit(self._loop, run)
        if wait and free:
            run.done.wait()
        return run.summary

    def _flush_spool(self) -> None:
        if not spool.spool_pending():
            return
        try:
            recorded = spool_flush(on_recorded=self.on_recorded)
            if recorded:
                self.report(f"recorded {recorded} spooled batches")
        except Exception:
            logger.exception("flushing the spool failed; trying again next tick")
        finally:
            _close_stale_connections()

    def _loop(self, run: _Pass) -> None:
        try:
            self._work(run)
        except (OperationalError, InterfaceError):
            logger.warning("Pulse's database is unreachable: nothing is claimed until it answers again")
            self._lost(run)
        except Exception:
            logger.exception("a check worker stopped early; the next tick carries on")
            self._lost(run)
        finally:
            _close_stale_connections()
            with self._state_lock:
                if self.pool is not None:
                    self._running -= 1
                run.loops -= 1
                last = run.loops == 0
            if last:
                self._report_pass(run)
                run.done.set()

    def _report_pass(self, run: _Pass) -> None:
        """The pass's errors (grouped) and summary line; a --once pass (or -v 2) that found nothing to check
        says when the next table is due instead."""
        summary = run.summary
        summary.seconds = time.monotonic() - run.started
        if summary.tables:
            for line in summary.problem_lines():
                self.report(line)
            self.report(summary.line())
        elif run.wait or self.verbosity >= 2:
            try:
                self.report(self._idle_line(run))
            except (OperationalError, InterfaceError):
                logger.warning("Pulse's database is unreachable: cannot tell when the next table is due")
            finally:
                _close_stale_connections()

    def _idle_line(self, run: _Pass) -> str:
        now = timezone.now()
        return idle_line(
            first=tables_next_due(now=now, force=run.forced, table_ids=run.table_ids),
            now=now,
            zone=timezone.get_current_timezone(),
            forced=run.forced,
            some_tables=bool(run.table_ids),
            once=run.wait,
        )

    @staticmethod
    def _lost(run: _Pass) -> None:
        with run.lock:
            run.summary.lost_batches += 1

    def _claim(self, run: _Pass) -> Claim:
        """Lease the next batch: from a connection with no batch in flight here if one has due work (its own
        lane), else from any connection not found busy."""
        with run.lock:  # claims of one pass are serialized, so a forced pass never takes a table twice
            now = timezone.now()
            with self._state_lock:
                lanes_taken = {connection for connection, batches in self._in_flight.items() if batches}
                held = {connection for connection, until in self._held_until.items() if until > now}
            busy = run.busy | held
            claim = None
            for exclude in ([busy | lanes_taken] if lanes_taken else []) + [busy]:
                claim = tables_claim_due(
                    now=timezone.now(),
                    lease=self.lease,
                    limit=self.batch_size,
                    force=run.forced,
                    table_ids=run.table_ids,
                    walked=run.walked if run.forced else None,
                    exclude_connections=sorted(exclude),
                )
                if claim.tables:
                    break
            if claim.tables:
                with self._state_lock:
                    self._in_flight[claim.tables[0].connection_id] += 1
            if run.forced and claim.tables:
                run.walked[claim.tables[0].connection_id] = max(t.id for t in claim.tables)
            run.summary.tables += len(claim.tables)
        return claim

    def _work(self, run: _Pass) -> None:
        while not self.stopping.is_set():
            _close_stale_connections()
            claim = self._claim(run)
            if not claim.tables:
                return
            results = self._run_batch(claim, run)
            with run.lock:
                self._tally(run.summary, results)

    def _run_batch(self, claim: Claim, run: _Pass) -> list[CheckResult]:
        tables = claim.tables
        connection = tables[0].connection
        _close_stale_connections()
        try:
            if self.stopping.is_set():
                lease_release(table_ids=[t.id for t in tables], token=claim.token)
                return []
            self.keeper.hold(claim.token, seconds=batch_time_limit(connection=connection, tables=tables))
            # A daemon's pass gives a busy connection back at once and moves on; --once waits for a slot.
            busy = {} if run.wait else {"slot_wait_seconds": BUSY_SLOT_WAIT_SECONDS, "release_when_busy": True}
            results = batch_run(
                connection=connection,
                claim=claim,
                tables=tables,
                on_recorded=self.on_recorded,
                sessions=self.sessions,
                **busy,
            )
            if run.wait:
                return results
            if _held_back(results):
                # The connection's time share is used up: the daemon's pass moves on to other connections
                # instead of writing a held-back result for the whole backlog, and later ticks of this process
                # leave the connection alone until its share lets work run again.
                with run.lock:
                    run.busy.add(connection.pk)
                retries = [datetime.fromisoformat(r.details["retry_at"]) for r in results if r.details.get("retry_at")]
                if retries:
                    with self._state_lock:
                        self._held_streak[connection.pk] += 1
                        pause = HELD_BACK_PAUSE_FIRST * 2 ** min(self._held_streak[connection.pk] - 1, 5)
                        self._held_until[connection.pk] = min(retries) + min(pause, HELD_BACK_PAUSE_MAX)
            elif results:
                with self._state_lock:
                    self._held_streak.pop(connection.pk, None)
            return results
        except ConnectionBusy:
            with run.lock:
                run.busy.add(connection.pk)
                run.summary.tables -= len(tables)
            return []
        except (OperationalError, InterfaceError):
            # Pulse's database went away before the replica work began: nothing was obtained; the lease
            # runs out and the tables are claimed again.
            logger.warning("Pulse's database is unreachable: batch of %d tables not started", len(tables))
            self._lost(run)
            return []
        except Exception:
            # One bad batch must not stop the daemon; its leases expire and the tables are tried again.
            logger.exception("batch of %d tables on connection %s failed", len(tables), connection.pk)
            self._lost(run)
            return []
        finally:
            self.keeper.drop(claim.token)
            with self._state_lock:
                self._in_flight[connection.pk] -= 1
            _close_stale_connections()

    def _tally(self, summary: CycleSummary, results: list[CheckResult]) -> None:
        """Count the batch's results; with -v 2, one line per check that ran (errors and skips are grouped
        at the end of the pass)."""
        for result in results:
            summary.add(result)
            if self.verbosity >= 2 and result.status not in (Status.ERROR, Status.SKIPPED):
                where = result.table.qualified_name if result.table_id else result.connection.name
                self.report(f"  {where} {result.kind}: {result.status} — {result.message}")
