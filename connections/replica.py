"""Read-only sessions on customers' replicas: the only way Pulse talks to a customer database."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from psycopg import sql

from connections import targets

CONNECT_TIMEOUT_SECONDS = 5
APPLICATION_NAME = "pulse"
TIMESTAMP_TYPES = ("date", "timestamp without time zone", "timestamp with time zone")


class ReplicaError(Exception):
    """A replica could not be reached or refused a query; the message is safe to show and store."""


def lock_timeout_ms(statement_timeout_ms: int) -> int:
    """Lock waits give up at half the statement timeout."""
    return max(50, statement_timeout_ms // 2)


def session_settings(*, statement_timeout_ms: int) -> dict[str, str]:
    """Server settings of every Pulse session: read-only by default, every wait bounded, strings read
    the standard way (as Pulse's SQL parser reads them), UTC. Set at connect and re-applied before user SQL."""
    return {
        "default_transaction_read_only": "on",
        "statement_timeout": str(int(statement_timeout_ms)),
        "lock_timeout": str(int(lock_timeout_ms(statement_timeout_ms))),
        "idle_in_transaction_session_timeout": str(int(max(10_000, statement_timeout_ms * 2))),
        "standard_conforming_strings": "on",
        "TimeZone": "UTC",
    }


def session_options(*, statement_timeout_ms: int) -> str:
    """The settings above as libpq connection options (they override the server's and the role's defaults)."""
    settings = session_settings(statement_timeout_ms=statement_timeout_ms)
    return " ".join(f"-c {name}={value}" for name, value in settings.items())


def one_line(text: str) -> str:
    """Join a multi-line libpq message into one line that still reads as sentences.

    libpq puts a new sentence on a new line without a full stop ("Connection refused\n\tIs the server
    running…") and wraps long sentences ("terminated abnormally\n\tbefore or while…"): a line that starts
    with a capital letter after one that ends without punctuation begins a sentence, so it gets a full stop;
    any other line break is a space.
    """
    lines = [" ".join(line.split()) for line in text.splitlines()]
    joined = ""
    for line in filter(None, lines):
        if joined and line[0].isupper() and joined[-1] not in ".!?:;,":
            joined += "."
        joined = f"{joined} {line}" if joined else line
    return joined


def describe_error(exc: BaseException) -> str:
    """A one-line message for a psycopg error; libpq never echoes the password, and neither do we."""
    text = one_line(str(exc)) or exc.__class__.__name__
    text = re.sub(r'^connection failed: connection to server at "[^"]*"(, port \d+)? failed: ', "", text)
    return text[:500]


# What a failed connect means, from libpq's message (connect errors carry no SQLSTATE). The far side's own
# words are never shown: a tenant could otherwise tell an HTTP server, an SSH banner or any other service apart
# (a port scanner), or read what it answered. The first pattern found in the message gives the category;
# messages name only what the tenant gave (user, database).
_CONNECT_FAILURES = (
    (r"connection refused", "connection refused"),
    (r"timeout expired|timed out", "timed out"),
    (r"no route to host|network is unreachable|host is unreachable", "host unreachable"),
    (r"password authentication failed", 'password authentication failed for user "{user}"'),
    (r"no password supplied", 'authentication failed for user "{user}": the server asks for a password'),
    (
        r"authentication method requirement",
        "authentication failed: the server asked for a method Pulse does not use (only password, md5, SCRAM)",
    ),
    (
        r"no pg_hba\.conf entry",
        'authentication failed: no pg_hba.conf entry lets user "{user}" in from Pulse (TLS may be required)',
    ),
    (r'authentication failed|role "[^"]*" does not exist', 'authentication failed for user "{user}"'),
    (r'database "[^"]*" does not exist', 'database "{dbname}" does not exist'),
    (r"not currently accepting connections", 'database "{dbname}" does not accept connections now'),
    (r"permission denied for database|connect privilege", 'no CONNECT privilege on database "{dbname}"'),
    (r"ssl was required|does not support ssl", "TLS required: the server does not offer TLS"),
    (r"certificate", "TLS failed: the server's certificate could not be verified"),
    (r"too many connections|connection slots are reserved", "the server has too many connections"),
    (
        r"starting up|shutting down|not yet accepting connections|in recovery mode",
        "the server is starting up, shutting down or not yet accepting connections",
    ),
)
NOT_POSTGRESQL = "the server did not complete a PostgreSQL handshake (not a PostgreSQL server, or TLS failed)"


def describe_connect_error(exc: BaseException, *, conninfo: dict) -> str:
    """The category of a failed connect; never any text the far side sent."""
    text = str(exc).lower()
    for pattern, message in _CONNECT_FAILURES:
        if re.search(pattern, text):
            return message.format(user=conninfo.get("user", ""), dbname=conninfo.get("dbname", ""))
    return NOT_POSTGRESQL


def connect(*, conninfo: dict, statement_timeout_ms: int) -> psycopg.Connection:
    """Open a read-only session on a vetted target: every statement runs in a read-only transaction.

    The target policy (`connections/targets.py`) is checked here, at every connect: the host is resolved once,
    every address is vetted, and libpq connects to the vetted address (`hostaddr`; `host` stays for TLS).
    """
    try:
        params = targets.vetted_conninfo(conninfo)
    except targets.TargetRefused as exc:
        raise ReplicaError(f"cannot connect: {exc}") from None
    try:
        conn = psycopg.connect(
            **params,
            application_name=APPLICATION_NAME,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            options=session_options(statement_timeout_ms=statement_timeout_ms),
        )
    except psycopg.Error as exc:
        raise ReplicaError(f"cannot connect: {describe_connect_error(exc, conninfo=params)}") from None
    # Single statements run in autocommit: with default_transaction_read_only=on each one is its own
    # read-only transaction, in one round trip. Explicit transactions (`conn.transaction()`) begin READ ONLY.
    conn.autocommit = True
    conn.read_only = True
    return conn


@contextmanager
def open_session(*, conninfo: dict, statement_timeout_ms: int) -> Iterator[psycopg.Connection]:
    conn = connect(conninfo=conninfo, statement_timeout_ms=statement_timeout_ms)
    try:
        yield conn
    finally:
        conn.close()


def is_in_recovery(session: psycopg.Connection) -> bool:
    with session.transaction(), session.cursor() as cur:
        cur.execute(sql.SQL("SELECT pg_is_in_recovery()"))
        return bool(cur.fetchone()[0])


NOT_A_REPLICA = "server is not a read replica (pg_is_in_recovery() is false); Pulse only connects to replicas"


@contextmanager
def session_for(connection) -> Iterator[psycopg.Connection]:
    """A read-only session on a `connections.Connection`; refuses a server that is no longer a replica."""
    with open_session(conninfo=connection.conninfo(), statement_timeout_ms=connection.statement_timeout_ms) as session:
        try:
            in_recovery = is_in_recovery(session)
        except psycopg.Error as exc:
            raise ReplicaError(describe_error(exc)) from None
        if connection.require_replica and not in_recovery:
            raise ReplicaError(NOT_A_REPLICA)
        yield session


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    in_recovery: bool | None = None
    server_version: str | None = None
    error: str | None = None


def probe(*, conninfo: dict, statement_timeout_ms: int = 5000, require_replica: bool = True) -> ProbeResult:
    """Connect once and report whether the target is reachable and a hot standby."""
    try:
        with (
            open_session(conninfo=conninfo, statement_timeout_ms=statement_timeout_ms) as session,
            session.transaction(),
            session.cursor() as cur,
        ):
            cur.execute(sql.SQL("SELECT pg_is_in_recovery(), current_setting('server_version')"))
            in_recovery, version = cur.fetchone()
    except ReplicaError as exc:
        return ProbeResult(ok=False, error=str(exc))
    except psycopg.Error as exc:
        return ProbeResult(ok=False, error=describe_error(exc))
    if require_replica and not in_recovery:
        return ProbeResult(
            ok=False,
            in_recovery=False,
            server_version=version,
            error=NOT_A_REPLICA,
        )
    return ProbeResult(ok=True, in_recovery=bool(in_recovery), server_version=version)


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    not_null: bool
    position: int


@dataclass(frozen=True)
class TableInfo:
    exists: bool
    readable: bool = False
    columns: tuple[Column, ...] = ()

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)


_TABLE_LOOKUP = sql.SQL(
    "SELECT c.oid, has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(c.oid, 'SELECT')"
    " FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f')"
)
_COLUMNS_LOOKUP = sql.SQL(
    "SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attnum"
    " FROM pg_catalog.pg_attribute a WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped"
    " ORDER BY a.attnum"
)


DESCRIBE_TABLE_QUERIES = 2
"""Statements `describe_table` sends: the table lookup, then its columns."""


def describe_table(session: psycopg.Connection, *, schema: str, table: str) -> TableInfo:
    """Look a table up in the replica's catalog: existence, SELECT privilege and columns."""
    with session.transaction(), session.cursor() as cur:
        cur.execute(_TABLE_LOOKUP, (schema, table))
        row = cur.fetchone()
        if row is None:
            return TableInfo(exists=False)
        oid, readable = row
        cur.execute(_COLUMNS_LOOKUP, (oid,))
        columns = tuple(Column(name=r[0], type=r[1], not_null=r[2], position=r[3]) for r in cur.fetchall())
    return TableInfo(exists=True, readable=bool(readable), columns=columns)


def validate_identifier(value: str, *, what: str) -> str | None:
    """Return an error message if `value` cannot be a PostgreSQL identifier, else None."""
    if not value:
        return f"{what} must not be empty"
    if len(value.encode()) > 63:
        return f"{what} must be at most 63 bytes (PostgreSQL's identifier limit)"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        return f"{what} must not contain control characters"
    return None
