import time

import pytest
from psycopg import sql

from monitors.custom_sql_policy import MAX_LENGTH, Function, composed, read, replica_problem, static_problem


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "must not be empty"),
        ("   ;  ", "must not be empty"),
        ("-- only a comment", "must not be empty"),
        ("SELECT " + "1" * MAX_LENGTH, "at most 10,000 characters"),
        ("SELECT 1\x00", "control characters"),
        ("SELECT 1; DROP TABLE orders", "; chain"),
        ("SELECT 1; SELECT 2;", "; chain"),
        ("SELECT count(*) FROM orders WHERE id = 1 ;\n-- done\nDELETE FROM orders", "; chain"),
        ("WITH d AS (DELETE FROM orders RETURNING 1) SELECT count(*) FROM d", "DELETE is not allowed"),
        ("WITH u AS (update orders SET amount = 0 RETURNING 1) SELECT count(*) FROM u", "UPDATE is not allowed"),
        ("WITH i AS (INSERT INTO orders DEFAULT VALUES RETURNING 1) SELECT 1", "INSERT is not allowed"),
        ("SELECT * INTO copy_of_orders FROM orders", "INTO is not allowed"),
        ("DELETE FROM orders", "DELETE is not allowed"),
        ("/* SELECT */ EXPLAIN SELECT 1", "EXPLAIN is not allowed"),
        ("SET statement_timeout = 0", "SET is not allowed"),
        ("COPY orders TO STDOUT", "COPY is not allowed"),
        ("SELECT 1 FROM orders FOR UPDATE", "locking clauses (FOR UPDATE"),
        ("SELECT 1 FROM orders for share", "locking clauses (FOR SHARE"),
        ("SELECT 1 FROM orders FOR NO KEY UPDATE", "locking clauses (FOR NO KEY UPDATE"),
        ("SELECT 1 FROM orders FOR KEY SHARE", "locking clauses (FOR KEY SHARE"),
        ("SELECT 1 FROM orders FOR /* x */ UPDATE", "locking clauses"),
        ("SELECT count(*) FROM (SELECT 1 FROM orders FOR UPDATE) s", "locking clauses"),
        ("SELECT count(*) FROM orders WHERE id IN (SELECT id FROM orders FOR SHARE SKIP LOCKED)", "locking clauses"),
        ("SELECT $1", "parameters"),
        ("SELECT count(*) FROM", "cannot parse this query: syntax error at end of input"),
        ("SELECT 'unterminated", "cannot parse"),
        ("SELECT pg_terminate_backend(1)", "pg_terminate_backend() is not allowed: it acts on other sessions"),
        ("SELECT pg_catalog.pg_cancel_backend (1)", "pg_cancel_backend() is not allowed"),
        ('SELECT "pg_terminate_backend"(1)', "pg_terminate_backend() is not allowed"),
        ("SELECT PG_RELOAD_CONF/**/()", "pg_reload_conf() is not allowed"),
        ("SELECT set_config('statement_timeout', '0', false)", "set_config() is not allowed: it reads or changes"),
        ("SELECT current_setting('data_directory')", "current_setting() is not allowed"),
        ("SELECT pg_advisory_lock(1)", "pg_advisory_lock() is not allowed: it takes or releases locks"),
        ("SELECT pg_try_advisory_xact_lock(1)", "pg_try_advisory_xact_lock() is not allowed"),
        ("SELECT dblink_exec('x', 'DROP TABLE orders')", "dblink_exec() is not allowed: it runs SQL given as text"),
        ("SELECT lo_import('/etc/passwd')", "lo_import() is not allowed: it reads or writes files"),
        ("SELECT pg_read_file('/etc/passwd')", "pg_read_file() is not allowed"),
        ("SELECT count(*) FROM pg_ls_dir('.')", "pg_ls_dir() is not allowed"),
        ("SELECT nextval('orders_id_seq')", "nextval() is not allowed"),
        ("SELECT setval('orders_id_seq', 1)", "setval() is not allowed"),
        ("SELECT pg_wal_replay_pause()", "pg_wal_replay_pause() is not allowed"),
        ("SELECT pg_promote()", "pg_promote() is not allowed"),
        ("SELECT query_to_xml('DELETE FROM orders', true, true, '')", "query_to_xml() is not allowed"),
        ("SELECT count(*) FROM ts_stat('SELECT 1')", "ts_stat() is not allowed"),
        ("SELECT length(table_to_xml('orders', true, true, '')::text)", "table_to_xml() is not allowed"),
        # Names are read as PostgreSQL reads them: unicode escapes and quoted letter case are decoded.
        ("SELECT U&\"!0073et_config\" UESCAPE '!'('statement_timeout', '0', false)::int", "set_config() is not"),
        ('SELECT U&"pg_\\+000061dvisory_lock"(42)', "pg_advisory_lock() is not allowed"),
        ("SELECT \"SET_CONFIG\"('a', 'b', false)", "set_config() is not allowed"),
        ("SELECT count(*) FROM ROWS FROM (pg_catalog.pg_ls_dir('.'))", "pg_ls_dir() is not allowed"),
        ("SELECT (SELECT max(x) FROM (SELECT pg_notify('c', 'p') AS x) s)", "pg_notify() is not allowed"),
    ],
)
def test_it_refuses_unacceptable_sql_naming_the_rule(text, message):
    assert message in (static_problem(text) or "")


@pytest.mark.parametrize(
    "text",
    [
        # Text that a reading of its own (not PostgreSQL's) could split differently: a second statement shows.
        "SELECT '\\'; DROP TABLE orders; --'",  # standard strings do not escape with backslashes
        'SELECT "\\" ; DROP TABLE orders; --"',
        "SELECT 1 +/* ' */ 1; DROP TABLE orders; -- '",  # PostgreSQL ends operators at /*
        "SELECT 1 +-- '\n1; DROP TABLE orders; -- '",  # and at --
        "SELECT 1 /* a /* nested */ ; DROP TABLE orders; */ ; SELECT 2",
        "SELECT 1 AS x$a$; DROP TABLE orders; --$a$",
    ],
)
def test_it_sees_every_statement_postgresql_would_see(text):
    assert "; chain" in static_problem(text)


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
        "SELECT 'pg_terminate_backend(1)', \"nextval\" FROM (SELECT 1 AS nextval) t",
        "SELECT count(*) FROM orders WHERE note = 'café' -- ünïcode in literals and comments is fine",
        "SELECT count(*) AS café FROM orders",
        "SELECT 1 FROM orders FOR READ ONLY",
        "SELECT 1 /* a /* nested */ comment */",
        "SELECT coalesce(sum(amount), 0)::numeric(12, 2) FROM orders WHERE customer_id IN (SELECT id FROM customers)",
        "VALUES (1)",
    ],
)
def test_it_accepts_reads_with_keywords_only_inside_literals_comments_or_quoted_names(text):
    assert static_problem(text) is None


def test_it_composes_the_one_statement_as_postgresql_delimits_it():
    query = composed(" /* why */ SELECT count(*) FROM orders WHERE note LIKE 'a%'; -- done\n ")
    assert isinstance(query, sql.SQL)
    assert query.as_string(None) == "SELECT count(*) FROM orders WHERE note LIKE 'a%'"
    assert composed("SELECT 'é' -- last").as_string(None) == "SELECT 'é' -- last"
    assert read("SELECT count(*), pg_catalog.now(), public.f(1) FROM orders").functions == (
        Function(schema=None, name="count"),
        Function(schema="pg_catalog", name="now"),
        Function(schema="public", name="f"),
    )
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
            ("SELECT count(*) FROM orders WHERE id = 'x'", 'invalid input syntax for type bigint: "x"'),
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
        text = "SELECT count(*) FROM generate_series(1, (SELECT 100000000000))"
        assert replica_problem(connection=make_connection(), sql_text=text) is None
        assert time.monotonic() - started < 10

    def test_it_reports_an_unreachable_replica(self, make_connection):
        problem = replica_problem(connection=make_connection(port=1), sql_text="SELECT 1")
        assert problem.startswith('cannot check the SQL on connection "shop-replica": cannot connect')

    def test_it_applies_the_static_rules_before_contacting_the_replica(self, make_connection):
        problem = replica_problem(connection=make_connection(port=1), sql_text="SELECT 1; DROP TABLE orders")
        assert "; chain" in problem

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("SELECT count(*) FROM orders WHERE no_such(id)", "function no_such() does not exist on this replica"),
            ("SELECT public.now()", "function public.now() does not exist on this replica"),
            ("SELECT pg_sleep(10)", "pg_sleep() is volatile on this replica (pg_sleep(double precision))"),
            ("SELECT count(*) FROM orders WHERE random() < 0.5", "random() is volatile"),
            ("SELECT count(*) FROM orders WHERE created_at > clock_timestamp()", "use now() instead"),
            (
                "SELECT pg_catalog.timeofday()::timestamptz - now() < interval '1 s'",
                "pg_catalog.timeofday() is volatile",
            ),
            ("SELECT 'abc'", "the query returns text, not a number"),
            ("SELECT true", "the query returns bool, not a number"),
            ("SELECT 1, 2", "the query returns 2 columns"),
            ("SELECT amount FROM orders", "rows: a check must return one row, so aggregate it"),
            ("SELECT count(*) FROM orders GROUP BY customer_id", "aggregate it"),
        ],
    )
    def test_it_refuses_functions_and_shapes_that_can_only_fail(self, make_connection, text, message):
        assert message in replica_problem(connection=make_connection(), sql_text=text)

    @pytest.mark.parametrize(
        "text",
        [
            "SELECT count(*) FROM orders WHERE created_at > now() - interval '1 day'",
            "SELECT (pg_catalog.now() - max(created_at) < interval '1 day')::int FROM orders LIMIT 1",
            "WITH recent AS (SELECT * FROM orders WHERE created_at > now() - interval '1 hour')"
            " SELECT count(*) FROM recent",
            "SELECT coalesce(sum(amount), 0)::numeric(12, 2) FROM orders"
            " WHERE customer_id IN (SELECT id FROM customers)",
            "SELECT avg(amount)::float8 FROM orders",
            "SELECT extract(epoch FROM now() - max(created_at)) FROM orders",
            "SELECT amount FROM orders WHERE id = 7",
            "SELECT 1",
        ],
    )
    def test_it_accepts_legitimate_checks(self, make_connection, text):
        assert replica_problem(connection=make_connection(), sql_text=text) is None
