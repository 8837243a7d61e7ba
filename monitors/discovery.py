"""Discovery: monitor a whole replica in one step.

One catalog query per connection (`CATALOG_QUERY`, a fixed `psycopg.sql` template, sent once through the
guardrails' lookup session) lists the tables in the connection's scope with their estimated rows and size,
columns and types, which columns lead a btree index, and pg_stats' correlation, null fraction and newest
histogram bound of the date/timestamp columns. It also lists the tables Pulse already monitors on the
connection (wherever they are), so one round trip tells what is new, what is gone and what came back.

From that list, `timestamp_column_choose` picks each table's timestamp column and says why, and
`discovery_run` either reports what it would do (dry run) or does it: new tables are added with the policy's
defaults, their first checks (which backfill their history) spread at `first_checks_per_minute`; tables gone
from the catalog become `missing` (never deleted: their history stays) and ONE connection-level
schema_change result lists them, handed to the injected `on_recorded` (the alert intake, bound by the project
layer); a table that reappears is checked again. A user's choice of timestamp column is never changed.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from psycopg import sql

from connections import guardrails, replica
from connections.models import Connection
from monitors.checks import CheckKind, Status
from monitors.models import CheckResult, DiscoveryPolicy, MonitoredTable

MAX_SCHEMAS = 100
MAX_PATTERNS = 100
MAX_PATTERN_LENGTH = 200
CATALOG_ROW_LIMIT = 50_000
"""Rows read from the catalog at most; beyond it the scope must be narrowed (nothing is marked missing)."""
NEWEST_VALUES_UP_TO = 2_000
"""Up to this many tables, the catalog query also reads each indexed date/timestamp column's newest value from
its pg_stats histogram (rendering a histogram costs ~0.2 ms); beyond, names and correlation decide alone, so
the one statement stays well inside the statement timeout on a 10,000-table replica."""
LISTED_AT_MOST = 200
"""Names listed per category in a summary (counts are always complete)."""
SYSTEM_SCHEMAS = ("pg_catalog", "information_schema")
TIMESTAMP_TYPES = replica.TIMESTAMP_TYPES
RECENT_SECONDS = 2 * 86_400
STALE_INSERT_SECONDS = 7 * 86_400
"""An insert-time column whose newest value is older than this, beside a recent update time: an upsert table."""
SCOPE_FIELDS = ("schemas", "include_patterns", "exclude_patterns")

CATALOG_QUERY = sql.SQL(
    """
WITH known AS (
    SELECT * FROM unnest({known_schemas}::text[], {known_tables}::text[]) AS k(schema_name, table_name)
), rels AS MATERIALIZED (
    SELECT c.oid, n.nspname, c.relname, c.relkind, c.reltuples, c.relpages,
           pg_catalog.has_schema_privilege(n.oid, 'USAGE') AS schema_usage,
           (({schemas_given} AND n.nspname = ANY({schemas}::text[]))
             OR (NOT {schemas_given} AND pg_catalog.has_schema_privilege(n.oid, 'USAGE')))
           AND (cardinality({include}::text[]) = 0 OR c.relname LIKE ANY({include}::text[]))
           AND NOT (c.relname LIKE ANY({exclude}::text[]))
           AND c.relkind IN ('r', 'p') AND NOT c.relispartition AS in_scope
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
      AND n.nspname <> ALL({system_schemas}::text[]) AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'
), wanted AS MATERIALIZED (
    SELECT r.* FROM rels r
    WHERE r.in_scope OR (r.nspname, r.relname) IN (SELECT schema_name, table_name FROM known)
    ORDER BY r.nspname, r.relname
    LIMIT {row_limit}
), indexes AS (
    SELECT i.indrelid, count(*) AS total,
           array_agg(DISTINCT i.indkey[0]) FILTER (
               WHERE i.indisvalid AND i.indpred IS NULL AND am.amname = 'btree') AS leading
    FROM pg_catalog.pg_index i
    JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
    JOIN pg_catalog.pg_am am ON am.oid = ic.relam
    WHERE i.indrelid IN (SELECT oid FROM wanted)
    GROUP BY i.indrelid
), candidates AS (
    SELECT w.oid, w.nspname, w.relname, w.relkind, a.attnum, a.attname
    FROM wanted w
    JOIN indexes ix ON ix.indrelid = w.oid
    JOIN pg_catalog.pg_attribute a ON a.attrelid = w.oid AND a.attnum = ANY(ix.leading)
    WHERE a.atttypid IN ('date'::regtype, 'timestamp'::regtype, 'timestamptz'::regtype) AND NOT a.attisdropped
), stats AS (
    SELECT cd.oid, cd.attnum, st.correlation, st.null_frac,
           CASE WHEN sz.small THEN EXTRACT(EPOCH FROM now() - pg_catalog.btrim(
               pg_catalog.substring(st.histogram_bounds::text, '([^,{{]+)}}$'), '"')::timestamptz)::float8 END AS newest
    FROM candidates cd
    CROSS JOIN (SELECT count(*) <= {newest_up_to} AS small FROM wanted) AS sz
    CROSS JOIN LATERAL (
        SELECT ps.correlation, ps.null_frac, ps.histogram_bounds
        FROM pg_catalog.pg_stats ps
        WHERE ps.schemaname = cd.nspname AND ps.tablename = cd.relname AND ps.attname = cd.attname
          AND ps.inherited = (cd.relkind = 'p')
        OFFSET 0
    ) AS st
), columns AS (
    SELECT a.attrelid, json_agg(json_build_array(
               a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull,
               COALESCE(a.attnum = ANY(ix.leading), false), s.correlation, s.null_frac, s.newest
           ) ORDER BY a.attnum) AS list
    FROM wanted w
    JOIN pg_catalog.pg_attribute a ON a.attrelid = w.oid AND a.attnum > 0 AND NOT a.attisdropped
    LEFT JOIN indexes ix ON ix.indrelid = w.oid
    LEFT JOIN stats s ON s.oid = a.attrelid AND s.attnum = a.attnum
    GROUP BY a.attrelid
)
SELECT w.nspname, w.relname, w.in_scope, w.schema_usage, pg_catalog.has_table_privilege(w.oid, 'SELECT'),
       w.reltuples::float8, w.relpages::bigint * pg_catalog.current_setting('block_size')::bigint,
       COALESCE(ix.total, 0), col.list
FROM wanted w
LEFT JOIN indexes ix ON ix.indrelid = w.oid
LEFT JOIN columns col ON col.attrelid = w.oid
ORDER BY w.nspname, w.relname
"""
)
# Sent in the same message as the catalog query (one round trip, one implicit transaction): a big catalog makes
# the planner's estimate large enough for JIT compilation, which costs more than the query (12 s instead of
# 3.5 s for 10,000 tables on a loaded machine), and the replica's parallel workers are not Pulse's to take.
CATALOG_SETTINGS = sql.SQL("SET LOCAL jit = off; SET LOCAL max_parallel_workers_per_gather = 0; ")
CATALOG_QUERIES = 3
"""Statements of a discovery's one round trip: the two settings and the catalog query (the session's recovery
check comes on top)."""


class DiscoveryInputError(ValueError):
    """A discovery setting is refused; `problems` maps fields to messages."""

    def __init__(self, problems: dict[str, str]):
        super().__init__("; ".join(f"{name}: {message}" for name, message in problems.items()))
        self.problems = problems


# --- scope ----------------------------------------------------------------------------------------------


def pattern_as_like(pattern: str) -> str:
    """A glob over table names (`*` any run, `?` one character) as a LIKE pattern, everything else literal."""
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def scope_problems(*, schemas, include_patterns, exclude_patterns) -> dict[str, str]:
    """{field: message} for scope settings that cannot be used; empty when they are fine."""
    problems = {}
    if not isinstance(schemas, list) or not all(isinstance(s, str) for s in schemas):
        problems["schemas"] = "must be a list of schema names"
    elif len(schemas) > MAX_SCHEMAS:
        problems["schemas"] = f"at most {MAX_SCHEMAS} schemas"
    else:
        for schema in schemas:
            error = replica.validate_identifier(schema, what="schema name")
            if error:
                problems["schemas"] = error
                break
    for name, patterns in (("include_patterns", include_patterns), ("exclude_patterns", exclude_patterns)):
        if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
            problems[name] = "must be a list of table name patterns"
        elif len(patterns) > MAX_PATTERNS:
            problems[name] = f"at most {MAX_PATTERNS} patterns"
        elif any(not p or len(p) > MAX_PATTERN_LENGTH for p in patterns):
            problems[name] = f"each pattern must be 1 to {MAX_PATTERN_LENGTH} characters"
        elif any(any(ord(ch) < 32 or ord(ch) == 127 for ch in p) for p in patterns):
            problems[name] = "patterns must not contain control characters"
    return problems


def policy_for(*, connection: Connection) -> DiscoveryPolicy:
    """The connection's discovery policy (created with the defaults, disabled, the first time it is asked for)."""
    policy, _ = DiscoveryPolicy.objects.get_or_create(connection=connection)
    return policy


def policy_update(*, policy: DiscoveryPolicy, changes: dict) -> DiscoveryPolicy:
    """Apply validated `changes` to the policy; enabling (or changing the schedule) makes it due now."""
    scope = {
        name: changes.get(name, getattr(policy, name)) for name in ("schemas", "include_patterns", "exclude_patterns")
    }
    problems = scope_problems(**scope)
    if problems:
        raise DiscoveryInputError(problems)
    for name, value in changes.items():
        setattr(policy, name, value)
    if {"is_enabled", "interval_minutes"} & set(changes) and policy.is_enabled:
        policy.next_run_at = None
    policy.save()
    return policy


# --- the catalog ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnFacts:
    name: str
    type: str
    not_null: bool
    indexed: bool
    correlation: float | None = None
    null_frac: float | None = None
    newest_age_seconds: float | None = None


@dataclass(frozen=True)
class CatalogTable:
    schema: str
    name: str
    in_scope: bool
    schema_usage: bool
    can_select: bool
    estimated_rows: float
    size_bytes: int
    index_count: int
    columns: tuple[ColumnFacts, ...]

    @property
    def key(self) -> tuple[str, str]:
        return (self.schema, self.name)


@dataclass(frozen=True)
class Catalog:
    tables: list[CatalogTable]
    truncated: bool
    queries: int


def catalog_params(*, policy: DiscoveryPolicy, known: list[tuple[str, str]]) -> dict:
    return {
        "known_schemas": sql.Literal([schema for schema, _ in known]),
        "known_tables": sql.Literal([name for _, name in known]),
        "schemas_given": sql.Literal(bool(policy.schemas)),
        "schemas": sql.Literal(list(policy.schemas)),
        "include": sql.Literal([pattern_as_like(p) for p in policy.include_patterns]),
        "exclude": sql.Literal([pattern_as_like(p) for p in policy.exclude_patterns]),
        "system_schemas": sql.Literal(list(SYSTEM_SCHEMAS)),
        "row_limit": sql.Literal(CATALOG_ROW_LIMIT + 1),
        "newest_up_to": sql.Literal(NEWEST_VALUES_UP_TO),
    }


def catalog_query(*, policy: DiscoveryPolicy, known: list[tuple[str, str]]) -> sql.Composed:
    """The one catalog statement of a discovery, every value a `sql.Literal` in the fixed template."""
    return CATALOG_QUERY.format(**catalog_params(policy=policy, known=known))


def catalog_message(*, policy: DiscoveryPolicy, known: list[tuple[str, str]]) -> sql.Composed:
    """What a discovery sends, in one message (simple protocol, no parameters): its settings, then the query."""
    return CATALOG_SETTINGS + catalog_query(policy=policy, known=known)


def _table_from_row(row: tuple) -> CatalogTable:
    schema, name, in_scope, usage, can_select, reltuples, size, index_count, columns = row
    return CatalogTable(
        schema=schema,
        name=name,
        in_scope=bool(in_scope),
        schema_usage=bool(usage),
        can_select=bool(can_select),
        estimated_rows=max(float(reltuples or 0), 0.0),
        size_bytes=int(size or 0),
        index_count=int(index_count or 0),
        columns=tuple(
            ColumnFacts(
                name=c[0],
                type=c[1],
                not_null=bool(c[2]),
                indexed=bool(c[3]),
                correlation=c[4],
                null_frac=c[5],
                newest_age_seconds=c[6],
            )
            for c in (columns or [])
        ),
    )


def catalog_read(*, connection: Connection, policy: DiscoveryPolicy, known: list[tuple[str, str]]) -> Catalog:
    """Read the catalog in one statement, in a guarded read-only session (budget, rate, slot, timeouts)."""
    message = catalog_message(policy=policy, known=known)
    with (
        guardrails.lookup_session(connection=connection, queries=CATALOG_QUERIES) as session,
        guardrails.statement_deadline(session, timeout_ms=connection.statement_timeout_ms),
        session.cursor() as cur,
    ):
        cur.execute(message)
        while cur.description is None and cur.nextset():
            pass  # past the settings' results, to the catalog's rows
        rows = cur.fetchall()
    truncated = len(rows) > CATALOG_ROW_LIMIT
    return Catalog(tables=[_table_from_row(r) for r in rows[:CATALOG_ROW_LIMIT]], truncated=truncated, queries=1)


# --- the timestamp column -------------------------------------------------------------------------------

# Words of column names (split at underscores and camelCase): what kind of time a column's name says it holds.


def _word_set(words: str) -> frozenset[str]:
    return frozenset(words.split())


_STRONG_INSERT_WORDS = _word_set(
    "created create creation inserted insert loaded load ingested ingest event occurred recorded logged received"
    " captured arrived"
)
_TIME_WORDS = _word_set(
    "placed posted published observed collected measured counted viewed sent emitted added registered signup"
    " signed timestamp ts time at date day dt when on"
)
_UPDATE_WORDS = _word_set(
    "updated update modified modify changed change mtime touched refreshed synced sync edited last"
)
_NOT_INSERT_WORDS = _word_set(
    "deleted delete expires expire expiry expiration expired valid until due deadline scheduled birth birthday dob"
    " archived cancelled canceled closed ends end ended finished completed next retry lock locked removed purged ttl"
    " renewal renews run runs planned starts effective from to"
)


def _words(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return [w for w in re.split(r"[^a-z0-9]+", spaced.lower()) if w]


@functools.lru_cache(maxsize=4096)
def _name_kind(name: str) -> str:
    """'update', 'not_insert', 'insert' (a name that says insert time), 'time' (a plain time name) or 'other'."""
    words = set(_words(name))
    if words & _UPDATE_WORDS:
        return "update"
    if words & _NOT_INSERT_WORDS:
        return "not_insert"
    if words & _STRONG_INSERT_WORDS:
        return "insert"
    if words & _TIME_WORDS:
        return "time"
    return "other"


@dataclass(frozen=True)
class Choice:
    column: str
    reason: str


def _age_text(seconds: float) -> str:
    if seconds < 0:
        return "in the future"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min old"
    if seconds < 2 * 86_400:
        return f"{seconds / 3600:.0f} h old"
    return f"{seconds / 86_400:.0f} days old"


def _score(column: ColumnFacts) -> tuple[float, list[str]]:
    """How much a date/timestamp column looks like the table's insert time, and the evidence, in words."""
    kind = _name_kind(column.name)
    score, evidence = 0.0, []
    if kind == "insert":
        score += 3
        evidence.append("its name says insert time")
    elif kind == "time":
        score += 1
        evidence.append("its name says a time")
    if column.correlation is not None:
        if abs(column.correlation) >= 0.9:
            score += 2
            evidence.append(f"correlation {column.correlation:.2f} with physical order (rows arrive in its order)")
        elif abs(column.correlation) >= 0.5:
            score += 1
            evidence.append(f"correlation {column.correlation:.2f} with physical order")
        else:
            score -= 1
            evidence.append(f"correlation only {column.correlation:.2f} with physical order")
    if column.null_frac is not None and column.null_frac > 0.2:
        score -= 2
        evidence.append(f"{column.null_frac:.0%} NULL")
    elif column.not_null:
        score += 0.5
        evidence.append("NOT NULL")
    if column.newest_age_seconds is not None:
        if column.newest_age_seconds < -3600:
            score -= 4
            evidence.append("newest value in the future (statistics)")
        elif column.newest_age_seconds <= RECENT_SECONDS:
            score += 1
            evidence.append(f"newest value {_age_text(column.newest_age_seconds)} (statistics)")
    if column.type == "date":
        score -= 0.25  # a timestamp of the same standing tells more
    return score, evidence


def timestamp_column_choose(columns: tuple[ColumnFacts, ...] | list[ColumnFacts]) -> Choice:
    """The column freshness and volume should follow, and why (an empty column: volume by row estimate only).

    An indexed date/timestamp column (leading a btree index, so max() and time buckets are cheap) whose
    name and statistics say insert time is preferred; else an indexed update-time column; else none.
    """
    typed = [c for c in columns if c.type in TIMESTAMP_TYPES]
    indexed = [c for c in typed if c.indexed]
    inserts = [c for c in indexed if _name_kind(c.name) not in ("update", "not_insert")]
    updates = [c for c in indexed if _name_kind(c.name) == "update"]
    if inserts:
        scored = sorted(
            ((_score(c), -i, c) for i, c in enumerate(inserts)), key=lambda t: (t[0][0], t[1]), reverse=True
        )
        (score, evidence), _, best = scored[0]
        recent_update = next((c for c in updates if (c.newest_age_seconds or math.inf) < 86_400), None)
        if recent_update and (best.newest_age_seconds or 0) > STALE_INSERT_SECONDS:
            return Choice(
                recent_update.name,
                f"indexed {recent_update.type} column that records updates: rows are updated in place "
                f"({best.name}'s newest value is {_age_text(best.newest_age_seconds)}, "
                f"{recent_update.name}'s {_age_text(recent_update.newest_age_seconds)}, statistics)",
            )
        if score >= 0:
            return Choice(best.name, f"indexed {best.type} column; " + ", ".join(evidence or ["the only candidate"]))
    if updates:
        best = updates[0]
        return Choice(
            best.name,
            f"indexed {best.type} column that records updates (no indexed insert-time column): "
            "freshness follows the latest change, volume counts rows changed per hour",
        )
    return Choice("", "no timestamp column (volume from the row estimate only): " + _why_none(columns, typed))


def _why_none(columns, typed) -> str:
    reasons = []
    for c in typed:
        if not c.indexed:
            reasons.append(f"{c.name} is not indexed (max() would scan the table)")
        else:
            reasons.append(f"{c.name} does not look like an insert time")
    for c in columns:
        if c.type not in TIMESTAMP_TYPES and _name_kind(c.name) in ("insert", "update"):
            reasons.append(f"{c.name} is of type {c.type}, not a date or timestamp")
    return "; ".join(reasons[:5]) or "no date or timestamp column"


# --- plan and apply -------------------------------------------------------------------------------------


@dataclass
class Summary:
    """What a discovery found and (with apply) did; the API's answer and the policy's `last_summary`."""

    applied: bool
    catalog_queries: int
    tables_seen: int = 0
    added: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    over_cap: list[str] = field(default_factory=list)
    over_cap_count: int = 0
    missing: list[str] = field(default_factory=list)
    returned: list[str] = field(default_factory=list)
    rechosen: list[dict] = field(default_factory=list)
    already_monitored: int = 0
    truncated: bool = False

    def as_dict(self) -> dict:
        data = asdict(self)
        for name in ("added", "skipped", "over_cap", "missing", "returned", "rechosen"):
            data[f"{name}_count"] = data.get(f"{name}_count", len(data[name]))
            data[name] = data[name][:LISTED_AT_MOST]
        data["over_cap_count"] = self.over_cap_count
        return data


def _first_check_at(*, now: datetime, index: int, policy: DiscoveryPolicy) -> datetime:
    return now + timedelta(seconds=index * 60.0 / policy.first_checks_per_minute)


def _staggered_start(*, connection: Connection, policy: DiscoveryPolicy, now: datetime) -> datetime:
    """New tables queue behind the first checks a previous discovery already spread into the future."""
    latest = (
        MonitoredTable.objects.filter(connection=connection, discovered_at__isnull=False, backfilled_at__isnull=True)
        .exclude(next_check_at__isnull=True)
        .order_by("-next_check_at")
        .values_list("next_check_at", flat=True)
        .first()
    )
    if latest is None or latest < now:
        return now
    return latest + timedelta(seconds=60.0 / policy.first_checks_per_minute)


def _usable_choice(table: MonitoredTable, found: CatalogTable) -> bool:
    column = next((c for c in found.columns if c.name == table.timestamp_column), None)
    return column is not None and column.type in TIMESTAMP_TYPES and column.indexed


def discovery_run(*, connection: Connection, apply: bool, on_recorded, now: datetime | None = None) -> dict:
    """Discover the connection's tables: report what would change (dry run) or change it (`apply`).

    `on_recorded(connection=, results=)` receives the connection-level schema_change result listing missing
    tables (the project binds the alert intake); raises ReplicaError / GuardrailStop when the catalog cannot
    be read (nothing changes then).
    """
    now = now or timezone.now()
    policy = policy_for(connection=connection)
    monitored = {(t.schema_name, t.table_name): t for t in MonitoredTable.objects.filter(connection=connection)}
    catalog = catalog_read(connection=connection, policy=policy, known=sorted(monitored))
    found = {t.key: t for t in catalog.tables}
    summary = Summary(
        applied=apply, catalog_queries=catalog.queries, tables_seen=len(catalog.tables), truncated=catalog.truncated
    )

    room = max(policy.max_tables - sum(1 for t in monitored.values() if t.status != MonitoredTable.Status.MISSING), 0)
    new_tables = []
    for table in catalog.tables:
        if table.key in monitored:
            summary.already_monitored += 1
            continue
        if not table.in_scope:
            continue
        qualified = f"{table.schema}.{table.name}"
        if not table.schema_usage:
            summary.skipped.append(
                {"table": qualified, "reason": f'no USAGE on schema "{table.schema}" for user "{connection.username}"'}
            )
            continue
        if not table.can_select:
            summary.skipped.append(
                {"table": qualified, "reason": f'no SELECT privilege for user "{connection.username}"'}
            )
            continue
        if len(new_tables) >= room:
            summary.over_cap_count += 1
            if len(summary.over_cap) < LISTED_AT_MOST:
                summary.over_cap.append(qualified)
            continue
        new_tables.append((table, timestamp_column_choose(table.columns)))

    missing = [] if catalog.truncated else [t for key, t in monitored.items() if key not in found]
    returned = [t for key, t in monitored.items() if key in found and t.status == MonitoredTable.Status.MISSING]
    rechosen = []
    for key, table in monitored.items():
        if key in found and table.timestamp_column_chosen_by == MonitoredTable.ChosenBy.DISCOVERY:
            if table.timestamp_column and _usable_choice(table, found[key]):
                continue
            choice = timestamp_column_choose(found[key].columns)
            if choice.column != table.timestamp_column:
                rechosen.append((table, choice))

    start = _staggered_start(connection=connection, policy=policy, now=now)
    for index, (table, choice) in enumerate(new_tables):
        summary.added.append(
            {
                "schema": table.schema,
                "table": table.name,
                "timestamp_column": choice.column,
                "reason": choice.reason,
                "estimated_rows": round(table.estimated_rows),
                "size_bytes": table.size_bytes,
                "first_check_at": _first_check_at(now=start, index=index, policy=policy).isoformat(),
            }
        )
    summary.missing = [t.qualified_name for t in missing]
    summary.returned = [t.qualified_name for t in returned]
    summary.rechosen = [
        {"table": t.qualified_name, "from": t.timestamp_column, "to": c.column, "reason": c.reason} for t, c in rechosen
    ]
    if apply:
        _apply(
            connection=connection,
            policy=policy,
            new_tables=new_tables,
            start=start,
            missing=missing,
            returned=returned,
            rechosen=rechosen,
            now=now,
            on_recorded=on_recorded,
        )
        policy.last_summary = summary.as_dict()
        policy.last_run_at = now
        policy.last_error = ""
        policy.next_run_at = now + timedelta(minutes=policy.interval_minutes)
        policy.save(update_fields=["last_summary", "last_run_at", "last_error", "next_run_at"])
    return summary.as_dict()


def _apply(*, connection, policy, new_tables, start, missing, returned, rechosen, now, on_recorded) -> None:
    with transaction.atomic():
        MonitoredTable.objects.bulk_create(
            [
                MonitoredTable(
                    connection=connection,
                    schema_name=table.schema,
                    table_name=table.name,
                    timestamp_column=choice.column,
                    timestamp_column_chosen_by=MonitoredTable.ChosenBy.DISCOVERY,
                    timestamp_column_reason=choice.reason,
                    check_interval_seconds=policy.check_interval_seconds,
                    freshness_threshold_minutes=policy.freshness_threshold_minutes,
                    failure_threshold=policy.failure_threshold,
                    discovered_at=now,
                    next_check_at=_first_check_at(now=start, index=index, policy=policy),
                )
                for index, (table, choice) in enumerate(new_tables)
            ],
            ignore_conflicts=True,  # a table added meanwhile (by hand or a concurrent discovery) stays as it is
        )
        if missing:
            MonitoredTable.objects.filter(pk__in=[t.pk for t in missing]).exclude(
                status=MonitoredTable.Status.MISSING
            ).update(status=MonitoredTable.Status.MISSING, missing_since=now, lease_token=None, lease_expires_at=None)
        for table in returned:
            MonitoredTable.objects.filter(pk=table.pk).update(
                status=MonitoredTable.Status.UNKNOWN if table.is_active else MonitoredTable.Status.PAUSED,
                missing_since=None,
                next_check_at=None,
            )
        for table, choice in rechosen:
            # The volume series changes meaning: its baseline restarts (backfilled again from the new column).
            MonitoredTable.objects.filter(pk=table.pk).update(
                timestamp_column=choice.column,
                timestamp_column_reason=choice.reason,
                baseline_since=now,
                backfilled_at=None,
                update_times=[],
            )
        _record_missing(connection=connection, now=now, on_recorded=on_recorded)


def _record_missing(*, connection: Connection, now: datetime, on_recorded) -> None:
    """One connection-level schema_change result: failing while tables are missing (listing them), else passing
    once after a failure (so the alert resolves). The intake turns it into at most one alert per connection."""
    names = list(
        MonitoredTable.objects.filter(connection=connection, status=MonitoredTable.Status.MISSING)
        .order_by("schema_name", "table_name")
        .values_list("schema_name", "table_name")
    )
    previous = (
        CheckResult.objects.filter(connection=connection, table=None, kind=CheckKind.SCHEMA_CHANGE)
        .order_by("-started_at", "-id")
        .values_list("status", flat=True)
        .first()
    )
    if not names and previous != Status.FAIL:
        return
    listed = ", ".join(f"{schema}.{name}" for schema, name in names[:50])
    more = f" and {len(names) - 50} more" if len(names) > 50 else ""
    result = CheckResult.objects.create(
        connection=connection,
        table=None,
        kind=CheckKind.SCHEMA_CHANGE,
        status=Status.FAIL if names else Status.PASS,
        observed_value=len(names),
        message=(
            f"{len(names)} monitored table(s) no longer on the replica: {listed}{more}"
            if names
            else "every monitored table is on the replica again"
        ),
        started_at=now,
        details={"missing": [f"{schema}.{name}" for schema, name in names[:LISTED_AT_MOST]], "discovery": True},
    )
    on_recorded(connection=connection, results=[result])


def discovery_run_recorded(*, connection: Connection, on_recorded, now: datetime | None = None) -> dict | None:
    """A scheduled (applied) discovery that stores a failure on the policy instead of raising it."""
    now = now or timezone.now()
    try:
        return discovery_run(connection=connection, apply=True, on_recorded=on_recorded, now=now)
    except (replica.ReplicaError, guardrails.GuardrailStop, guardrails.CheckError) as exc:
        error = str(exc)
    except Exception as exc:  # a psycopg failure of the catalog query: stored, never raised into the scheduler
        error = replica.describe_error(exc)
    DiscoveryPolicy.objects.filter(connection=connection).update(
        last_error=error[:1000], last_run_at=now, next_run_at=now + timedelta(minutes=5)
    )
    return None


def discoveries_run_due(*, on_recorded, now: datetime | None = None, limit: int = 5) -> int:
    """Run the enabled discoveries whose time has come (at most `limit`); returns how many ran.

    Each policy is taken with SKIP LOCKED and its next run moved first, so processes never run one twice."""
    now = now or timezone.now()
    ran = 0
    for _ in range(limit):
        with transaction.atomic():
            policy = (
                DiscoveryPolicy.objects.select_for_update(skip_locked=True)
                .filter(is_enabled=True, connection__is_active=True)
                .filter(Q(next_run_at__isnull=True) | Q(next_run_at__lte=now))
                .order_by("next_run_at", "id")
                .first()
            )
            if policy is None:
                break
            DiscoveryPolicy.objects.filter(pk=policy.pk).update(
                next_run_at=now + timedelta(minutes=policy.interval_minutes)
            )
        discovery_run_recorded(connection=policy.connection, on_recorded=on_recorded, now=now)
        ran += 1
    return ran
