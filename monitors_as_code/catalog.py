"""One catalog query per connection: every table of the schemas a file names, with privileges and columns.

Kept in one function (`catalog_lookup`) so it can be unified with catalog discovery later.
"""

from __future__ import annotations

from psycopg import sql

from connections import guardrails, replica
from connections.models import Connection

CATALOG_QUERIES = 1
"""Statements `catalog_lookup` sends (the session's recovery check comes on top, as for every lookup)."""

_CATALOG = sql.SQL(
    "SELECT n.nspname, c.relname,"
    " pg_catalog.has_schema_privilege(n.oid, 'USAGE') AND pg_catalog.has_table_privilege(c.oid, 'SELECT'),"
    " pg_catalog.array_agg(a.attname::text ORDER BY a.attnum) FILTER (WHERE a.attnum IS NOT NULL),"
    " pg_catalog.array_agg(pg_catalog.format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum)"
    "  FILTER (WHERE a.attnum IS NOT NULL),"
    " pg_catalog.array_agg(a.attnotnull ORDER BY a.attnum) FILTER (WHERE a.attnum IS NOT NULL),"
    " pg_catalog.array_agg(a.attnum ORDER BY a.attnum) FILTER (WHERE a.attnum IS NOT NULL)"
    " FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    " LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped"
    " WHERE n.nspname = ANY (%s::text[]) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')"
    " GROUP BY n.oid, n.nspname, c.oid, c.relname"
)


class Catalog:
    """The tables of some schemas of one replica, as `replica.TableInfo`s."""

    def __init__(self, tables: dict[tuple[str, str], replica.TableInfo]):
        self.tables = tables

    def table(self, schema: str, name: str) -> replica.TableInfo:
        return self.tables.get((schema, name), replica.TableInfo(exists=False))

    def names_in(self, schema: str) -> list[str]:
        return sorted(name for (table_schema, name) in self.tables if table_schema == schema)


def catalog_lookup(*, connection: Connection, schemas) -> Catalog:
    """Look up every table of `schemas` in one query, in a guarded read-only lookup session.

    Raises replica.ReplicaError, guardrails.GuardrailStop, ValueError or psycopg.Error, like other lookups."""
    schemas = sorted(set(schemas))
    if not schemas:
        return Catalog({})
    with (
        guardrails.lookup_session(connection=connection, queries=CATALOG_QUERIES) as session,
        session.cursor() as cur,
    ):
        cur.execute(_CATALOG, (schemas,))
        rows = cur.fetchall()
    tables = {}
    for schema, name, readable, names, types, not_nulls, positions in rows:
        columns = tuple(
            replica.Column(name=column, type=kind, not_null=not_null, position=position)
            for column, kind, not_null, position in zip(names or (), types or (), not_nulls or (), positions or ())
        )
        tables[(schema, name)] = replica.TableInfo(exists=True, readable=bool(readable), columns=columns)
    return Catalog(tables)
