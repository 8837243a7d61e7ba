"""Applying a plan: exactly its changes, in one transaction, or nothing.

The plan is built (and every rule run) first; then, in one transaction that holds the team's row lock (two
applies for one team run one after the other), the changes are computed again from the current objects, any
custom SQL that became new meanwhile is checked too, and the creates, changes and deletes are written.
"""

from __future__ import annotations

from django.contrib.auth.models import Group
from django.db import transaction

from alerts.channels import channel_create, channel_update
from connections.models import MaintenanceWindow
from monitors.models import Check, MonitoredTable
from monitors.tables import table_activation_apply
from monitors_as_code.plan import (
    TABLE_SETTINGS,
    Change,
    DesiredTable,
    Plan,
    changes_compute,
    custom_sql_problems,
    plan_build,
)


def plan_apply(*, content: str | bytes, filename: str, teams, env: dict, prune: bool, allowed=None) -> Plan:
    """Build the plan and, when it has no problems, apply it. Returns the plan that was applied (or refused).

    `allowed(plan) -> list[str]`: problems that forbid applying (the API's permission check); None allows all."""
    plan = plan_build(content=content, filename=filename, teams=teams, env=env, prune=prune)
    if plan.problems or not plan.has_changes:
        return plan
    with transaction.atomic():
        Group.objects.select_for_update().filter(pk=plan.desired.team.pk).first()
        changes, problems = changes_compute(desired=plan.desired, document=plan.document, prune=prune)
        problems += custom_sql_problems(changes=changes, document=plan.document, checked=plan.sql_checked)
        if problems:
            plan.problems = problems
            plan.changes = []
            return plan
        plan.changes = changes
        if allowed is not None:
            refused = allowed(plan)
            if refused:
                plan.problems = refused
                return plan
        _write(plan)
    return plan


def _write(plan: Plan) -> None:
    source = plan.desired.source
    by_kind: dict[tuple[str, str], list[Change]] = {}
    for change in plan.changes:
        by_kind.setdefault((change.kind, change.action), []).append(change)

    for change in by_kind.get(("check", "delete"), []) + by_kind.get(("table", "delete"), []):
        change.existing.delete()

    created_tables: dict[int, MonitoredTable] = {}
    new_tables = []
    for change in by_kind.get(("table", "create"), []):
        desired = change.desired
        table = MonitoredTable(
            connection=desired.connection,
            schema_name=desired.schema_name,
            table_name=desired.table_name,
            managed_by=source,
            **desired.settings,
        )
        table_activation_apply(table=table, was_active=None)
        new_tables.append(table)
        created_tables[id(desired)] = table
    MonitoredTable.objects.bulk_create(new_tables)

    for change in by_kind.get(("table", "change"), []) + by_kind.get(("table", "adopt"), []):
        table = change.existing
        for name in TABLE_SETTINGS:
            setattr(table, name, change.desired.settings[name])
        table.managed_by = source
        table.save(update_fields=[*TABLE_SETTINGS, "managed_by", "updated_at"])

    new_checks = []
    for change in by_kind.get(("check", "create"), []):
        check = change.desired
        table = created_tables[id(change.table)] if isinstance(change.table, DesiredTable) else change.table
        new_checks.append(
            Check(
                table=table,
                kind=check.kind,
                column=check.column,
                sql=check.sql,
                min_value=check.min_value,
                max_value=check.max_value,
                managed_by=source,
            )
        )
    Check.objects.bulk_create(new_checks)
    for change in by_kind.get(("check", "change"), []) + by_kind.get(("check", "adopt"), []):
        check = change.existing
        check.min_value = change.desired.min_value
        check.max_value = change.desired.max_value
        check.managed_by = source
        check.save(update_fields=["min_value", "max_value", "managed_by", "updated_at"])

    for change in by_kind.get(("channel", "delete"), []):
        change.existing.delete()
    for change in by_kind.get(("channel", "create"), []):
        channel = change.desired
        channel_create(
            team=plan.desired.team,
            name=channel.name,
            kind=channel.kind,
            target=channel.target,
            secret=channel.secret,
            reminder_interval_minutes=channel.reminder_interval_minutes,
            remind_earlier_alerts=channel.remind_earlier_alerts,
            managed_by=source,
        )
    for change in by_kind.get(("channel", "change"), []) + by_kind.get(("channel", "adopt"), []):
        channel = change.desired
        channel_update(
            channel=change.existing,
            target=channel.target if "target" in change.fields else None,
            secret=channel.secret if "secret" in change.fields else None,
            reminder_interval_minutes=channel.reminder_interval_minutes,
            remind_earlier_alerts=channel.remind_earlier_alerts,
            managed_by=source,
        )

    for change in by_kind.get(("maintenance_window", "delete"), []):
        change.existing.delete()
    MaintenanceWindow.objects.bulk_create(
        MaintenanceWindow(
            connection=change.desired.connection,
            starts_at=change.desired.starts_at,
            ends_at=change.desired.ends_at,
            reason=change.desired.reason,
            managed_by=source,
        )
        for change in by_kind.get(("maintenance_window", "create"), [])
    )
    for change in by_kind.get(("maintenance_window", "change"), []) + by_kind.get(("maintenance_window", "adopt"), []):
        window = change.existing
        window.reason = change.desired.reason
        window.managed_by = source
        window.save(update_fields=["reason", "managed_by"])
