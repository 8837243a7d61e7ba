import time

import pytest
from psycopg import sql

from monitors.custom_sql import MAX_LENGTH, composed, normalized, replica_problem, static_problem


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "must not be empty"),
        ("   ;  ", "must not be empty"),
        ("SELECT " + "1" * MAX_LENGTH, "at most 10,000 characters"),
        ("SELECT 1\x00", "control characters"),
        ("SELECT 1; DROP TABLE orders", "; chain"),
        ("SELECT 1;;", "; chain"),
        ("SELECT 1; SELECT 2;", "; chain"),
        ("SELECT count(*) FROM orders WHERE id = 1 ;\n-- done\nDELETE FROM orders", "; chain"),
        ("WITH d AS (DELETE FROM orders RETURNING 1) SELECT count(*) FROM d", "DELETE is not allowed"),
        ("WITH u AS (update orders SET amount = 0 RETURNING 1) SELECT count(*) FROM u", "UPDATE is not allowed"),
        ("WITH i AS (INSERT INTO orders DEFAULT VALUES RETURNING 1) SELECT 1", "INSERT is not allowed"),
        ("SELECT * INTO copy_of_orders FROM orders", "INTO is not allowed"),
        (
            "SELECT count(*) FROM orders WHERE comment IS NULL",
            'COMMENT is not allowed: custom SQL may only read (write a column of that name in double quotes, "comment"',
        ),
        ("DELETE FROM orders", "must start with SELECT or WITH"),
        ("VALUES (1)", "must start with SELECT or WITH"),
        ("(SELECT 1)", "must start with SELECT or WITH"),
        ("/* SELECT */ EXPLAIN SELECT 1", "must start with SELECT or WITH"),
        ("SELECT 1 FROM orders FOR UPDATE", "locking clauses (FOR UPDATE"),
        ("SELECT 1 FROM orders for share", "locking clauses (FOR SHARE"),
        ("SELECT 1 FROM orders FOR NO KEY UPDATE", "locking clauses (FOR NO"),
        ("SELECT 1 FROM orders FOR KEY SHARE", "locking clauses (FOR KEY"),
        ("SELECT 1 FROM orders WHERE CASE WHEN true THEN true END FOR SHARE", "locking clauses"),
        ("SELECT 1 FROM orders FOR /* x */ UPDATE", "locking clauses"),
        ("SELECT pg_terminate_backend(1)", "pg_terminate_backend() is not allowed"),
        ("SELECT pg_catalog.pg_cancel_backend (1)", "pg_cancel_backend() is not allowed"),
        ('SELECT "pg_terminate_backend"(1)', "pg_terminate_backend() is not allowed"),
        ("SELECT PG_RELOAD_CONF/**/()", "pg_reload_conf() is not allowed"),
        ("SELECT set_config('statement_timeout', '0', false)", "set_config() is not allowed"),
        ("SELECT pg_advisory_lock(1)", "pg_advisory_lock() is not allowed"),
        ("SELECT pg_try_advisory_xact_lock(1)", "pg_try_advisory_xact_lock() is not allowed"),
        ("SELECT dblink_exec('x', 'DROP TABLE orders')", "dblink_exec() is not allowed"),
        ("SELECT lo_import('/etc/passwd')", "lo_import() is not allowed"),
        ("SELECT pg_read_file('/etc/passwd')", "pg_read_file() is not allowed"),
        ("SELECT count(*) FROM pg_ls_dir('.')", "pg_ls_dir() is not allowed"),
        ("SELECT nextval('orders_id_seq')", "nextval() is not allowed"),
        ("SELECT setval('orders_id_seq', 1)", "setval() is not allowed"),
        ("SELECT pg_wal_replay_pause()", "pg_wal_replay_pause() is not allowed"),
        ("SELECT pg_promote()", "pg_promote() is not allowed"),
        ("SELECT query_to_xml('DELETE FROM orders', true, true, '')", "query_to_xml() is not allowed"),
    ],
)
def test_it_refuses_unacceptable_sql_naming_the_rule(text, message):
    assert message in (static_problem(text) or "")


@pytest.mark.parametrize(
    "text",
    [
        # Where sqlparse and PostgreSQL could disagree about where a literal or comment ends, a ";" could hide.
        "SELECT '\\'; DROP TABLE orders; --'",  # standard strings do not escape with backslashes
        "SELECT E'\\\\'",
        'SELECT "\\" ; DROP TABLE orders; --"',
        "SELECT 1 +/* ' */ 1; DROP TABLE orders; -- '",  # PostgreSQL ends operators at /*
        "SELECT 1 +-- '\n1; DROP TABLE orders; -- '",  # and at --
        "SELECT 1 /* a /* nested */ ; DROP TABLE orders; */",
        "SELECT 1 # 2; DROP TABLE orders",  # "# " is a comment for sqlparse, an operator for PostgreSQL
        "SELECT 1 AS\u00a0$a$; DROP TABLE orders; --$a$",  # a non-ASCII byte belongs to PostgreSQL's identifier
        "SELECT 1 AS x$a$; DROP TABLE orders; --$a$",
        "SELECT $1",
        "SELECT 'unterminated",
        "SELECT `a; b`",
        "SELECT café FROM orders",
    ],
)
def test_it_refuses_quoting_that_could_be_read_two_ways(text):
    assert static_problem(text) is not None


@pytest.mark.parametrize(
    "text",
    [
        "SELECT count(*) FROM orders",
        "select count(*) from orders;",
        "  SELECT 1 ;  ",
        "-- a comment first\nSELECT 1",
        "/* leading */ WITH recent AS (SELECT * FROM orders WHERE created_at > now() - interval '1 hour') "
        "SELECT count(*) FROM recent",
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3) SELECT max(i) FROM n",
        "SELECT count(*) FROM orders WHERE note = 'DROP TABLE orders; DELETE' -- UPDATE; INSERT\n/* TRUNCATE; */",
        'SELECT count(*) AS "delete" FROM orders WHERE note <> $$; DROP TABLE orders$$',
        "SELECT count(*) FROM orders WHERE note <> $tag$ ' ; $tag$",
        'SELECT count(*) FROM orders AS "x""; drop table orders; --"',
        "SELECT count(*) FROM orders WHERE note ~ '^\\d+$' AND note LIKE 'a%'",
        "SELECT max(created_at AT TIME ZONE 'UTC') FROM orders",
        "SELECT substring('abcdef' FROM 1 FOR 2) = 'ab'",
        "SELECT pg_sleep(0), txid_current()",
        "SELECT 'pg_terminate_backend(1)', \"nextval\" FROM (SELECT 1 AS nextval) t",
        "SELECT count(*) FROM orders WHERE note = 'café' -- ünïcode in literals and comments is fine",
        "SELECT 1 FROM orders FOR READ ONLY",
    ],
)
def test_it_accepts_reads_with_keywords_only_inside_literals_comments_or_quoted_names(text):
    assert static_problem(text) is None


def test_it_normalizes_whitespace_and_one_trailing_semicolon():
    assert normalized("  SELECT 1 ;\n ") == "SELECT 1"
    assert normalized("SELECT 1;;") == "SELECT 1;"
    assert normalized("SELECT ';'") == "SELECT ';'"


def test_it_composes_accepted_sql_only():
    query = composed(" SELECT count(*) FROM orders WHERE note LIKE 'a%'; ")
    assert isinstance(query, sql.SQL)
    assert query.as_string(None) == "SELECT count(*) FROM orders WHERE note LIKE 'a%'"
    with pytest.raises(ValueError, match="; chain"):
        composed("SELECT 1; DROP TABLE orders")


@pytest.mark.django_db
class TestOnTheReplica:
    def test_it_accepts_a_query_the_replica_can_plan(self, make_connection):
        assert replica_problem(connection=make_connection(), sql_text="SELECT count(*) FROM orders") is None

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("SELECT count(*) FROM nope", 'relation "nope" does not exist'),
            ("SELECT count(nope) FROM orders", 'column "nope" does not exist'),
            ("SELECT count(*) FROM orders WHERE", "syntax error"),
            ("SELECT count(*) FROM private.salaries", "permission denied"),
        ],
    )
    def test_it_reports_what_postgresql_says(self, make_connection, text, message):
        problem = replica_problem(connection=make_connection(), sql_text=text)
        assert problem.startswith("PostgreSQL cannot plan this query: ")
        assert message in problem

    def test_it_refuses_a_query_over_the_cost_limit(self, make_connection):
        connection = make_connection(max_query_cost=1)
        problem = replica_problem(connection=connection, sql_text="SELECT count(*) FROM public.orders")
        assert problem.startswith("estimated cost ")
        assert problem.endswith("exceeds this connection's limit of 1")

    def test_it_only_plans_and_never_runs_the_query(self, make_connection):
        started = time.monotonic()
        assert replica_problem(connection=make_connection(), sql_text="SELECT pg_sleep(30)") is None
        assert time.monotonic() - started < 10

    def test_it_reports_an_unreachable_replica(self, make_connection):
        problem = replica_problem(connection=make_connection(port=1), sql_text="SELECT 1")
        assert problem.startswith('cannot check the SQL on connection "shop-replica": cannot connect')

    def test_it_applies_the_static_rules_before_contacting_the_replica(self, make_connection):
        problem = replica_problem(connection=make_connection(port=1), sql_text="SELECT 1; DROP TABLE orders")
        assert "; chain" in problem
