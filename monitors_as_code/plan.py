"""What applying a monitors-as-code file would change, after every validation the API runs.

`plan_build` reads the file (monitors_as_code.document), resolves the team and its connections by name (another
team's connection is "not found", like a name that does not exist), looks every named schema up in each
replica's catalog with ONE query per connection (monitors_as_code.catalog), expands table groups against it,
runs the rules the API runs (monitors.table_rules, monitors.check_rules, monitors.custom_sql_policy,
alerts.channels, connections.maintenance and the models' field validators) and compares the result with the
team's objects. Every problem carries the file's line and field; nothing is written.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

import psycopg
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.utils.dateparse import parse_datetime

from alerts.channels import REMINDER_MAX_MINUTES, SECRET_MAX_LENGTH, SECRET_MIN_LENGTH, channel_problems
from alerts.models import Channel
from connections import guardrails, replica
from connections.maintenance import maintenance_window_problems
from connections.models import Connection, MaintenanceWindow
from monitors import custom_sql_policy
from monitors.check_rules import check_problems
from monitors.models import Check, MonitoredTable
from monitors.table_rules import table_catalog_problems, table_identifier_problems
from monitors_as_code.catalog import catalog_lookup
from monitors_as_code.document import Document, FileRefused, Problem, load

DEFAULT_SOURCE = "pulse.yml"
# A table's settings in the file: what a file manages, but for the names that identify the table.
TABLE_SETTINGS = tuple(
    name for name in MonitoredTable.MANAGED_FIELDS if name not in ("connection", "schema_name", "table_name")
)
CHECK_VALUES = ("min_value", "max_value")
# Environment variables a file may not read: Pulse's own configuration and libpq's.
RESERVED_ENV_PREFIXES = ("PULSE_", "DJANGO_", "DATABASE_", "PG")


def table_defaults() -> dict:
    return {name: MonitoredTable._meta.get_field(name).get_default() for name in TABLE_SETTINGS}


@dataclass
class DesiredCheck:
    kind: str
    column: str
    sql: str
    min_value: float | None
    max_value: float | None
    path: tuple

    @property
    def key(self) -> tuple:
        return (self.kind, self.column, self.sql)

    @property
    def label(self) -> str:
        if self.kind == Check.Kind.NULL_RATE:
            return f"null_rate({self.column})"
        if self.kind == Check.Kind.CUSTOM_SQL:
            text = " ".join(self.sql.split())
            return f"custom_sql({text[:60]}{'…' if len(text) > 60 else ''})"
        return self.kind


@dataclass
class DesiredTable:
    connection: Connection
    schema_name: str
    table_name: str
    settings: dict
    checks: list[DesiredCheck]
    path: tuple
    setting_paths: dict  # field -> the path of the value in the file
    from_group: bool = False

    @property
    def key(self) -> tuple:
        return (self.connection.pk, self.schema_name, self.table_name)

    @property
    def label(self) -> str:
        return f"{self.connection.name}: {self.schema_name}.{self.table_name}"


@dataclass
class DesiredChannel:
    name: str
    kind: str
    target: str | None  # None: the variable is not set (an existing channel keeps its target)
    secret: str | None
    target_env: str
    secret_env: str
    reminder_interval_minutes: int | None
    remind_earlier_alerts: bool
    path: tuple


@dataclass
class DesiredWindow:
    connection: Connection
    starts_at: object
    ends_at: object
    reason: str
    path: tuple

    @property
    def key(self) -> tuple:
        return (self.connection.pk, self.starts_at, self.ends_at)

    @property
    def label(self) -> str:
        return f"{self.connection.name}: {self.starts_at.isoformat()} – {self.ends_at.isoformat()}"


@dataclass
class Change:
    action: str  # create | change | adopt | delete | kept (managed, left the file, no --prune)
    kind: str  # table | check | channel | maintenance_window
    name: str
    line: int | None = None
    fields: dict = field(default_factory=dict)  # field -> (old, new)
    existing: object = None
    desired: object = None
    table: object = None  # a check's table: a MonitoredTable, or the DesiredTable created with it

    def as_dict(self) -> dict:
        return {
            "action": self.action,
            "kind": self.kind,
            "name": self.name,
            "line": self.line,
            "fields": {name: {"from": _shown(old), "to": _shown(new)} for name, (old, new) in self.fields.items()},
        }


def _shown(value):
    return value if value is None or isinstance(value, bool | int | float | str) else str(value)


CHANGING_ACTIONS = ("create", "change", "adopt", "delete")
SYMBOLS = {"create": "+", "change": "~", "adopt": "~", "delete": "-", "kept": "!"}


@dataclass
class Desired:
    team: Group
    source: str
    tables: list[DesiredTable]
    channels: list[DesiredChannel]
    windows: list[DesiredWindow]


@dataclass
class Plan:
    filename: str
    prune: bool
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    desired: Desired | None = None
    document: Document | None = None
    sql_checked: set = field(default_factory=set)

    @property
    def has_changes(self) -> bool:
        return any(change.action in CHANGING_ACTIONS for change in self.changes)

    def counts(self) -> dict[str, int]:
        counts = {action: 0 for action in (*CHANGING_ACTIONS, "kept")}
        for change in self.changes:
            counts[change.action] += 1
        return counts

    def problem_lines(self) -> list[str]:
        return [problem.shown(self.filename) for problem in self.problems]

    def text(self) -> str:
        """The diff as people read it: one line per object, its changed fields indented below."""
        lines = []
        for change in self.changes:
            where = f" ({self.filename}:{change.line})" if change.line else ""
            verb = {"adopt": "adopt", "kept": "kept, not in the file (--prune deletes it)"}.get(change.action, "")
            lines.append(f"{SYMBOLS[change.action]} {change.kind} {change.name}{where}{f'  [{verb}]' if verb else ''}")
            for name, (old, new) in change.fields.items():
                if change.action == "create":
                    lines.append(f"    {name}: {_shown(new)!r}")
                else:
                    lines.append(f"    {name}: {_shown(old)!r} -> {_shown(new)!r}")
        counts = self.counts()
        lines.append(
            f"Plan: {counts['create']} to create, {counts['change'] + counts['adopt']} to change "
            f"({counts['adopt']} adopted), {counts['delete']} to delete"
            + (f", {counts['kept']} kept (not in the file; --prune deletes them)" if counts["kept"] else "")
            + "."
            if self.has_changes or counts["kept"]
            else "No changes: Pulse matches the file."
        )
        lines.extend(f"warning: {warning.shown(self.filename)}" for warning in self.warnings)
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {
            "file": self.filename,
            "changes": [change.as_dict() for change in self.changes],
            "counts": self.counts(),
            "has_changes": self.has_changes,
            "problems": [problem.as_dict(self.filename) for problem in self.problems],
            "warnings": [warning.as_dict(self.filename) for warning in self.warnings],
        }

    def required_permissions(self) -> set[str]:
        """The model permissions applying the plan needs (adopting is a change)."""
        models = {
            "table": MonitoredTable,
            "check": Check,
            "channel": Channel,
            "maintenance_window": MaintenanceWindow,
        }
        verbs = {"create": "add", "change": "change", "adopt": "change", "delete": "delete"}
        needed = set()
        for change in self.changes:
            if change.action in verbs:
                meta = models[change.kind]._meta
                needed.add(f"{meta.app_label}.{verbs[change.action]}_{meta.model_name}")
        return needed


# --- reading the file into desired objects ---------------------------------------------------------------


class _Reader:
    def __init__(self, document: Document, *, teams, env: dict):
        self.document = document
        self.teams = teams
        self.env = env
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []

    def problem(self, path, message: str) -> None:
        self.problems.append(self.document.problem(path, message))

    def warn(self, path, message: str) -> None:
        self.warnings.append(self.document.problem(path, message))

    def read(self) -> Desired | None:
        data = self.document.data
        team = self.teams.filter(name=data["team"]).first()
        if team is None:
            self.problem(("team",), f'team "{data["team"]}" not found')
            return None
        source = data.get("source", DEFAULT_SOURCE)
        connections = {c.name: c for c in Connection.objects.filter(team=team)}
        tables: list[DesiredTable] = []
        windows: list[DesiredWindow] = []
        seen_connections: dict[str, int] = {}
        for index, entry in enumerate(data.get("connections", [])):
            path = ("connections", index)
            name = entry["name"]
            if name in seen_connections:
                self.problem(
                    (*path, "name"), f'connection "{name}" is listed twice (also at line {seen_connections[name]})'
                )
                continue
            seen_connections[name] = self.document.line((*path, "name"))
            connection = connections.get(name)
            if connection is None:
                self.problem((*path, "name"), f'connection "{name}" not found in team "{team.name}"')
                continue
            tables.extend(self._tables(connection, entry, path))
            windows.extend(self._windows(connection, entry, path))
        channels = self._channels(data.get("channels", []))
        return Desired(team=team, source=source, tables=tables, channels=channels, windows=windows)

    # tables ---------------------------------------------------------------------------------------------

    def _tables(self, connection: Connection, entry: dict, path: tuple) -> list[DesiredTable]:
        schemas = {table.get("schema", "public") for table in entry.get("tables", [])}
        schemas |= {group.get("schema", "public") for group in entry.get("table_groups", [])}
        valid_schemas = {schema for schema in schemas if not replica.validate_identifier(schema, what="schema")}
        try:
            catalog = catalog_lookup(connection=connection, schemas=valid_schemas)
        except (replica.ReplicaError, guardrails.GuardrailStop, ValueError) as exc:
            self.problem((*path, "name"), f'cannot look up the tables on connection "{connection.name}": {exc}')
            return []
        except psycopg.Error as exc:
            self.problem(
                (*path, "name"),
                f'cannot look up the tables on connection "{connection.name}": {replica.describe_error(exc)}',
            )
            return []
        declared: dict[tuple, DesiredTable] = {}
        for index, spec in enumerate(entry.get("tables", [])):
            table_path = (*path, "tables", index)
            table = self._desired_table(connection, spec, table_path, {}, from_group=False)
            if table.key in declared:
                self.problem(
                    (*table_path, "table"),
                    f'table "{table.schema_name}.{table.table_name}" is declared twice '
                    f"(also at line {self.document.line(declared[table.key].path)})",
                )
                continue
            declared[table.key] = table
        for index, group in enumerate(entry.get("table_groups", [])):
            group_path = (*path, "table_groups", index)
            schema = group.get("schema", "public")
            pattern = group["tables"]
            names = [name for name in catalog.names_in(schema) if fnmatch.fnmatchcase(name, pattern)]
            overrides = group.get("overrides", {})
            for name in sorted(set(overrides) - set(names)):
                self.warn(
                    (*group_path, "overrides", name),
                    f'"{name}" matches no table of {schema}.{pattern} on connection "{connection.name}"',
                )
            if not names:
                self.warn(
                    (*group_path, "tables"),
                    f'no table of schema "{schema}" matches "{pattern}" on connection "{connection.name}"',
                )
            for name in names:
                override = overrides.get(name, {})
                spec = {**group, **override, "schema": schema, "table": name}
                override_paths = {key: (*group_path, "overrides", name, key) for key in override}
                table = self._desired_table(connection, spec, group_path, override_paths, from_group=True)
                existing = declared.get(table.key)
                if existing is not None and existing.from_group:
                    self.problem(
                        (*group_path, "tables"),
                        f'table "{schema}.{name}" matches two groups '
                        f"(also at line {self.document.line(existing.path)})",
                    )
                    continue
                if existing is None:  # a table listed by name wins over a group's pattern
                    declared[table.key] = table
        tables = list(declared.values())
        for table in tables:
            self._validate_table(table, catalog)
        return tables

    def _desired_table(self, connection, spec, path, override_paths, *, from_group) -> DesiredTable:
        settings = table_defaults()
        setting_paths = {}
        for name in TABLE_SETTINGS:
            if name in spec:
                settings[name] = spec[name]
            setting_paths[name] = override_paths.get(name, (*path, name))
        checks_path = override_paths.get("checks", (*path, "checks"))
        checks = [
            DesiredCheck(
                kind=check["kind"],
                column=check.get("column", ""),
                sql=check.get("sql", ""),
                min_value=check.get("min_value"),
                max_value=check.get("max_value"),
                path=(*checks_path, index),
            )
            for index, check in enumerate(spec.get("checks", []))
        ]
        setting_paths["schema_name"] = (*path, "schema")
        setting_paths["table_name"] = (*path, "tables") if from_group else (*path, "table")
        return DesiredTable(
            connection=connection,
            schema_name=spec.get("schema", "public"),
            table_name=spec["table"],
            settings=settings,
            checks=checks,
            path=path,
            setting_paths=setting_paths,
            from_group=from_group,
        )

    def _table_problem(self, table: DesiredTable, field_: str, message: str) -> None:
        path = table.setting_paths.get(field_, table.path)
        if table.from_group:
            message = f"{table.schema_name}.{table.table_name}: {message}"
        self.problem(path, message)

    def _validate_table(self, table: DesiredTable, catalog) -> None:
        instance = MonitoredTable(
            connection=table.connection, schema_name=table.schema_name, table_name=table.table_name, **table.settings
        )
        problems = table_identifier_problems(
            schema_name=table.schema_name,
            table_name=table.table_name,
            timestamp_column=table.settings["timestamp_column"],
        )
        info = catalog.table(table.schema_name, table.table_name)
        if not problems:  # names that can be looked up: the catalog's verdict, with the field validators'
            problems = table_catalog_problems(
                info=info,
                connection=table.connection,
                schema_name=table.schema_name,
                table_name=table.table_name,
                timestamp_column=table.settings["timestamp_column"],
            )
        catalog_ok = info.exists and info.readable and "table_name" not in problems and "schema_name" not in problems
        problems = {**_field_problems(instance, (*TABLE_SETTINGS, "schema_name", "table_name")), **problems}
        for field_, message in problems.items():
            self._table_problem(table, field_, message)
        seen: dict[tuple, DesiredCheck] = {}
        for check in table.checks:
            if check.key in seen:
                self.problem(
                    check.path,
                    f"{check.label} is declared twice on {table.schema_name}.{table.table_name} "
                    f"(also at line {self.document.line(seen[check.key].path)})",
                )
                continue
            seen[check.key] = check
            check_instance = Check(
                table=instance,
                kind=check.kind,
                column=check.column,
                sql=check.sql,
                min_value=check.min_value,
                max_value=check.max_value,
            )
            check_found = _field_problems(check_instance, ("column", "sql", "min_value", "max_value"))
            if not check_found:
                # The column is looked up in the batched catalog; custom SQL is checked on the replica once the
                # plan knows which queries are new (plan_build).
                check_found = check_problems(
                    table=instance,
                    kind=check.kind,
                    column=check.column,
                    sql_text=check.sql,
                    min_value=check.min_value,
                    max_value=check.max_value,
                    consult_replica=catalog_ok and check.kind == Check.Kind.NULL_RATE,
                    table_info=info,
                )
            for field_, message in check_found.items():
                key = "sql" if field_ == "sql" else field_
                path = (*check.path, key) if key in ("column", "sql", "min_value", "max_value", "kind") else check.path
                if table.from_group:
                    message = f"{table.schema_name}.{table.table_name}: {message}"
                self.problem(path, message)

    # maintenance windows --------------------------------------------------------------------------------

    def _windows(self, connection: Connection, entry: dict, path: tuple) -> list[DesiredWindow]:
        windows = {}
        for index, spec in enumerate(entry.get("maintenance_windows", [])):
            window_path = (*path, "maintenance_windows", index)
            moments = {}
            for name in ("starts_at", "ends_at"):
                try:
                    value = parse_datetime(spec[name])
                except ValueError:  # well formed but not a date (February 30th)
                    value = None
                if value is None:
                    self.problem((*window_path, name), "not an ISO 8601 date and time (e.g. 2026-12-01T02:00:00Z)")
                elif value.tzinfo is None:
                    self.problem((*window_path, name), "needs a time zone (Z or +hh:mm)")
                else:
                    moments[name] = value
            if len(moments) < 2:
                continue
            window = DesiredWindow(connection=connection, reason=spec.get("reason", ""), path=window_path, **moments)
            found = maintenance_window_problems(window=None, changes=moments)
            found.update(
                _field_problems(MaintenanceWindow(connection=connection, reason=window.reason, **moments), ("reason",))
            )
            for field_, message in found.items():
                self.problem((*window_path, field_), message)
            if window.key in windows:
                self.problem(window_path, f"this window is listed twice (also at line {windows[window.key]})")
                continue
            windows[window.key] = self.document.line(window_path)
            if not found:
                yield window

    # channels -------------------------------------------------------------------------------------------

    def _env_value(self, path: tuple, name: str) -> str | None:
        if name.upper().startswith(RESERVED_ENV_PREFIXES):
            self.problem(path, f"\"{name}\" is reserved (Pulse's own or libpq's configuration): use another variable")
            return None
        return self.env.get(name)

    def _channels(self, specs: list) -> list[DesiredChannel]:
        channels = []
        names: dict[str, int] = {}
        for index, spec in enumerate(specs):
            path = ("channels", index)
            name = spec["name"]
            if name in names:
                self.problem((*path, "name"), f'channel "{name}" is listed twice (also at line {names[name]})')
                continue
            names[name] = self.document.line((*path, "name"))
            kind = spec["kind"]
            target_env = spec["target_env"]
            secret_env = spec.get("secret_env", "")
            before = len(self.problems)
            target = self._env_value((*path, "target_env"), target_env)
            secret = self._env_value((*path, "secret_env"), secret_env) if secret_env else None
            if kind == Channel.Kind.WEBHOOK and not secret_env:
                self.problem((*path, "secret_env"), "webhook channels in a file need secret_env (the signing key)")
            if secret_env and kind != Channel.Kind.WEBHOOK:
                self.problem((*path, "secret_env"), "only webhook channels have a signing secret")
            if secret is not None and not SECRET_MIN_LENGTH <= len(secret) <= SECRET_MAX_LENGTH:
                self.problem(
                    (*path, "secret_env"),
                    f"the signing key in ${secret_env} must be {SECRET_MIN_LENGTH} to {SECRET_MAX_LENGTH} characters",
                )
            reminder = spec.get("reminder_interval_minutes")
            if reminder is not None and not 1 <= reminder <= REMINDER_MAX_MINUTES:
                self.problem(
                    (*path, "reminder_interval_minutes"), f"must be between 1 and {REMINDER_MAX_MINUTES} (or null)"
                )
            if len(self.problems) == before:
                channels.append(
                    DesiredChannel(
                        name=name,
                        kind=kind,
                        target=target,
                        secret=secret,
                        target_env=target_env,
                        secret_env=secret_env,
                        reminder_interval_minutes=reminder,
                        remind_earlier_alerts=spec.get("remind_earlier_alerts", False),
                        path=path,
                    )
                )
        return channels


def _field_problems(instance, fields) -> dict[str, str]:
    """The model's own field validators (ranges, lengths, choices), as the API's model serializers run them."""
    excluded = [f.name for f in instance._meta.fields if f.name not in fields]
    try:
        instance.clean_fields(exclude=excluded)
    except ValidationError as exc:
        return {name: " ".join(messages) for name, messages in exc.message_dict.items()}
    return {}


# --- comparing with the team's objects ---------------------------------------------------------------------


def _differences(current, desired: dict) -> dict:
    return {name: (getattr(current, name), value) for name, value in desired.items() if getattr(current, name) != value}


class _Differ:
    def __init__(self, desired: Desired, document: Document, *, prune: bool):
        self.desired = desired
        self.document = document
        self.prune = prune
        self.source = desired.source
        self.changes: list[Change] = []
        self.problems: list[Problem] = []

    def gone(self, kind: str, name: str, existing) -> None:
        self.changes.append(Change(action="delete" if self.prune else "kept", kind=kind, name=name, existing=existing))

    def owned_elsewhere(self, path, what: str, existing) -> bool:
        if existing.managed_by in ("", self.source):
            return False
        self.problems.append(
            self.document.problem(
                path, f'{what} is managed by another file ("{existing.managed_by}"); remove it there first'
            )
        )
        return True

    def run(self) -> tuple[list[Change], list[Problem]]:
        team = self.desired.team
        self._tables(team)
        self._channels(team)
        self._windows(team)
        return self.changes, self.problems

    def _tables(self, team) -> None:
        current = {
            (t.connection_id, t.schema_name, t.table_name): t
            for t in MonitoredTable.objects.filter(connection__team=team).select_related("connection")
        }
        checks_by_table: dict[int, list[Check]] = {}
        for check in Check.objects.filter(table__connection__team=team).order_by("id"):
            checks_by_table.setdefault(check.table_id, []).append(check)
        wanted = set()
        for table in self.desired.tables:
            wanted.add(table.key)
            existing = current.get(table.key)
            line = self.document.line(table.path)
            if existing is None:
                values = {"schema_name": table.schema_name, "table_name": table.table_name, **table.settings}
                self.changes.append(
                    Change(
                        action="create",
                        kind="table",
                        name=table.label,
                        line=line,
                        fields={name: (None, value) for name, value in values.items()},
                        desired=table,
                    )
                )
                for check in table.checks:
                    self._check_create(check, table)
                continue
            if self.owned_elsewhere(table.path, f'table "{table.label}"', existing):
                continue
            fields = _differences(existing, table.settings)
            if fields or not existing.managed_by:
                if not existing.managed_by:
                    fields["managed_by"] = ("", self.source)
                self.changes.append(
                    Change(
                        action="change" if existing.managed_by else "adopt",
                        kind="table",
                        name=table.label,
                        line=line,
                        fields=fields,
                        existing=existing,
                        desired=table,
                    )
                )
            self._checks(table, existing, checks_by_table.get(existing.pk, []))
        for key, existing in current.items():
            if key not in wanted and existing.managed_by == self.source:
                self.gone("table", f"{existing.connection.name}: {existing.qualified_name}", existing)

    def _check_create(self, check: DesiredCheck, table: DesiredTable, existing_table=None) -> None:
        """A new check, on the table created with it or on `existing_table`."""
        values = {"kind": check.kind, "column": check.column, "sql": check.sql}
        values.update({name: getattr(check, name) for name in CHECK_VALUES})
        self.changes.append(
            Change(
                action="create",
                kind="check",
                name=f"{table.label} {check.label}",
                line=self.document.line(check.path),
                fields={name: (None, value) for name, value in values.items() if value not in ("", None)},
                desired=check,
                table=existing_table or table,
            )
        )

    def _checks(self, table: DesiredTable, existing_table: MonitoredTable, current: list[Check]) -> None:
        unmatched = [check for check in current if check.managed_by in ("", self.source)]
        unmatched.sort(key=lambda check: check.managed_by != self.source)  # the file's own checks match first
        for check in table.checks:
            existing = next((c for c in unmatched if (c.kind, c.column, c.sql) == check.key), None)
            if existing is None:
                self._check_create(check, table, existing_table)
                continue
            unmatched.remove(existing)
            fields = _differences(existing, {name: getattr(check, name) for name in CHECK_VALUES})
            if fields or not existing.managed_by:
                if not existing.managed_by:
                    fields["managed_by"] = ("", self.source)
                self.changes.append(
                    Change(
                        action="change" if existing.managed_by else "adopt",
                        kind="check",
                        name=f"{table.label} {check.label}",
                        line=self.document.line(check.path),
                        fields=fields,
                        existing=existing,
                        desired=check,
                        table=existing_table,
                    )
                )
        for existing in unmatched:
            if existing.managed_by == self.source:
                label = DesiredCheck(existing.kind, existing.column, existing.sql, None, None, ()).label
                self.gone("check", f"{table.label} {label}", existing)

    def _channels(self, team) -> None:
        current = {channel.name: channel for channel in Channel.objects.filter(team=team)}
        for channel in self.desired.channels:
            existing = current.pop(channel.name, None)
            line = self.document.line(channel.path)
            settings = {
                "reminder_interval_minutes": channel.reminder_interval_minutes,
                "remind_earlier_alerts": channel.remind_earlier_alerts,
            }
            if existing is None:
                if channel.target is None:
                    self.problems.append(
                        self.document.problem(
                            (*channel.path, "target_env"),
                            f'environment variable "{channel.target_env}" is not set: a new channel needs its target',
                        )
                    )
                    continue
                if channel.secret_env and channel.secret is None:
                    self.problems.append(
                        self.document.problem(
                            (*channel.path, "secret_env"),
                            f'environment variable "{channel.secret_env}" is not set: a new webhook needs its key',
                        )
                    )
                    continue
                found = channel_problems(
                    kind=channel.kind, target=channel.target, secret=channel.secret, instance=None, team=team
                )
                fields = {"kind": (None, channel.kind), "target": (None, f"${channel.target_env}")}
                if channel.secret_env:
                    fields["secret"] = (None, f"${channel.secret_env}")
                fields.update({name: (None, value) for name, value in settings.items()})
                change = Change(
                    action="create", kind="channel", name=channel.name, line=line, fields=fields, desired=channel
                )
            else:
                if self.owned_elsewhere(channel.path, f'channel "{channel.name}"', existing):
                    continue
                found = channel_problems(
                    kind=channel.kind, target=channel.target, secret=channel.secret, instance=existing, team=team
                )
                fields = _differences(existing, settings)
                if channel.target is not None and existing.get_target() != channel.target:
                    fields["target"] = ("(stored)", f"${channel.target_env}")
                if channel.secret is not None and existing.get_secret() != channel.secret:
                    fields["secret"] = ("(stored)", f"${channel.secret_env}")
                if not existing.managed_by:
                    fields["managed_by"] = ("", self.source)
                change = Change(
                    action="change" if existing.managed_by else "adopt",
                    kind="channel",
                    name=channel.name,
                    line=line,
                    fields=fields,
                    existing=existing,
                    desired=channel,
                )
            for field_, message in found.items():
                key = {"target": "target_env", "secret": "secret_env"}.get(field_, field_)
                self.problems.append(self.document.problem((*channel.path, key), message))
            if not found and change.fields:
                self.changes.append(change)
        for existing in current.values():
            if existing.managed_by == self.source:
                self.gone("channel", existing.name, existing)

    def _windows(self, team) -> None:
        current = {
            (w.connection_id, w.starts_at, w.ends_at): w
            for w in MaintenanceWindow.objects.filter(connection__team=team).select_related("connection")
        }
        for window in self.desired.windows:
            existing = current.pop(window.key, None)
            line = self.document.line(window.path)
            if existing is None:
                fields = {
                    "starts_at": (None, window.starts_at.isoformat()),
                    "ends_at": (None, window.ends_at.isoformat()),
                    "reason": (None, window.reason),
                }
                self.changes.append(
                    Change(
                        action="create",
                        kind="maintenance_window",
                        name=window.label,
                        line=line,
                        fields=fields,
                        desired=window,
                    )
                )
                continue
            if self.owned_elsewhere(window.path, f"maintenance window {window.label}", existing):
                continue
            fields = _differences(existing, {"reason": window.reason})
            if not existing.managed_by:
                fields["managed_by"] = ("", self.source)
            if fields:
                self.changes.append(
                    Change(
                        action="change" if existing.managed_by else "adopt",
                        kind="maintenance_window",
                        name=window.label,
                        line=line,
                        fields=fields,
                        existing=existing,
                        desired=window,
                    )
                )
        for existing in current.values():
            if existing.managed_by == self.source:
                label = f"{existing.connection.name}: {existing.starts_at.isoformat()} – {existing.ends_at.isoformat()}"
                self.gone("maintenance_window", label, existing)


def changes_compute(*, desired: Desired, document: Document, prune: bool) -> tuple[list[Change], list[Problem]]:
    """Compare the desired objects with the team's current ones (read now)."""
    return _Differ(desired, document, prune=prune).run()


def sql_to_check(changes: list[Change]) -> list[Change]:
    """The custom SQL checks the replica must see: new ones (a changed query is a new check)."""
    return [
        change
        for change in changes
        if change.kind == "check" and change.action == "create" and change.desired.kind == Check.Kind.CUSTOM_SQL
    ]


def custom_sql_problems(*, changes: list[Change], document: Document, checked: set) -> list[Problem]:
    """Check each new custom SQL query on its connection's replica (functions, result shape, plan and cost),
    the same as the API does; `checked` collects the (connection id, sql) pairs already asked."""
    problems = []
    for change in sql_to_check(changes):
        connection = change.table.connection
        key = (connection.pk, change.desired.sql)
        if key in checked:
            continue
        checked.add(key)
        problem = custom_sql_policy.replica_problem(connection=connection, sql_text=change.desired.sql)
        if problem:
            problems.append(document.problem((*change.desired.path, "sql"), problem))
    return problems


def plan_build(*, content: str | bytes, filename: str, teams, env: dict, prune: bool) -> Plan:
    """Read, validate and compare; a Plan whose `problems` list everything wrong (then its changes are empty).

    `teams`: the groups the caller may act for (another team's file reads as "team not found"). `env`: where
    the channels' `*_env` names are looked up (the CLI's environment, or the API body's `env`)."""
    plan = Plan(filename=filename, prune=prune)
    try:
        document = load(content)
    except FileRefused as refused:
        plan.problems = refused.problems
        return plan
    reader = _Reader(document, teams=teams, env=env)
    desired = reader.read()
    plan.warnings = reader.warnings
    plan.problems = reader.problems
    if desired is None:
        return plan
    changes, problems = changes_compute(desired=desired, document=document, prune=prune)
    plan.problems.extend(problems)
    if not plan.problems:
        plan.problems.extend(custom_sql_problems(changes=changes, document=document, checked=plan.sql_checked))
    plan.problems.sort(key=lambda problem: (problem.line or 0, problem.field))
    if not plan.problems:
        plan.changes = changes
        plan.desired = desired
        plan.document = document
    return plan
