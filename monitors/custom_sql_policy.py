"""Validation of a user's custom SQL check: one read-only SELECT, read by PostgreSQL's own parser, then
looked up and planned on the replica.

Two layers, cheapest first:

- `static_problem` parses the text with pglast (libpg_query: PostgreSQL's own grammar and scanner), so
  literals, comments, escaped (U&"...") and quoted names are read exactly as the server reads them. It
  accepts one SELECT statement (WITH ... SELECT, VALUES and TABLE are SELECTs too) without INTO, locking
  clauses, data-modifying WITH or parameters, and refuses every call of a function in `DENIED_FUNCTIONS`
  by its bare name, whatever the schema and letter case.
- `replica_problem` asks the replica, in a guarded lookup session, without ever running the query: every
  called function must exist and have no volatile overload (pg_proc); the result must be one numeric
  column (described by the extended protocol's Describe); the plan must expect at most one row and stay
  under the connection's cost limit (EXPLAIN).

The session's string syntax is pinned (standard_conforming_strings=on, as the parser assumes) and user
text is always sent alone with the extended protocol, which refuses a second statement.
`composed` is the only place where user text becomes a query object.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import psycopg
from pglast import enums, parser, visitors
from psycopg import sql

from connections import guardrails, replica

MAX_LENGTH = 10_000

# Functions refused by bare name (any schema, any letter case), with the reason shown to the user. Searched in
# PostgreSQL 15's pg_proc (see the README): everything that runs SQL given as text or reads whole tables behind
# the cost guard, reaches files, takes locks, acts on other sessions, replication or the server, or touches
# settings. Most are volatile as well, but the replica's catalog is not consulted when a stored check runs.
_DENIED = {
    "it runs SQL given as text (or reads whole tables), around these rules and the cost limit": (
        {"ts_stat", "ts_rewrite", "xpath_table", "connectby"},
        ("query_to_xml", "cursor_to_xml", "table_to_xml", "schema_to_xml", "database_to_xml", "dblink",
         "crosstab", "pg_background"),
    ),
    "it reads or writes files or large objects on the server": (
        {"pg_read_file", "pg_read_file_old", "pg_read_binary_file", "pg_stat_file", "pg_current_logfile",
         "pg_logdir_ls", "loread", "lowrite"},
        ("pg_ls_", "pg_file_", "lo_"),
    ),
    "it takes or releases locks": (set(), ("pg_advisory_", "pg_try_advisory_")),
    "it acts on other sessions, replication or the server": (
        {"pg_cancel_backend", "pg_terminate_backend", "pg_notify", "pg_log_backend_memory_contexts",
         "pg_stat_statements_reset", "pg_promote", "pg_switch_wal", "pg_backup_start", "pg_backup_stop",
         "pg_start_backup", "pg_stop_backup", "pg_export_snapshot", "pg_import_system_collations",
         "pg_rotate_logfile", "pg_rotate_logfile_old", "pg_drop_replication_slot", "pg_replication_slot_advance",
         "nextval", "setval", "txid_current", "pg_current_xact_id"},
        ("pg_stat_reset", "pg_wal_replay_", "pg_create_", "pg_copy_", "pg_replication_origin_", "pg_logical_"),
    ),
    "it reads or changes server settings": (
        {"set_config", "current_setting", "pg_show_all_settings", "pg_show_all_file_settings",
         "pg_settings_get_flags", "pg_hba_file_rules", "pg_ident_file_mappings", "pg_config", "pg_reload_conf"},
        (),
    ),
}  # fmt: skip

_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_WRITES = {"InsertStmt": "INSERT", "UpdateStmt": "UPDATE", "DeleteStmt": "DELETE", "MergeStmt": "MERGE"}
_STATEMENTS = {"VariableSetStmt": "SET", "VariableShowStmt": "SHOW", "TransactionStmt": "BEGIN/COMMIT", "DoStmt": "DO"}
_LOCKING = {
    enums.LockClauseStrength.LCS_FORKEYSHARE: "FOR KEY SHARE",
    enums.LockClauseStrength.LCS_FORSHARE: "FOR SHARE",
    enums.LockClauseStrength.LCS_FORNOKEYUPDATE: "FOR NO KEY UPDATE",
    enums.LockClauseStrength.LCS_FORUPDATE: "FOR UPDATE",
}
_NUMERIC_TYPES = {21: "smallint", 23: "integer", 20: "bigint", 700: "real", 701: "double precision", 1700: "numeric"}
_INSTEAD = {"clock_timestamp": "now()", "timeofday": "now()"}


def denied_reason(name: str) -> str | None:
    """Why a function of this bare name may never be called from custom SQL, or None."""
    name = name.lower()
    for reason, (names, prefixes) in _DENIED.items():
        if name in names or name.startswith(prefixes):
            return reason
    return None


@dataclass(frozen=True)
class Function:
    """A function called by name: `schema` is None when the search path decides."""

    schema: str | None
    name: str

    @property
    def shown(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name


class _Reading(visitors.Visitor):
    """Walks the whole parse tree: the first refused construct, and every function called by name."""

    def __init__(self):
        super().__init__()
        self.problem: str | None = None
        self.functions: list[Function] = []

    def refuse(self, problem: str) -> None:
        self.problem = self.problem or problem

    def visit(self, ancestors, node):
        name = type(node).__name__
        if name in _WRITES:
            self.refuse(f"{_WRITES[name]} is not allowed: custom SQL may only read (no data-modifying WITH)")
        elif name.endswith("Stmt") and name != "SelectStmt":
            what = _STATEMENTS.get(name, name.removesuffix("Stmt").upper())
            self.refuse(f"{what} is not allowed: custom SQL must be one SELECT (or WITH ... SELECT) statement")

    def visit_SelectStmt(self, ancestors, node):
        if node.intoClause is not None:
            self.refuse("SELECT ... INTO is not allowed: custom SQL may only read")

    def visit_LockingClause(self, ancestors, node):
        self.refuse(f"locking clauses ({_LOCKING.get(node.strength, 'FOR UPDATE')} ...) are not allowed: "
                    "custom SQL must not lock rows")  # fmt: skip

    def visit_ParamRef(self, ancestors, node):
        self.refuse("parameters ($1, ...) are not supported: write the values into the query")

    def visit_FuncCall(self, ancestors, node):
        names = [part.sval for part in node.funcname]
        function = Function(schema=names[-2] if len(names) > 1 else None, name=names[-1])
        self.functions.append(function)
        reason = denied_reason(function.name)
        if reason:
            self.refuse(f"{function.name.lower()}() is not allowed: {reason}")


@dataclass(frozen=True)
class Reading:
    """The statement as PostgreSQL's parser read it."""

    problem: str | None = None
    statement: str = ""  # the one statement's text, without a trailing ";" or comments after it
    functions: tuple[Function, ...] = ()


def read(sql_text) -> Reading:
    """Parse `sql_text` with PostgreSQL's grammar; a Reading with `problem` set when it is not acceptable."""
    if not isinstance(sql_text, str):
        return Reading(problem="the SQL must be text")
    if len(sql_text) > MAX_LENGTH:
        return Reading(problem=f"the SQL must be at most {MAX_LENGTH:,} characters (it has {len(sql_text):,})")
    if _CONTROL_CHARACTERS.search(sql_text):
        return Reading(problem="the SQL must not contain control characters (other than tabs and line breaks)")
    try:
        statements = parser.parse_sql(sql_text)
    except parser.ParseError as exc:
        return Reading(problem=f"PostgreSQL cannot parse this query: {exc.args[0]}")
    if not statements:
        return Reading(problem="the SQL must not be empty")
    if len(statements) > 1:
        return Reading(problem='only one statement is allowed: remove the "; chain" (a single trailing ";" is fine)')
    raw = statements[0]
    reading = _Reading()
    reading(raw.stmt)
    if reading.problem:
        return Reading(problem=reading.problem)
    encoded = sql_text.encode()  # the parser counts bytes of UTF-8
    end = raw.stmt_location + raw.stmt_len if raw.stmt_len else len(encoded)
    statement = encoded[raw.stmt_location : end].decode().strip()
    return Reading(statement=statement, functions=tuple(dict.fromkeys(reading.functions)))


def static_problem(sql_text) -> str | None:
    """A message saying why `sql_text` is not an acceptable custom check, or None when it may be."""
    return read(sql_text).problem


def composed(sql_text: str) -> sql.Composable:
    """The query object for a custom check's SQL: its one statement as PostgreSQL's parser delimited it.

    This is the single exception to Pulse's rule that every query is built from fixed templates with
    `sql.Identifier`/`sql.Literal`: the user's text is used as is. It refuses (ValueError) text that
    `static_problem` refuses. Run it without parameters (psycopg would read a "%" as a placeholder), with
    the extended protocol (QueryRunner.fetch_user does), so the server never sees a second statement.
    """
    reading = read(sql_text)
    if reading.problem:
        raise ValueError(f"refused custom SQL: {reading.problem}")
    return sql.SQL(reading.statement)


# --- on the replica -------------------------------------------------------------------------------------

REPLICA_QUERIES = 3
"""Statements `replica_problem` counts: the function lookup, the Describe and the EXPLAIN."""

_FUNCTION_LOOKUP = sql.SQL(
    "SELECT c.ord, pg_catalog.count(p.oid),"
    " pg_catalog.string_agg(p.oid::pg_catalog.regprocedure::text, ', ' ORDER BY p.oid)"
    "  FILTER (WHERE p.provolatile = 'v')"
    " FROM ROWS FROM (pg_catalog.unnest(%s::text[]), pg_catalog.unnest(%s::text[]))"
    "  WITH ORDINALITY AS c(schema_name, function_name, ord)"
    " LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = c.schema_name"
    "  OR (c.schema_name IS NULL AND n.nspname = ANY (pg_catalog.current_schemas(true)))"
    " LEFT JOIN pg_catalog.pg_proc p ON p.pronamespace = n.oid AND p.proname = c.function_name"
    " GROUP BY c.ord ORDER BY c.ord"
)


class _Refused(Exception):
    """A problem found on the replica; the message is shown to the user."""


def _postgres_message(exc: psycopg.Error) -> str:
    """PostgreSQL's message and hint, without the LINE excerpt (which would show Pulse's wrapper)."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None)
    if not primary:
        return replica.describe_error(exc)
    hint = getattr(diag, "message_hint", None)
    return replica.describe_error(psycopg.Error(f"{primary} (hint: {hint})" if hint else primary))


def _volatile_message(function: Function, signatures: str) -> str:
    name = function.name.lower()
    advice = "a check may only call immutable or stable functions (the same answer for the same data)"
    if _INSTEAD.get(name):
        advice += f"; use {_INSTEAD[name]} instead"
    return f"{function.shown}() is volatile on this replica ({signatures}): {advice}"


def _check_functions(session: psycopg.Connection, functions: tuple[Function, ...]) -> None:
    with session.cursor() as cur:
        cur.execute(_FUNCTION_LOOKUP, ([f.schema for f in functions], [f.name for f in functions]))
        found = cur.fetchall()
    for function, (_, overloads, volatile) in zip(functions, found, strict=True):
        if not overloads:
            raise _Refused(f"function {function.shown}() does not exist on this replica")
        if volatile:
            raise _Refused(_volatile_message(function, volatile))


def _raise_for(result, session: psycopg.Connection) -> None:
    if result.status != psycopg.pq.ExecStatus.COMMAND_OK:
        raise psycopg.errors.error_from_result(result, encoding=session.info.encoding)


def _check_columns(session: psycopg.Connection, query: sql.Composable) -> None:
    """Describe the query's result (Parse and Describe of the extended protocol: nothing runs)."""
    pgconn = session.pgconn
    _raise_for(pgconn.prepare(b"", query.as_bytes(session)), session)
    described = pgconn.describe_prepared(b"")
    _raise_for(described, session)
    types = [described.ftype(i) for i in range(described.nfields)]
    if len(types) != 1:
        raise _Refused(f"the query returns {len(types)} columns: a check must return exactly one numeric column")
    if types[0] not in _NUMERIC_TYPES:
        info = session.adapters.types.get(types[0])
        shown = info.name if info else f"type {types[0]}"
        raise _Refused(f"the query returns {shown}, not a number: a check must return one numeric column")


def _check_plan(session: psycopg.Connection, query: sql.Composable, *, max_cost: float) -> None:
    with session.cursor() as cur:
        cur.execute(sql.SQL("EXPLAIN (FORMAT JSON) ") + query, binary=True)
        plan = cur.fetchone()[0][0]["Plan"]
    rows, cost = float(plan["Plan Rows"]), float(plan["Total Cost"])
    if rows > 1:
        raise _Refused(
            f"the planner expects {rows:,.0f} rows: a check must return one row, so aggregate it "
            "(count(*), sum(...), max(...)) or add LIMIT 1"
        )
    if cost > max_cost:
        raise _Refused(f"estimated cost {cost:,.0f} exceeds this connection's limit of {max_cost:,.0f}")


def replica_problem(*, connection, sql_text: str) -> str | None:
    """Check the query on `connection`'s replica without running it; a message if it is refused."""
    reading = read(sql_text)
    if reading.problem:
        return reading.problem
    query = composed(sql_text)
    timeout_ms = connection.statement_timeout_ms
    try:
        with guardrails.lookup_session(connection=connection, queries=REPLICA_QUERIES) as session:
            steps = (
                lambda: session.execute(guardrails.session_limits(connection=connection)),
                lambda: _check_functions(session, reading.functions),
                lambda: _check_columns(session, query),
                lambda: _check_plan(session, query, max_cost=connection.max_query_cost),
            )
            for step in steps:
                with guardrails.statement_deadline(session, timeout_ms=timeout_ms) as deadline:
                    try:
                        step()
                    except psycopg.Error:
                        if deadline.expired:
                            return f"PostgreSQL cannot plan this query: timed out after {timeout_ms} ms"
                        raise
    except _Refused as refused:
        return str(refused)
    except (replica.ReplicaError, guardrails.GuardrailStop, ValueError) as exc:
        return f'cannot check the SQL on connection "{connection.name}": {exc}'
    except psycopg.Error as exc:  # syntax errors, unknown relations, permissions, timeouts: never a 500
        return f"PostgreSQL cannot plan this query: {_postgres_message(exc)}"
    return None
