"""The hand-off from recorded results to the alert lifecycle, and the backlog that makes it safe.

Recording calls `results_intake` (bound as `on_recorded` where runchecks is wired) inside the
transaction that writes the results, so alerts and their outbox rows commit together with the results.
If the lifecycle raises, its savepoint is rolled back, the error is logged, and a LifecycleBacklog row
naming the batch is written instead, in the same transaction: the results are kept, nothing is
swallowed, and the notify job's `lifecycle_backlog_run_due` replays the batch later with backoff.

A replay only judges the (table, kind) problems for which the batch's results are still the latest:
where newer results exist, their own lifecycle run has already decided, and an old batch must never
resolve or reopen an alert against them.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from alerts import lifecycle
from alerts.models import LifecycleBacklog
from connections.models import Connection
from monitors.models import CheckResult

logger = logging.getLogger(__name__)

BACKLOG_BASE_BACKOFF = timedelta(seconds=30)
BACKLOG_MAX_BACKOFF = timedelta(minutes=30)


def results_intake(*, connection: Connection, results: list[CheckResult]) -> None:
    """Run the alert lifecycle for a freshly recorded batch; on failure, log it and write a backlog row."""
    if not results:
        return
    try:
        with transaction.atomic():
            lifecycle.results_process(connection=connection, results=results)
    except Exception as exc:
        logger.exception(
            "alert lifecycle failed for %s result(s) of connection %s; queued for a retry", len(results), connection.pk
        )
        LifecycleBacklog.objects.create(
            connection=connection,
            result_ids=[result.pk for result in results],
            error=type(exc).__name__[:200],
            next_try_at=timezone.now(),
        )


def lifecycle_backlog_run_due(*, now: datetime, limit: int = 20) -> int:
    """Replay up to `limit` due backlog rows (oldest first); returns how many were replayed and deleted.

    Rows are locked (SKIP LOCKED) while they are replayed, so concurrent processes never replay one twice.
    A replay that fails again counts a try and waits BACKLOG_BASE_BACKOFF * 2**tries (at most
    BACKLOG_MAX_BACKOFF).
    """
    done = 0
    with transaction.atomic():
        rows = list(
            LifecycleBacklog.objects.filter(next_try_at__lte=now)
            .select_for_update(skip_locked=True, of=("self",))
            .select_related("connection")
            .order_by("next_try_at", "id")[:limit]
        )
        for row in rows:
            try:
                with transaction.atomic():
                    results = _still_latest(results=_results_of(row))
                    if results:
                        lifecycle.results_process(connection=row.connection, results=results)
                    row.delete()
            except Exception as exc:
                row.tries += 1
                row.error = type(exc).__name__[:200]
                row.next_try_at = now + min(BACKLOG_BASE_BACKOFF * 2**row.tries, BACKLOG_MAX_BACKOFF)
                row.save(update_fields=["tries", "error", "next_try_at"])
                logger.exception(
                    "replaying the alert lifecycle of connection %s failed (try %s); next try at %s",
                    row.connection_id,
                    row.tries,
                    row.next_try_at.isoformat(),
                )
            else:
                done += 1
    return done


def _results_of(row: LifecycleBacklog) -> list[CheckResult]:
    # Results pruned since are simply gone; the table is loaded for messages naming it.
    return list(
        CheckResult.objects.filter(id__in=row.result_ids, connection_id=row.connection_id)
        .select_related("table")
        .order_by("started_at", "id")
    )


def _still_latest(*, results: list[CheckResult]) -> list[CheckResult]:
    """The results whose (table, kind) has no newer result: only those may still move an alert."""
    by_problem: dict[tuple[int | None, str], list[CheckResult]] = defaultdict(list)
    for result in results:
        by_problem[(result.table_id, result.kind)].append(result)
    kept = []
    for (table_id, kind), problem_results in by_problem.items():
        newest = max(problem_results, key=lambda r: (r.started_at, r.id))
        newer = (
            CheckResult.objects.filter(connection_id=newest.connection_id, table_id=table_id, kind=kind)
            .exclude(id__in=[r.id for r in problem_results])
            .filter(Q(started_at__gt=newest.started_at) | Q(started_at=newest.started_at, id__gt=newest.id))
        )
        if not newer.exists():
            kept.extend(problem_results)
    return kept
