from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

from django.db import models
from psycopg import sql

from common.durations import format_duration as format_duration  # re-exported: the checks' home of it
from connections.guardrails import CheckError, QueryRunner


class Status(models.TextChoices):
    """What one check found: the status of a CheckResult (stored as its value, 'pass' ...)."""

    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"
    SKIPPED = "skipped"


@dataclass
class Outcome:
    """What one check found; becomes a CheckResult row."""

    kind: str
    status: Status
    observed_value: float | None = None
    expected_lower: float | None = None
    expected_upper: float | None = None
    message: str = ""
    queries_used: int = 0
    duration_ms: int = 0
    bucket_start: datetime | None = None
    details: dict = field(default_factory=dict)
    check_id: int | None = None
    is_anomaly: bool = False
    # Volume only: (bucket_start, value) points read from the table itself to seed the baseline.
    history: list[tuple[datetime, float]] = field(default_factory=list)


@dataclass
class CheckContext:
    """What a check may use: the guarded runner, the table, and the replica's notion of 'now'."""

    runner: QueryRunner
    table: object
    now: datetime
    data_as_of: datetime  # the replica's replay position in time: 'now' for a caught-up replica
    plan_costs: dict = field(default_factory=dict)
    update_times: list = field(default_factory=list)
    # Facts one check read that another check of the same table and run reuses (fewer queries per table).
    facts: dict = field(default_factory=dict)

    @property
    def relation(self) -> sql.Composable:
        return sql.Identifier(self.table.schema_name, self.table.table_name)


def fmt_number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.4g}"


def judge_bounds(value: float, *, low: float | None, high: float | None, what: str) -> tuple[Status, str]:
    """Pass or fail `value` against optional static bounds, with a message."""
    if low is not None and value < low:
        return Status.FAIL, f"{what} {fmt_number(value)} is below the minimum {fmt_number(low)}"
    if high is not None and value > high:
        return Status.FAIL, f"{what} {fmt_number(value)} is above the maximum {fmt_number(high)}"
    return Status.PASS, f"{what} {fmt_number(value)} is within bounds"


def format_quantity(value: float) -> str:
    """A number for people: whole numbers with thousands separators; fractions from 10 up to one decimal
    ('915.3', '7,242.8'), below 10 three significant digits ('0.125')."""
    if not math.isfinite(value):
        return str(value)
    if value == int(value):
        return f"{int(value):,}"
    if abs(value) >= 10:
        text = f"{value:,.1f}"
        return text.removesuffix(".0")
    return f"{value:.3g}"


# The catalog entry of a table: size (for volume) and columns (for schema_change, and the timestamp column's
# type). The table is found with to_regclass, which leaves its name in the session's catalog cache for the
# checks' own statements, and its columns with one scan of pg_attribute's index.
_CATALOG_COLUMNS = (
    "c.reltuples, c.relpages, c.relkind,"
    " CASE WHEN c.relkind IN ('r', 'm', 'p') THEN pg_catalog.pg_relation_size(c.oid)"
    " / current_setting('block_size')::bigint END,"
    " (SELECT json_agg(json_build_array(a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull)"
    "  ORDER BY a.attnum) FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0"
    "  AND NOT a.attisdropped),"
    " pg_catalog.has_table_privilege(c.oid, 'SELECT'),"
    # The server's cost settings, for a bound of the fixed templates' cost from the table's size (none for a table
    # whose reads hold more than its own pages: children, or row-level security's policies; nor for an unlogged
    # table, which a standby cannot read).
    " CASE WHEN NOT (c.relhassubclass OR c.relrowsecurity OR c.relpersistence <> 'p')"
    " THEN ARRAY[current_setting('seq_page_cost'), current_setting('cpu_tuple_cost'),"
    " current_setting('cpu_operator_cost')]::float8[] END"
)
# One table (a batch's fallback, and the first run of a check outside a batch).
_CATALOG = sql.SQL(
    "SELECT " + _CATALOG_COLUMNS + " FROM pg_catalog.pg_class c"
    " WHERE c.oid = pg_catalog.to_regclass(pg_catalog.quote_ident(%s) || '.' || pg_catalog.quote_ident(%s))::oid"
)
# Every table of a batch in one statement: the names come as two text arrays, numbered; one row per name, with
# whether its schema may be used (NULL: no such schema) and the table's entry (NULLs: no such table). A schema
# without USAGE is not looked into (to_regclass would raise "permission denied" and fail the whole statement).
_BATCH_CATALOG = sql.SQL(
    "SELECT n.i, n.usable, " + _CATALOG_COLUMNS + " FROM (SELECT r.s, r.t, r.i,"
    " pg_catalog.has_schema_privilege(pg_catalog.to_regnamespace(r.s)::oid, 'USAGE') AS usable"
    " FROM ROWS FROM (pg_catalog.unnest(%s::text[]), pg_catalog.unnest(%s::text[])) WITH ORDINALITY AS r(s, t, i)) n"
    " LEFT JOIN pg_catalog.pg_class c ON c.oid = CASE WHEN n.usable"
    " THEN pg_catalog.to_regclass(pg_catalog.quote_ident(n.s) || '.' || pg_catalog.quote_ident(n.t))::oid END"
)


@dataclass(frozen=True)
class Catalog:
    reltuples: float
    relpages: int
    relkind: str
    pages_now: int | None
    timestamp_type: str | None
    columns: list
    readable: bool = True
    cost_settings: tuple | None = None  # (seq_page_cost, cpu_tuple_cost, cpu_operator_cost); None: no size bound


def _catalog(table, row: tuple) -> Catalog:
    reltuples, relpages, relkind, pages_now, columns, readable, cost_settings = row
    types = {name: type_ for name, type_, _ in columns or []}
    return Catalog(
        reltuples,
        relpages,
        relkind,
        pages_now,
        timestamp_type=types.get(table.timestamp_column),
        columns=columns or [],
        readable=bool(readable),
        cost_settings=tuple(cost_settings) if cost_settings else None,
    )


def table_catalog(ctx: CheckContext) -> Catalog | None:
    """The table's catalog entry (None when it no longer exists), read once per table and run; a lookup that
    failed (a lock, a permission) fails the table's later checks with the same error without asking again."""
    if "catalog_error" in ctx.facts:
        raise CheckError(ctx.facts["catalog_error"])
    if "catalog" not in ctx.facts:
        table = ctx.table
        try:
            row = ctx.runner.fetchone(_CATALOG, (table.schema_name, table.table_name))
        except CheckError as exc:
            ctx.facts["catalog_error"] = str(exc)
            raise
        ctx.facts["catalog"] = None if row is None else _catalog(table, row)
    return ctx.facts["catalog"]


SIZE_COST_MARGIN = 3.0
MAX_TUPLES_PER_PAGE = 291  # PostgreSQL's MaxHeapTuplesPerPage (8 kB pages): a table never analyzed
OPERATORS_PER_TUPLE = 8


def size_cost_bound(ctx: CheckContext) -> float | None:
    """An upper bound of the planner's cost of any fixed template of the built-in checks on this table (a count,
    a bucket, the backfill's GROUP BY, a max), from its catalog entry and the server's cost settings, with nothing
    sent: the planner picks an index only when cheaper than scanning the table, so the cost of reading every page
    and judging every tuple (OPERATORS_PER_TUPLE operators each: the bounds, the aggregates, date_trunc) twice (the
    bucket's max() subquery), with a margin, bounds the plan. None when there is no such bound (no catalog entry,
    not a plain table or materialized view, children, row-level security): the statement is EXPLAINed."""
    catalog = ctx.facts.get("catalog")
    if catalog is None or catalog.cost_settings is None or catalog.pages_now is None:
        return None
    if catalog.relkind not in ("r", "m"):
        return None
    seq_page_cost, cpu_tuple_cost, cpu_operator_cost = catalog.cost_settings
    scan = catalog.pages_now * seq_page_cost + table_tuples(catalog) * (
        cpu_tuple_cost + OPERATORS_PER_TUPLE * cpu_operator_cost
    )
    return SIZE_COST_MARGIN * 2 * scan


def known_empty(ctx: CheckContext) -> bool:
    """The catalog statement shows the table has no rows: a readable, permanent plain table without children whose
    main fork has no page (what its statements would read is known without sending them)."""
    catalog = ctx.facts.get("catalog")
    return (
        catalog is not None
        and catalog.readable
        and catalog.cost_settings is not None
        and catalog.relkind == "r"
        and catalog.pages_now == 0
    )


def table_tuples(catalog: Catalog) -> float:
    """The table's rows now, as the planner estimates them (at most a page's worth per page if never analyzed)."""
    pages = catalog.pages_now or 0
    if catalog.relpages and catalog.reltuples is not None and catalog.reltuples >= 0:
        return catalog.reltuples / catalog.relpages * pages
    return pages * MAX_TUPLES_PER_PAGE


def catalogs_read(contexts: list[CheckContext]) -> None:
    """Read the catalog entries of every table of a batch in one statement (into each context's facts), sent on
    the first context's runner. A failure (GuardrailStop, CheckError, SessionLost) leaves the facts unset, and so
    does a schema Pulse may not use: those tables then read their own (and get the server's own error)."""
    tables = [ctx.table for ctx in contexts]
    rows = contexts[0].runner.fetch(
        _BATCH_CATALOG, ([t.schema_name for t in tables], [t.table_name for t in tables]), rows=len(tables)
    )
    for number, usable, *values in rows:
        ctx = contexts[number - 1]
        if usable is False:
            continue
        ctx.facts["catalog"] = None if usable is None or values[2] is None else _catalog(ctx.table, tuple(values))
