"""The rules of a configurable check (null_rate, row_count, custom_sql), shared by the REST API and the admin."""

from __future__ import annotations

import math

import psycopg

from connections import guardrails, replica
from monitors import checks, custom_sql_policy
from monitors.models import Check

CONFIGURABLE_KINDS = tuple(checks.CONFIGURABLE)
AUTOMATIC_KINDS = tuple(kind for kind in checks.KINDS if kind not in checks.CONFIGURABLE)


def kind_problem(kind) -> str | None:
    if kind in CONFIGURABLE_KINDS:
        return None
    if kind in AUTOMATIC_KINDS:
        return (
            f'"{kind}" checks are automatic (Pulse runs them on every monitored table); '
            f"configurable kinds are {', '.join(CONFIGURABLE_KINDS)}"
        )
    return f'"{kind}" is not a kind of check; use one of {", ".join(CONFIGURABLE_KINDS)}'


def _finite_problems(min_value, max_value) -> dict[str, str]:
    return {
        field: "must be a finite number (not NaN or Infinity)"
        for field, value in (("min_value", min_value), ("max_value", max_value))
        if value is not None and not math.isfinite(value)
    }


def _order_problem(min_value, max_value) -> dict[str, str]:
    if min_value is not None and max_value is not None and min_value > max_value:
        return {"min_value": f"min_value ({min_value:g}) must not exceed max_value ({max_value:g})"}
    return {}


def _bounds_required(kind: str, min_value, max_value) -> dict[str, str]:
    if min_value is None and max_value is None:
        message = f"{kind} checks need min_value, max_value or both"
        return {"min_value": message, "max_value": message}
    return {}


def _null_rate_problems(*, column, sql_text, min_value, max_value) -> dict[str, str]:
    problems = {}
    if not column:
        problems["column"] = "null_rate checks need a column"
    else:
        problem = replica.validate_identifier(column, what="column")
        if problem:
            problems["column"] = problem
    if sql_text:
        problems["sql"] = "only custom_sql checks take sql"
    if max_value is None:
        problems["max_value"] = "null_rate checks need max_value, the largest acceptable fraction of NULLs (0 to 1)"
    for field, value in (("min_value", min_value), ("max_value", max_value)):
        if value is not None and not 0 <= value <= 1:
            problems[field] = "must be a fraction between 0 and 1"
    return problems or _order_problem(min_value, max_value)


def _row_count_problems(*, column, sql_text, min_value, max_value) -> dict[str, str]:
    problems = _bounds_required("row_count", min_value, max_value)
    if column:
        problems["column"] = "only null_rate checks take a column"
    if sql_text:
        problems["sql"] = "only custom_sql checks take sql"
    for field, value in (("min_value", min_value), ("max_value", max_value)):
        if value is not None and value < 0:
            problems[field] = "a row count cannot be negative"
    return problems or _order_problem(min_value, max_value)


def _custom_sql_problems(*, column, sql_text, min_value, max_value) -> dict[str, str]:
    problems = _bounds_required("custom_sql", min_value, max_value)
    if column:
        problems["column"] = "only null_rate checks take a column"
    if not sql_text:
        problems["sql"] = "custom_sql checks need sql: one SELECT returning one number"
    else:
        problem = custom_sql_policy.static_problem(sql_text)
        if problem:
            problems["sql"] = problem
    return problems or _order_problem(min_value, max_value)


_STATIC_RULES = {
    Check.Kind.NULL_RATE: _null_rate_problems,
    Check.Kind.ROW_COUNT: _row_count_problems,
    Check.Kind.CUSTOM_SQL: _custom_sql_problems,
}


def column_problem(*, table, column: str, table_info: replica.TableInfo | None = None) -> str | None:
    """Look the column up in the replica's catalog (or in `table_info`, the table as already looked up);
    a message if it cannot be found."""
    connection = table.connection
    if table_info is not None:
        return _column_in(table_info, table=table, column=column)
    try:
        with guardrails.lookup_session(connection=connection, queries=replica.DESCRIBE_TABLE_QUERIES) as session:
            info = replica.describe_table(session, schema=table.schema_name, table=table.table_name)
    except (replica.ReplicaError, guardrails.GuardrailStop, ValueError) as exc:
        return f'cannot look up column "{column}" on connection "{connection.name}": {exc}'
    except psycopg.Error as exc:
        return f'cannot look up column "{column}" on connection "{connection.name}": {replica.describe_error(exc)}'
    return _column_in(info, table=table, column=column)


def _column_in(info: replica.TableInfo, *, table, column: str) -> str | None:
    connection = table.connection
    if not info.exists:
        return f'table "{table.qualified_name}" not found on connection "{connection.name}"'
    if info.column(column) is None:
        return f'column "{column}" not found in table "{table.qualified_name}"'
    return None


def check_problems(
    *,
    table,
    kind,
    column,
    sql_text,
    min_value,
    max_value,
    consult_replica: bool = True,
    table_info: replica.TableInfo | None = None,
) -> dict[str, str]:
    """Return {field: message} for what is wrong with a check; empty when it is fine.

    The static rules run first; only when they pass, and `consult_replica` is set, is the replica asked
    (null_rate: does the column exist; custom_sql: its functions in pg_proc, its result shape, EXPLAIN rows and cost).
    `table_info`: the table as already looked up in the catalog (a batched lookup), used for the column.
    """
    problem = kind_problem(kind)
    if problem:
        return {"kind": problem}
    column = column or ""
    sql_text = sql_text or ""
    problems = _finite_problems(min_value, max_value)
    if problems:
        return problems
    problems = _STATIC_RULES[kind](column=column, sql_text=sql_text, min_value=min_value, max_value=max_value)
    if problems or not consult_replica:
        return problems
    if kind == Check.Kind.NULL_RATE:
        problem = column_problem(table=table, column=column, table_info=table_info)
        return {"column": problem} if problem else {}
    if kind == Check.Kind.CUSTOM_SQL:
        problem = custom_sql_policy.replica_problem(connection=table.connection, sql_text=sql_text)
        return {"sql": problem} if problem else {}
    return {}
