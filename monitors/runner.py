"""The runchecks daemon: passes of claim → check → record on an APScheduler tick, plus housekeeping.

Each tick starts work loops on the workers that are free and returns: a worker busy with one
connection's slow batch never holds up the next tick, so other connections' tables are claimed and
checked on time by the other workers. A claim holds tables of one connection only, and a connection
whose session slots are all taken is given back at once (its tables keep their due time) instead of
holding a worker for up to 30 s. Leases are renewed by the LeaseKeeper while batches run.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import InterfaceError, OperationalError, close_old_connections
from django.db import connection as pulse_db
from django.utils import timezone

from monitors import spool
from monitors.batch import ConnectionBusy, batch_run, batch_time_limit
from monitors.checks import Status
from monitors.claims import Claim, LeaseKeeper, lease_release, tables_claim_due
from monitors.models import CheckResult
from monitors.recording import ResultsHandler, spool_flush

logger = logging.getLogger(__name__)

DEFAULT_LEASE = timedelta(seconds=15)
DEFAULT_BATCH_SIZE = 50
BUSY_SLOT_WAIT_SECONDS = 0.5  # daemon passes: a connection with every slot taken is given back this fast


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _close_stale_connections() -> None:
    """Recycle Pulse's DB connection between units of work (a DB restart is survived this way)."""
    if not pulse_db.in_atomic_block:
        close_old_connections()


@dataclass
class CycleSummary:
    tables: int = 0
    statuses: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    def line(self) -> str:
        s = self.statuses
        return (
            f"cycle: checked {self.tables} tables, {sum(s.values())} results: {s[Status.PASS]} passed, "
            f"{s[Status.FAIL]} failed, {s[Status.ERROR]} errors, {s[Status.SKIPPED]} skipped in {self.seconds:.2f}s"
        )


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
    ):
        self.on_recorded = on_recorded
        self.workers = workers
        self.lease = lease
        self.batch_size = batch_size
        self.report = report or (lambda line: None)
        self.verbosity = verbosity
        self.stopping = threading.Event()
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pulse-check") if workers > 1 else None
        self.keeper = LeaseKeeper(lease=lease)
        self._cycle_lock = threading.Lock()  # inline passes (workers <= 1)
        self._state_lock = threading.Lock()
        self._running = 0  # work loops in flight on the pool

    def stop(self) -> None:
        """Claim nothing more; wait until the batches in flight are recorded."""
        self.stopping.set()
        with self._cycle_lock:
            if self.pool:
                self.pool.shutdown(wait=True)
        self.keeper.stop()

    def cycle(self, *, force: bool = False, table_ids: list[int] | None = None, wait: bool = True) -> CycleSummary:
        """Record spooled batches, then check due tables on the free workers until none are left.

        With `wait` (--once), return when done and report one summary line. Without (the daemon's tick),
        return at once; the summary line is reported when the pass's last loop ends. Each worker claims
        its own batch, checks it and claims again, so no worker waits for another.
        """
        self._flush_spool()
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
        except Exception:
            logger.exception("a check worker stopped early; the next tick carries on")
        finally:
            _close_stale_connections()
            with self._state_lock:
                if self.pool is not None:
                    self._running -= 1
                run.loops -= 1
                last = run.loops == 0
            if last:
                run.summary.seconds = time.monotonic() - run.started
                if run.summary.tables or self.verbosity >= 2:
                    self.report(run.summary.line())
                run.done.set()

    def _claim(self, run: _Pass) -> Claim:
        with run.lock:  # claims of one pass are serialized, so a forced pass never takes a table twice
            claim = tables_claim_due(
                now=timezone.now(),
                lease=self.lease,
                limit=self.batch_size,
                force=run.forced,
                table_ids=run.table_ids,
                walked=run.walked if run.forced else None,
                exclude_connections=sorted(run.busy),
            )
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
            if run.wait:
                return batch_run(connection=connection, claim=claim, tables=tables, on_recorded=self.on_recorded)
            return batch_run(
                connection=connection,
                claim=claim,
                tables=tables,
                on_recorded=self.on_recorded,
                slot_wait_seconds=BUSY_SLOT_WAIT_SECONDS,
                release_when_busy=True,
            )
        except ConnectionBusy:
            with run.lock:
                run.busy.add(connection.pk)
                run.summary.tables -= len(tables)
            return []
        except (OperationalError, InterfaceError):
            # Pulse's database went away before the replica work began: nothing was obtained; the lease
            # runs out and the tables are claimed again.
            logger.warning("Pulse's database is unreachable: batch of %d tables not started", len(tables))
            return []
        except Exception:
            # One bad batch must not stop the daemon; its leases expire and the tables are tried again.
            logger.exception("batch of %d tables on connection %s failed", len(tables), connection.pk)
            return []
        finally:
            self.keeper.drop(claim.token)
            _close_stale_connections()

    def _tally(self, summary: CycleSummary, results: list[CheckResult]) -> None:
        for result in results:
            summary.statuses[result.status] += 1
            if self.verbosity >= 2:
                where = result.table.qualified_name if result.table_id else result.connection.name
                self.report(f"  {where} {result.kind}: {result.status} — {result.message}")
