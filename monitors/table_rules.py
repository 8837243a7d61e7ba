"""Checks a monitored table's names against the replica's catalog before it is saved."""

from connections import guardrails, replica
from connections.models import Connection

# Changing any of these means the replica's catalog is consulted again before saving.
CATALOG_FIELDS = ("connection", "schema_name", "table_name", "timestamp_column")


def table_identifier_problems(*, schema_name: str, table_name: str, timestamp_column: str) -> dict:
    """{field: message} for names that cannot be PostgreSQL identifiers (nothing is looked up)."""
    problems = {}
    for field, value, what in (
        ("schema_name", schema_name, "schema name"),
        ("table_name", table_name, "table name"),
        ("timestamp_column", timestamp_column, "timestamp column"),
    ):
        if field == "timestamp_column" and not value:
            continue
        error = replica.validate_identifier(value, what=what)
        if error:
            problems[field] = error
    return problems


def table_catalog_problems(
    *, info: replica.TableInfo, connection: Connection, schema_name: str, table_name: str, timestamp_column: str
) -> dict:
    """{field: message} for what the replica's catalog (`info`, the table as looked up) says is wrong."""
    qualified = f"{schema_name}.{table_name}"
    if not info.exists:
        return {"table_name": f'table "{qualified}" not found on connection "{connection.name}"'}
    if not info.readable:
        return {
            "table_name": f'table "{qualified}" is not readable by user "{connection.username}" '
            f'on connection "{connection.name}"'
        }
    problems = {}
    if timestamp_column:
        column = info.column(timestamp_column)
        if column is None:
            problems["timestamp_column"] = f'column "{timestamp_column}" not found in table "{qualified}"'
        elif column.type not in replica.TIMESTAMP_TYPES:
            problems["timestamp_column"] = (
                f'column "{timestamp_column}" of "{qualified}" is of type {column.type}, not a date or timestamp type'
            )
    return problems


def table_problems(*, connection: Connection, schema_name: str, table_name: str, timestamp_column: str) -> dict:
    """Return {field: message} for what is wrong with a table definition; empty when it is fine."""
    problems = table_identifier_problems(
        schema_name=schema_name, table_name=table_name, timestamp_column=timestamp_column
    )
    if problems:
        return problems
    qualified = f"{schema_name}.{table_name}"
    try:
        with guardrails.lookup_session(connection=connection, queries=replica.DESCRIBE_TABLE_QUERIES) as session:
            info = replica.describe_table(session, schema=schema_name, table=table_name)
    except (replica.ReplicaError, guardrails.GuardrailStop, ValueError) as exc:
        return {"connection": f'cannot look up "{qualified}" on connection "{connection.name}": {exc}'}
    except Exception as exc:  # any psycopg failure is reported, never a 500
        return {
            "connection": f'cannot look up "{qualified}" on connection "{connection.name}": '
            f"{replica.describe_error(exc)}"
        }
    return table_catalog_problems(
        info=info,
        connection=connection,
        schema_name=schema_name,
        table_name=table_name,
        timestamp_column=timestamp_column,
    )
