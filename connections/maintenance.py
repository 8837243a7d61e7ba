"""Maintenance windows of a connection: while one is on, checks run but no alerts open, and the values taken
do not train baselines."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from connections.models import Connection, MaintenanceWindow

ENDS_BEFORE_START = "Must be after starts_at."
CONNECTION_MOVE_REFUSED = "A window cannot move to another connection."


def maintenance_window_problems(*, window: MaintenanceWindow | None, changes: dict) -> dict[str, str]:
    """What forbids creating (`window` None) or changing a window with `changes`, by field name.

    One rule set for the API and the admin: a window ends after it starts, and stays with its connection.
    """
    starts = changes.get("starts_at", getattr(window, "starts_at", None))
    ends = changes.get("ends_at", getattr(window, "ends_at", None))
    problems = {}
    if starts and ends and ends <= starts:
        problems["ends_at"] = ENDS_BEFORE_START
    moved_to = changes.get("connection")
    if window is not None and moved_to is not None and moved_to.pk != window.connection_id:
        problems["connection"] = CONNECTION_MOVE_REFUSED
    return problems


def in_maintenance(*, connection: Connection, at: datetime) -> bool:
    """Whether one of the connection's windows is on at `at` (windows include their start, not their end)."""
    return MaintenanceWindow.objects.filter(connection=connection, starts_at__lte=at, ends_at__gt=at).exists()


def windows_by_connection(*, connection_ids, since: datetime) -> dict[int, list[tuple[datetime, datetime]]]:
    """Per connection id: (starts_at, ends_at) of its windows that end at `since` or later.

    A connection without such windows has no key.
    """
    windows: dict[int, list[tuple[datetime, datetime]]] = defaultdict(list)
    for connection_id, starts, ends in MaintenanceWindow.objects.filter(
        connection_id__in=connection_ids, ends_at__gte=since
    ).values_list("connection_id", "starts_at", "ends_at"):
        windows[connection_id].append((starts, ends))
    return dict(windows)
