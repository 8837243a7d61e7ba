"""The state of a monitored table that people change: pause and resume, rebaseline, the accepted schema.

The REST API and the admin (the table's change form and the inline under its connection) call these, so
what a change stores does not depend on where it was made.
"""

from __future__ import annotations

from datetime import datetime

from django.db.models import Q
from django.utils import timezone

from monitors.checks import schema_change
from monitors.models import CheckResult, MonitoredTable


def table_activation_apply(*, table: MonitoredTable, was_active: bool | None) -> None:
    """The pause/resume rule, applied to `table` (not saved) whose `is_active` is the new value.

    `was_active` is the value before the change (None for a new table). Deactivating pauses the table
    (status `paused`: no checks, no alerts); activating makes it `unknown` and due now. Nothing changes
    when `is_active` did not."""
    if was_active is not None and was_active == table.is_active:
        return
    if table.is_active:
        table.status = MonitoredTable.Status.UNKNOWN
        table.next_check_at = None
    else:
        table.status = MonitoredTable.Status.PAUSED


USER_CHOICE_REASON = "chosen by a user (kept across rediscovery)"


def table_timestamp_choice_apply(*, table: MonitoredTable, previous_column: str | None) -> None:
    """A timestamp column set by a user (API or admin; `previous_column` None for a new table) is theirs from
    then on: discovery explains its own choices and re-chooses only those, never a user's."""
    if previous_column is not None and table.timestamp_column == previous_column:
        return
    table.timestamp_column_chosen_by = MonitoredTable.ChosenBy.USER
    table.timestamp_column_reason = USER_CHOICE_REASON


def table_rebaseline(*, table: MonitoredTable, since: datetime | None = None) -> MonitoredTable:
    """Accept a level shift: the baseline takes its level from `since` (default now), backfilled again from there
    (older values keep training the seasonal shape, rescaled: baselines.rescaled_to_new_level).

    Only the baseline restarts; resolving the open volume alert is the alert lifecycle's business (the
    project binds `alerts.lifecycle.table_rebaseline_accept`, which calls this)."""
    table.baseline_since = since or timezone.now()
    table.backfilled_at = None
    MonitoredTable.objects.filter(pk=table.pk).update(baseline_since=table.baseline_since, backfilled_at=None)
    return table


def table_schema_accept_current(*, table: MonitoredTable) -> None:
    """Make the table's latest observed columns the schema_change reference."""
    latest = (
        CheckResult.objects.filter(table=table, kind=schema_change.KIND)
        .exclude(Q(details__columns__isnull=True) | Q(details__columns=[]))
        .order_by("-started_at", "-id")
        .first()
    )
    if latest is not None:
        MonitoredTable.objects.filter(pk=table.pk).update(schema_reference=latest.details["columns"])


def table_run_now(*, table: MonitoredTable) -> None:
    """Make an active table due at once: the next runchecks cycle checks it (a paused table stays paused)."""
    if table.is_active:
        table.next_check_at = None
        MonitoredTable.objects.filter(pk=table.pk, is_active=True).update(next_check_at=None)
