"""The runchecks daemon: cycles of claim → check → record, on an APScheduler tick, plus housekeeping."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections
from django.db import connection as pulse_db
from django.utils import timezone

from monitors.claims import Claim, lease_release, tables_claim_due
from monitors.engine import batch_run
from monitors.models import CheckResult, SchedulerHeartbeat

logger = logging.getLogger(__name__)

DEFAULT_LEASE = timedelta(minutes=5)
DEFAULT_BATCH_SIZE = 50


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
            f"cycle: checked {self.tables} tables, {sum(s.values())} results: {s['pass']} passed, "
            f"{s['fail']} failed, {s['error']} errors, {s['skipped']} skipped in {self.seconds:.2f}s"
        )


class CheckRunner:
    """One process's executor of cycles. With workers <= 1 batches run in the calling thread."""

    def __init__(
        self,
        *,
        workers: int = 4,
        lease: timedelta = DEFAULT_LEASE,
        batch_size: int = DEFAULT_BATCH_SIZE,
        report=None,
        verbosity: int = 1,
    ):
        self.workers = workers
        self.lease = lease
        self.batch_size = batch_size
        self.report = report or (lambda line: None)
        self.verbosity = verbosity
        self.stopping = threading.Event()
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pulse-check") if workers > 1 else None
        self._cycle_lock = threading.Lock()

    def stop(self) -> None:
        """Claim nothing more; wait until the cycle in flight has recorded its batches."""
        self.stopping.set()
        with self._cycle_lock:
            if self.pool:
                self.pool.shutdown(wait=True)

    def _batches(self, claim: Claim):
        by_connection = defaultdict(list)
        for table in claim.tables:
            by_connection[table.connection_id].append(table)
        for tables in by_connection.values():
            for start in range(0, len(tables), self.batch_size):
                chunk = tables[start : start + self.batch_size]
                yield chunk[0].connection, chunk

    def _run_batch(self, connection, claim: Claim, tables) -> list[CheckResult]:
        _close_stale_connections()
        try:
            if self.stopping.is_set():
                lease_release(table_ids=[t.id for t in tables], token=claim.token)
                return []
            return batch_run(connection=connection, claim=claim, tables=tables)
        except Exception:
            # One bad batch must not stop the daemon; its leases expire and the tables are tried again.
            logger.exception("batch of %d tables on connection %s failed", len(tables), connection.pk)
            return []
        finally:
            _close_stale_connections()

    def cycle(self, *, force: bool = False, table_ids: list[int] | None = None) -> CycleSummary:
        """Check due tables until none are left (or the daemon stops); report one summary line.

        Each worker claims its own batch, checks it and claims again, so no worker waits for another.
        """
        with self._cycle_lock:
            summary = CycleSummary()
            started = time.monotonic()
            forced = force or table_ids is not None
            last_id: list[int] = [0]  # forced passes walk tables in id order, each table once
            lock = threading.Lock()

            def claim_next() -> Claim:
                with lock:  # claims of one process are serialized, so a forced run never takes a table twice
                    claim = tables_claim_due(
                        now=timezone.now(),
                        lease=self.lease,
                        limit=self.batch_size,
                        force=forced,
                        table_ids=table_ids,
                        after_id=last_id[0] if forced else None,
                    )
                    if claim.tables:
                        last_id[0] = max(last_id[0], *(t.id for t in claim.tables))
                    summary.tables += len(claim.tables)
                return claim

            def work() -> None:
                try:
                    while not self.stopping.is_set():
                        _close_stale_connections()
                        claim = claim_next()
                        if not claim.tables:
                            return
                        for connection, tables in self._batches(claim):
                            results = self._run_batch(connection, claim, tables)
                            with lock:
                                self._tally(summary, results)
                except Exception:
                    logger.exception("a check worker stopped early; the next tick carries on")
                finally:
                    _close_stale_connections()

            if self.pool:
                for future in [self.pool.submit(work) for _ in range(self.workers)]:
                    future.result()
            else:
                work()
            summary.seconds = time.monotonic() - started
            if summary.tables or self.verbosity >= 2:
                self.report(summary.line())
            return summary

    def _tally(self, summary: CycleSummary, results: list[CheckResult]) -> None:
        for result in results:
            summary.statuses[result.status] += 1
            if self.verbosity >= 2:
                where = result.table.qualified_name if result.table_id else result.connection.name
                self.report(f"  {where} {result.kind}: {result.status} — {result.message}")


def heartbeat_beat(*, worker: str, started_at) -> None:
    now = timezone.now()
    SchedulerHeartbeat.objects.update_or_create(worker=worker, defaults={"beat_at": now, "started_at": started_at})


def results_prune(*, now, retention_days: int | None = None, chunk: int = 10_000) -> int:
    """Delete results older than the retention period, in chunks to keep transactions short."""
    days = settings.PULSE_RESULT_RETENTION_DAYS if retention_days is None else retention_days
    cutoff = now - timedelta(days=days)
    deleted = 0
    while True:
        ids = list(CheckResult.objects.filter(started_at__lt=cutoff).values_list("id", flat=True)[:chunk])
        if not ids:
            return deleted
        deleted += CheckResult.objects.filter(id__in=ids).delete()[0]


def heartbeats_prune(*, now, older_than: timedelta = timedelta(days=1)) -> int:
    return SchedulerHeartbeat.objects.filter(beat_at__lt=now - older_than).delete()[0]
