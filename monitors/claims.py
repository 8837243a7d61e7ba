"""Claiming due tables so that several runchecks processes share the work without doing any twice.

A claim takes due tables with `SELECT … FOR UPDATE SKIP LOCKED` and gives them a lease (a token and an
expiry). Results are recorded only while the lease is still the claimer's (see recording.py), so a
table is checked once per due time; a process killed mid-check loses its lease when it expires and
another process takes the table.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F, Q

from connections.models import Connection
from monitors.models import MonitoredTable


@dataclass(frozen=True)
class Claim:
    token: uuid.UUID
    claimed_at: datetime
    tables: list[MonitoredTable]


def tables_claim_due(
    *,
    now: datetime,
    lease: timedelta,
    limit: int,
    force: bool = False,
    table_ids: list[int] | None = None,
    exclude_ids: set[int] | frozenset = frozenset(),
) -> Claim:
    """Lease up to `limit` tables whose check is due (or, with `force`, every active table not leased)."""
    token = uuid.uuid4()
    candidates = MonitoredTable.objects.filter(
        Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now),
        is_active=True,
        connection__is_active=True,
    ).filter(Q(connection__backoff_until__isnull=True) | Q(connection__backoff_until__lte=now))
    if not force:
        candidates = candidates.filter(Q(next_check_at__isnull=True) | Q(next_check_at__lte=now))
    if table_ids is not None:
        candidates = candidates.filter(id__in=table_ids)
    if exclude_ids:
        candidates = candidates.exclude(id__in=exclude_ids)
    with transaction.atomic():
        ids = list(
            candidates.select_for_update(skip_locked=True, of=("self",))
            .order_by(F("next_check_at").asc(nulls_first=True), "id")
            .values_list("id", flat=True)[:limit]
        )
        if ids:
            MonitoredTable.objects.filter(id__in=ids).update(lease_token=token, lease_expires_at=now + lease)
    tables = list(
        MonitoredTable.objects.filter(id__in=ids, lease_token=token)
        .prefetch_related("checks")
        .order_by("connection_id", "id")
    )
    connections = Connection.objects.in_bulk({t.connection_id for t in tables})
    for table in tables:
        table.connection = connections[table.connection_id]  # one object per connection, shared by its tables
    return Claim(token=token, claimed_at=now, tables=tables)


def lease_release(*, table_ids: list[int], token: uuid.UUID) -> int:
    """Give tables back unchecked (e.g. on shutdown before they ran); their due time is unchanged."""
    return MonitoredTable.objects.filter(id__in=table_ids, lease_token=token).update(
        lease_token=None, lease_expires_at=None
    )
