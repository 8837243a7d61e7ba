"""Writing a team's current monitors as a file that `plan` reports as unchanged.

Every table (settings that differ from the defaults), check, channel and maintenance window of the team is
written, except those another file manages. Channels are written with `target_env`/`secret_env` names derived
from the channel's name (CHANNEL_<NAME>_TARGET, CHANNEL_<NAME>_SECRET): their values never leave Pulse, and a
plan run where those variables are not set keeps the stored target and secret.
"""

from __future__ import annotations

import re

import yaml
from django.contrib.auth.models import Group
from django.db.models import Q

from alerts.models import Channel
from connections.models import Connection, MaintenanceWindow
from monitors.models import Check, MonitoredTable
from monitors_as_code.plan import DEFAULT_SOURCE, TABLE_SETTINGS, table_defaults


def env_name(channel_name: str, what: str) -> str:
    return f"CHANNEL_{re.sub(r'[^A-Z0-9]+', '_', channel_name.upper()).strip('_') or 'X'}_{what}"


def _iso(moment) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _number(value):
    return int(value) if isinstance(value, float) and value.is_integer() else value


def export_document(*, team: Group, source: str = DEFAULT_SOURCE) -> dict:
    mine = Q(managed_by="") | Q(managed_by=source)
    defaults = table_defaults()
    data: dict = {"version": 1, "team": team.name}
    if source != DEFAULT_SOURCE:
        data["source"] = source
    channels = []
    for channel in Channel.objects.filter(mine, team=team).order_by("name"):
        entry = {"name": channel.name, "kind": channel.kind, "target_env": env_name(channel.name, "TARGET")}
        if channel.kind == Channel.Kind.WEBHOOK:
            entry["secret_env"] = env_name(channel.name, "SECRET")
        if channel.reminder_interval_minutes is not None:
            entry["reminder_interval_minutes"] = channel.reminder_interval_minutes
        if channel.remind_earlier_alerts:
            entry["remind_earlier_alerts"] = True
        channels.append(entry)
    if channels:
        data["channels"] = channels
    checks: dict[int, list[Check]] = {}
    for check in Check.objects.filter(mine, table__connection__team=team).order_by("table_id", "id"):
        checks.setdefault(check.table_id, []).append(check)
    connections = []
    for connection in Connection.objects.filter(team=team).order_by("name"):
        entry = {"name": connection.name}
        tables = []
        for table in MonitoredTable.objects.filter(mine, connection=connection).order_by("schema_name", "table_name"):
            spec = (
                {"schema": table.schema_name, "table": table.table_name}
                if table.schema_name != "public"
                else {"table": table.table_name}
            )
            for name in TABLE_SETTINGS:
                value = getattr(table, name)
                if value != defaults[name]:
                    spec[name] = _number(value)
            table_checks = []
            for check in checks.get(table.pk, []):
                item = {"kind": check.kind}
                if check.column:
                    item["column"] = check.column
                if check.sql:
                    item["sql"] = check.sql
                for name in ("min_value", "max_value"):
                    if getattr(check, name) is not None:
                        item[name] = _number(getattr(check, name))
                table_checks.append(item)
            if table_checks:
                spec["checks"] = table_checks
            tables.append(spec)
        if tables:
            entry["tables"] = tables
        windows = [
            {"starts_at": _iso(w.starts_at), "ends_at": _iso(w.ends_at), **({"reason": w.reason} if w.reason else {})}
            for w in MaintenanceWindow.objects.filter(mine, connection=connection).order_by("starts_at", "ends_at")
        ]
        if windows:
            entry["maintenance_windows"] = windows
        if len(entry) > 1:
            connections.append(entry)
    if connections:
        data["connections"] = connections
    return data


def export_text(*, team: Group, source: str = DEFAULT_SOURCE) -> str:
    header = "# Exported by `manage.py monitors export`; schema: docs/pulse.schema.json\n"
    return header + yaml.safe_dump(
        export_document(team=team, source=source), sort_keys=False, allow_unicode=True, width=120
    )
