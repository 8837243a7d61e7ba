"""Validation of a user's custom SQL check: one read-only SELECT, refused statically, then planned on the replica.

Two layers, cheapest first:

- `static_problem` reads the text with sqlparse's tokenizer, so string literals, quoted identifiers and comments
  are never mistaken for keywords or semicolons. Because a mismatch between sqlparse's reading and PostgreSQL's
  could hide a `;` from us, every construct the two might split differently (a backslash before a quote,
  nested comments, `#` comments, `$` outside a dollar-quoted string, non-ASCII outside literals, ...) is refused.
- `replica_problem` asks the replica to plan the query with EXPLAIN (never running it) in a read-only session:
  syntax errors, unknown tables or columns, missing privileges and queries over the cost limit are refused.

`composed` is the only place where user text becomes a query object.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import psycopg
from psycopg import sql
from sqlparse import lexer
from sqlparse import tokens as T

from connections import guardrails, replica

MAX_LENGTH = 10_000

# Words that write, change the schema or the session, or run utility commands: refused anywhere as keywords
# (never inside string literals, comments or "quoted identifiers"). Data-modifying CTEs are refused this way.
REFUSED_KEYWORDS = frozenset(
    {
        *("INSERT", "UPDATE", "DELETE", "MERGE", "TRUNCATE", "INTO"),  # write data
        *("CREATE", "ALTER", "DROP", "GRANT", "REVOKE", "COMMENT", "SECURITY", "IMPORT"),  # change the schema
        *("COPY", "CALL", "DO", "EXECUTE", "PREPARE"),  # run other code
        *("LOCK", "SET", "RESET", "DISCARD", "LISTEN", "NOTIFY"),  # change the session or signal
        *("VACUUM", "ANALYZE", "ANALYSE", "REFRESH", "CLUSTER", "REINDEX"),  # maintenance
    }
)

# FOR followed by one of these starts a row-locking clause (FOR UPDATE, FOR NO KEY UPDATE, FOR SHARE, FOR KEY SHARE).
LOCKING_WORDS_AFTER_FOR = frozenset({"UPDATE", "SHARE", "NO", "KEY"})
_LOCKING_STARTS = frozenset(("word", word) for word in LOCKING_WORDS_AFTER_FOR)

# Server administration, side effects, and functions that run SQL given as a string (which would bypass these rules).
# pg_sleep is allowed: the session's statement timeout bounds it.
REFUSED_FUNCTIONS = frozenset(
    {
        "pg_terminate_backend",
        "pg_cancel_backend",
        "pg_reload_conf",
        "pg_rotate_logfile",
        "pg_promote",
        "set_config",
        "pg_read_file",
        "pg_read_binary_file",
        "pg_ls_dir",
        "pg_stat_file",
        "nextval",
        "setval",
        "pg_notify",
        "loread",
        "lowrite",
        "query_to_xml",
        "query_to_xmlschema",
        "query_to_xml_and_xmlschema",
        "cursor_to_xml",
        "cursor_to_xmlschema",
        "pg_switch_wal",
        "pg_create_restore_point",
        "pg_logical_emit_message",
        "pg_log_backend_memory_contexts",
        "pg_backup_start",
        "pg_backup_stop",
        "pg_start_backup",
        "pg_stop_backup",
        "pg_import_system_collations",
        "pg_replication_slot_advance",
        "pg_drop_replication_slot",
        "pg_create_physical_replication_slot",
        "pg_create_logical_replication_slot",
        "pg_copy_physical_replication_slot",
        "pg_copy_logical_replication_slot",
    }
)
REFUSED_FUNCTION_PREFIXES = (
    "pg_advisory_",
    "pg_try_advisory_",
    "dblink",
    "lo_",
    "pg_wal_replay_",
    "pg_stat_reset",
    "pg_file_",
    "pg_ls_",
)

# Outside literals and comments, only printable ASCII and tab/newline/CR: PostgreSQL reads any non-ASCII byte as
# part of an identifier, while sqlparse may read it as whitespace, which could shift where a literal starts.
_CODE_CHARACTERS = re.compile(r"[\x20-\x7e\t\n\r]*")
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_WORD_OR_CHARACTER = re.compile(r"(?P<word>[A-Za-z_][A-Za-z0-9_]*)|(?P<char>\S)")
_TIME_ZONE_CAST = re.compile(r"(AT\s+TIME\s+ZONE\s+)('[^'\\]*')", re.IGNORECASE)


def normalized(sql_text: str) -> str:
    """The text without surrounding whitespace and without one trailing semicolon."""
    text = sql_text.strip()
    if text.endswith(";"):
        text = text[:-1].rstrip()
    return text


@dataclass(frozen=True)
class _Unit:
    """One significant piece of the query: a word (upper-cased), a "quoted" name, a literal, or a character."""

    kind: str  # "word", "quoted", "literal" or "char"
    text: str


def _is_block_comment(ttype, value: str) -> bool:
    return ttype in T.Comment and value.startswith("/*")


def _is_line_comment(ttype, value: str) -> bool:
    return ttype in T.Comment and value.startswith("--")


def _token_problem(ttype, value: str) -> str | None:
    """Refuse a literal, quoted name or comment that PostgreSQL might delimit differently from sqlparse."""
    if ttype in T.String.Single:
        if "\\'" in value:
            return "a backslash before a quote in a string literal is ambiguous; write a quote as ''"
    elif ttype in T.String.Symbol:
        if "\\" in value:
            return "a backslash in a quoted identifier is ambiguous"
    elif ttype in T.Comment:
        if _is_block_comment(ttype, value):
            body = value[2:-2]
            if "/*" in body or "*/" in body:
                return "nested /* comments */ are not allowed"
        elif not _is_line_comment(ttype, value):
            return '"#" followed by a space is ambiguous (a comment in some dialects, an operator in PostgreSQL)'
    elif ttype is T.Keyword.TZCast and not _TIME_ZONE_CAST.fullmatch(value):
        return "ambiguous AT TIME ZONE literal"
    return None


def _is_hidden_text(ttype) -> bool:
    """Tokens whose content is data, not SQL: literals, quoted names and comments."""
    return (
        ttype in T.String.Single
        or ttype in T.String.Symbol
        or ttype is T.Literal  # dollar-quoted string
        or ttype in T.Comment
        or ttype is T.Keyword.TZCast
    )


def _code_problem(code: str) -> str | None:
    """Refuse characters outside literals and comments that could open or close one for PostgreSQL."""
    if not _CODE_CHARACTERS.fullmatch(code):
        return "only ASCII characters are allowed outside string literals, quoted identifiers and comments"
    for fragment, what in (
        ("'", "an unterminated string literal"),
        ('"', "an unterminated quoted identifier"),
        ("$", '"$" outside a dollar-quoted string (parameters and identifiers with "$" are not supported)'),
        ("`", "a backquote"),
        ("\\", "a backslash outside a string literal"),
        ("--", 'a "--" comment inside an operator'),
        ("/*", 'a "/*" comment inside an operator, or an unterminated comment'),
    ):
        if fragment in code:
            return f"the SQL contains {what}"
    return None


def _tokenize(text: str) -> tuple[list[_Unit], str | None]:
    """Split `text` into significant units, or return the problem that prevents a trustworthy reading."""
    pieces = list(lexer.tokenize(text))
    if "".join(value for _, value in pieces) != text:
        return [], "the SQL could not be read unambiguously"
    units: list[_Unit] = []
    code_parts: list[str] = []
    for ttype, value in pieces:
        problem = _token_problem(ttype, value)
        if problem:
            return [], problem
        if not _is_hidden_text(ttype):
            code_parts.append(value)
            units.extend(
                _Unit(m.lastgroup, m.group().upper() if m.lastgroup == "word" else m.group())
                for m in _WORD_OR_CHARACTER.finditer(value)
            )
            continue
        code_parts.append(" ")
        if ttype in T.String.Symbol:
            units.append(_Unit("quoted", value[1:-1].replace('""', '"')))
        elif ttype is T.Keyword.TZCast:
            prefix, literal = _TIME_ZONE_CAST.fullmatch(value).groups()
            units.extend(_Unit("word", word.upper()) for word in prefix.split())
            units.append(_Unit("literal", literal))
        elif ttype not in T.Comment:
            units.append(_Unit("literal", value))
    problem = _code_problem("".join(code_parts))
    return units, problem


def _chain_problem(units: list[_Unit]) -> str | None:
    if any(unit.kind == "char" and unit.text == ";" for unit in units):
        return 'only one statement is allowed: remove the "; chain" (a single trailing ";" is fine)'
    return None


def _start_problem(units: list[_Unit]) -> str | None:
    first = units[0] if units else None
    if first is None or first.kind != "word" or first.text not in ("SELECT", "WITH"):
        return "the SQL must start with SELECT or WITH"
    return None


def _locking_problem(units: list[_Unit]) -> str | None:
    for unit, following in itertools.pairwise(units):
        if (unit.kind, unit.text) == ("word", "FOR") and (following.kind, following.text) in _LOCKING_STARTS:
            return f"locking clauses (FOR {following.text} ...) are not allowed: custom SQL must not lock rows"
    return None


def _keyword_problem(units: list[_Unit]) -> str | None:
    for unit in units:
        if unit.kind == "word" and unit.text in REFUSED_KEYWORDS:
            return (
                f"{unit.text} is not allowed: custom SQL may only read "
                f'(write a column of that name in double quotes, "{unit.text.lower()}")'
            )
    return None


def _is_refused_function(name: str) -> bool:
    name = name.lower()
    return name in REFUSED_FUNCTIONS or name.startswith(REFUSED_FUNCTION_PREFIXES)


def _function_problem(units: list[_Unit]) -> str | None:
    for unit, following in itertools.pairwise(units):
        is_call = unit.kind in ("word", "quoted") and (following.kind, following.text) == ("char", "(")
        if is_call and _is_refused_function(unit.text):
            return (
                f"{unit.text.lower()}() is not allowed: custom SQL must not call server-administration "
                "or side-effect functions"
            )
    return None


def static_problem(sql_text: str) -> str | None:
    """A message saying why `sql_text` is not an acceptable custom check, or None when it is.

    Acceptable: one SELECT (or WITH ... SELECT) statement, optionally followed by one ";", that only reads.
    """
    if not isinstance(sql_text, str):
        return "the SQL must be text"
    if len(sql_text) > MAX_LENGTH:
        return f"the SQL must be at most {MAX_LENGTH:,} characters (it has {len(sql_text):,})"
    if _CONTROL_CHARACTERS.search(sql_text):
        return "the SQL must not contain control characters (other than tabs and line breaks)"
    text = normalized(sql_text)
    if not text:
        return "the SQL must not be empty"
    units, problem = _tokenize(text)
    if problem:
        return problem
    for rule in (_chain_problem, _start_problem, _locking_problem, _keyword_problem, _function_problem):
        problem = rule(units)
        if problem:
            return problem
    return None


def composed(sql_text: str) -> sql.Composable:
    """The query object for a custom check's SQL.

    This is the single exception to Pulse's rule that every query is built from fixed templates with
    `sql.Identifier`/`sql.Literal`: the user's text is used as is. It is only reached after `static_problem`
    returned None, and to keep it that way it refuses (ValueError) text that `static_problem` refuses.
    Run it without parameters: with parameters psycopg would read a "%" in the text as a placeholder.
    """
    problem = static_problem(sql_text)
    if problem:
        raise ValueError(f"refused custom SQL: {problem}")
    return sql.SQL(normalized(sql_text))


def _postgres_message(exc: psycopg.Error) -> str:
    """PostgreSQL's message and hint, without the LINE excerpt (which would show Pulse's EXPLAIN wrapper)."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None)
    if not primary:
        return replica.describe_error(exc)
    hint = getattr(diag, "message_hint", None)
    return replica.describe_error(psycopg.Error(f"{primary} (hint: {hint})" if hint else primary))


def replica_problem(*, connection, sql_text: str) -> str | None:
    """Plan the query on `connection`'s replica with EXPLAIN (never running it); a message if it is refused."""
    problem = static_problem(sql_text)
    if problem:
        return problem
    try:
        with guardrails.lookup_session(connection=connection, queries=1) as session:
            cost = replica.explain_cost(session, composed(sql_text))
    except (replica.ReplicaError, guardrails.GuardrailStop, ValueError) as exc:
        return f'cannot check the SQL on connection "{connection.name}": {exc}'
    except psycopg.Error as exc:  # syntax errors, unknown relations, permissions, timeouts: never a 500
        return f"PostgreSQL cannot plan this query: {_postgres_message(exc)}"
    if cost > connection.max_query_cost:
        return f"estimated cost {cost:,.0f} exceeds this connection's limit of {connection.max_query_cost:,.0f}"
    return None
