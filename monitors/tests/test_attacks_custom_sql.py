"""Attacks on custom SQL by an ordinary team member, against the real replica pair.

Each attack is tried twice: through the API (refused with a 400 naming the problem, nothing saved) and, as a
check stored behind the API's back (saved before today's rules, or by hand), through a run of the engine (an
error result, and the session's limits intact for the next check). Issue 8 lists the originals.
"""

import contextlib
import re
import selectors
import socket
import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from monitors.batch import batch_run
from monitors.claims import tables_claim_due
from monitors.models import Check, MonitoredTable
from monitors.recording import results_ignore

pytestmark = pytest.mark.django_db

# A check that reports the statement_timeout its own statement runs under, in ms (pg_settings is a view).
TIMEOUT_PROBE = "SELECT setting::int FROM pg_settings WHERE name = 'statement_timeout'"

# Issue 8, item 4: each was accepted with 201 and run.
UNICODE_SET_CONFIG = "SELECT U&\"!0073et_config\" UESCAPE '!'('statement_timeout','0',false)::int"
TS_STAT_RUNS_SQL = "SELECT count(*) FROM ts_stat('SELECT set_config(''statement_timeout'',''0'',false)::tsvector')"
UNICODE_ADVISORY_LOCK = "SELECT U&\"!0070g_advisory_lock\" UESCAPE '!'(42)::text::int"

REFUSED_STATICALLY = [
    (UNICODE_SET_CONFIG, "set_config() is not allowed: it reads or changes server settings"),
    (TS_STAT_RUNS_SQL, "ts_stat() is not allowed: it runs SQL given as text"),
    (UNICODE_ADVISORY_LOCK, "pg_advisory_lock() is not allowed: it takes or releases locks"),
    # Variants: other spellings of a name, other functions that run SQL text or reach files, locks, sessions.
    ("SELECT pg_catalog.set_config('statement_timeout', '0', false)::int", "set_config() is not allowed"),
    ("SELECT \"SET_CONFIG\"('statement_timeout', '0', false)::int", "set_config() is not allowed"),
    ("SELECT U&\"\\0073\\0065t_config\"('statement_timeout', '0', false)::int", "set_config() is not allowed"),
    ('SELECT U&"pg_\\+000061dvisory_lock"(42)::text::int', "pg_advisory_lock() is not allowed"),
    ("SELECT length(query_to_xml('SELECT pg_sleep(10)', true, true, '')::text)", "query_to_xml() is not allowed"),
    ("SELECT length(query_to_xml_and_xmlschema('SELECT 1', true, true, '')::text)", "query_to_xml_and_xmlschema()"),
    ("SELECT length(table_to_xml('orders', true, true, '')::text)", "table_to_xml() is not allowed"),
    ("SELECT length(database_to_xml(true, true, '')::text)", "database_to_xml() is not allowed"),
    ("SELECT length(cursor_to_xml('c', 1, true, true, '')::text)", "cursor_to_xml() is not allowed"),
    ("SELECT numnode(ts_rewrite('a'::tsquery, 'SELECT ''a''::tsquery, ''b''::tsquery'))", "ts_rewrite() is not"),
    ("SELECT count(*) FROM dblink('dbname=pulse', 'SELECT 1') AS t(x int)", "dblink() is not allowed"),
    ("SELECT lo_import('/etc/passwd')::int", "lo_import() is not allowed: it reads or writes files"),
    ("SELECT length(pg_read_file('/etc/passwd'))", "pg_read_file() is not allowed"),
    ("SELECT length(pg_read_binary_file('postgresql.conf'))", "pg_read_binary_file() is not allowed"),
    ("SELECT count(*) FROM pg_ls_dir('.')", "pg_ls_dir() is not allowed"),
    ("SELECT (pg_stat_file('postgresql.conf')).size", "pg_stat_file() is not allowed"),
    ("SELECT pg_try_advisory_lock(42)::int", "pg_try_advisory_lock() is not allowed"),
    ("SELECT pg_terminate_backend(pg_backend_pid())::int", "pg_terminate_backend() is not allowed"),
    ("SELECT length(pg_notify('channel', 'payload')::text)", "pg_notify() is not allowed"),
    ("SELECT length(current_setting('data_directory'))", "current_setting() is not allowed"),
    ("SELECT count(*) FROM pg_show_all_settings()", "pg_show_all_settings() is not allowed"),
    ("SELECT pg_reload_conf()::int", "pg_reload_conf() is not allowed"),
    ("SELECT txid_current()", "txid_current() is not allowed"),
    ("SELECT nextval('orders_id_seq')", "nextval() is not allowed"),
    ("SELECT count(*) FROM ROWS FROM (pg_catalog.pg_ls_dir('.'))", "pg_ls_dir() is not allowed"),
    # Statements that write, lock, or chain a second statement.
    ("WITH gone AS (DELETE FROM orders RETURNING 1) SELECT count(*) FROM gone", "DELETE is not allowed"),
    ("WITH t AS (UPDATE orders SET note = 'x' RETURNING 1) SELECT count(*) FROM t", "UPDATE is not allowed"),
    ("SELECT count(*) INTO copy_of_orders FROM orders", "INTO is not allowed"),
    ("SELECT count(*) FROM (SELECT id FROM orders FOR UPDATE) locked", "locking clauses (FOR UPDATE"),
    ("SELECT count(*) FROM orders WHERE id IN (SELECT id FROM orders FOR KEY SHARE)", "locking clauses"),
    ("SELECT 1; SELECT set_config('statement_timeout', '0', false)", "; chain"),
    ("SELECT '\\'; SET statement_timeout = 0; --'", "; chain"),
    ("SET statement_timeout = 0", "SET is not allowed"),
]


@pytest.fixture
def shop(make_connection):
    return make_connection(statement_timeout_ms=3000, max_queries_per_second=100_000)


@pytest.fixture
def orders(shop):
    return MonitoredTable.objects.create(connection=shop, table_name="orders")


def create(client, table, sql_text):
    return client.post(
        "/api/checks", {"table": table.id, "kind": "custom_sql", "sql": sql_text, "min_value": 0}, format="json"
    )


def stored(table, sql_text) -> Check:
    """A check saved behind the API's back (before today's rules, or by hand)."""
    return Check.objects.create(table=table, kind="custom_sql", sql=sql_text, min_value=0)


def run_now(*tables):
    """Claim the given tables and check them in one batch, the way runchecks does."""
    claim = tables_claim_due(
        now=timezone.now(), lease=timedelta(minutes=1), limit=100, force=True, table_ids=[t.id for t in tables]
    )
    return batch_run(
        connection=claim.tables[0].connection, claim=claim, tables=claim.tables, on_recorded=results_ignore
    )


def custom_results(results) -> dict:
    return {r.check_definition_id: r for r in results if r.kind == "custom_sql"}


@pytest.mark.parametrize(("sql_text", "message"), REFUSED_STATICALLY)
def test_the_api_refuses_it(owner_client, orders, sql_text, message):
    response = create(owner_client, orders, sql_text)
    assert response.status_code == 400
    assert message in str(response.data["sql"])
    assert not Check.objects.exists()


@pytest.mark.parametrize(("sql_text", "message"), REFUSED_STATICALLY)
def test_a_stored_copy_is_refused_at_run_time_and_the_limits_hold(shop, orders, sql_text, message):
    attack, probe = stored(orders, sql_text), stored(orders, TIMEOUT_PROBE)
    results = custom_results(run_now(orders))
    assert results[attack.id].status == "error"
    assert results[attack.id].message.startswith("refused: ") and message in results[attack.id].message
    assert results[attack.id].queries_used == 0  # refused before anything was sent
    assert results[probe.id].observed_value == shop.statement_timeout_ms


# --- functions the replica knows as volatile, and shapes that can only fail (issue 8, item 6) -------------------


@pytest.mark.parametrize(
    ("sql_text", "message"),
    [
        ("SELECT pg_sleep(10)", "pg_sleep() is volatile on this replica (pg_sleep(double precision))"),
        ("SELECT pg_catalog.pg_sleep_for('10 s')::text::int", "pg_catalog.pg_sleep_for() is volatile"),
        ("SELECT count(*) FROM orders WHERE random() < 0.5", "random() is volatile"),
        ("SELECT count(*) FROM orders WHERE created_at > clock_timestamp() - interval '1 h'", "use now() instead"),
        ("SELECT 'abc'", "the query returns text, not a number"),
        ("SELECT 1, 2", "the query returns 2 columns: a check must return exactly one numeric column"),
        ("SELECT repeat('x', 150000000) FROM generate_series(1, 4)", "the query returns text, not a number"),
        ("SELECT length(repeat('x', 150)) FROM generate_series(1, (SELECT 4))", "rows: a check must return one row"),
        ("SELECT no_such_function(1)", "function no_such_function() does not exist on this replica"),
    ],
)
def test_the_api_refuses_what_can_only_fail(owner_client, orders, sql_text, message):
    response = create(owner_client, orders, sql_text)
    assert response.status_code == 400
    assert message in str(response.data["sql"])
    assert not Check.objects.exists()


def test_a_stored_sleep_delays_its_table_by_at_most_the_timeout(shop, orders):
    shop.statement_timeout_ms = 300
    shop.save()
    sleep, probe = stored(orders, "SELECT pg_sleep(10)::text::int"), stored(orders, TIMEOUT_PROBE)
    results = custom_results(run_now(orders))
    assert results[sleep.id].status == "error"
    assert results[sleep.id].message == "timed out after 300 ms"
    assert results[probe.id].observed_value == 300


# --- memory (issue 8, item 5) --------------------------------------------------------------------------------------


def peak_memory_kib(*, reset: bool = False) -> int:
    """This process's peak resident size (Linux VmHWM), in KiB; `reset` first forgets the peak of earlier tests."""
    if reset:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    with open("/proc/self/status") as status:
        return int(re.search(r"VmHWM:\s+(\d+) kB", status.read()).group(1))


def test_huge_rows_are_refused_on_the_server_and_memory_stays_flat(shop, orders):
    shop.statement_timeout_ms = 60_000  # the server needs a moment to build 2 x 50 MB; a timeout is not the point
    shop.save()
    check = stored(orders, "SELECT repeat('x',50000000) FROM generate_series(1,4)")
    before = peak_memory_kib(reset=True)  # the resident size now: a peak an earlier test left cannot hide growth
    result = custom_results(run_now(orders))[check.id]
    grown_kib = peak_memory_kib() - before
    # Reading the two 50 MB rows the server would send adds ~250 MB (libpq's buffer, its result, Python's strings).
    assert grown_kib < 100 * 1024
    assert result.status == "error"
    assert result.message == "custom SQL returned a row larger than 4,096 bytes; it must return one number"


def test_many_rows_are_fetched_two_at_most(orders):
    check = stored(orders, "SELECT g FROM generate_series(1, 1000000) g")
    result = custom_results(run_now(orders))[check.id]
    assert result.status == "error"
    assert result.message == "custom SQL must return exactly one row with one numeric column"


# --- SQL that lies about itself: the limits are set again before every user statement ------------------------------


@pytest.fixture
def lying_functions(replica_pair):
    """Functions a tenant could create on its own primary, declared IMMUTABLE while they change settings or sleep."""
    with replica_pair.primary.connect("shop") as conn:
        conn.execute(
            "CREATE OR REPLACE FUNCTION public.lift_timeout() RETURNS int LANGUAGE sql IMMUTABLE"
            " AS $$ SELECT set_config('statement_timeout', '0', false)::int $$;"
            "CREATE OR REPLACE FUNCTION public.nap() RETURNS int LANGUAGE sql IMMUTABLE"
            " AS $$ SELECT pg_sleep(10)::text::int + 1 $$"
        )
    replica_pair.wait_for_replay()
    yield
    with replica_pair.primary.connect("shop") as conn:
        conn.execute("DROP FUNCTION public.lift_timeout(); DROP FUNCTION public.nap()")
    replica_pair.wait_for_replay()


def test_a_function_that_lifts_the_timeout_does_not_lift_it_for_later_statements(
    owner_client, shop, orders, lying_functions
):
    shop.statement_timeout_ms = 300
    shop.save()
    # The replica's catalog says immutable, so the API cannot tell (it is the tenant's own replica).
    assert create(owner_client, orders, "SELECT public.lift_timeout()").status_code == 201
    lift = Check.objects.get()
    probe, nap = stored(orders, TIMEOUT_PROBE), stored(orders, "SELECT public.nap()")
    results = custom_results(run_now(orders))
    assert results[lift.id].status == "pass"
    assert results[probe.id].observed_value == 300
    assert results[nap.id].status == "error"
    assert results[nap.id].message == "timed out after 300 ms"


# --- a replica that stops answering: the client-side deadline -----------------------------------------------------


class FreezingProxy:
    """A TCP proxy to the standby that stops forwarding anything, in both directions and on every connection
    (cancel requests included), from the moment a client sends bytes for which `freezes(data)` is true."""

    def __init__(self, port: int, freezes):
        self.target = ("127.0.0.1", port)
        self.freezes = freezes
        self.frozen, self.closed = threading.Event(), threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = [self.listener]
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self):
        selector = selectors.DefaultSelector()
        selector.register(self.listener, selectors.EVENT_READ)
        while not self.closed.is_set():
            if not selector.select(timeout=0.1) or self.closed.is_set():
                continue
            client, _ = self.listener.accept()
            server = socket.create_connection(self.target)
            self.sockets += [client, server]
            for source, sink, watched in ((client, server, True), (server, client, False)):
                thread = threading.Thread(target=self._pump, args=(source, sink, watched), daemon=True)
                self.threads.append(thread)
                thread.start()
        selector.close()

    def _pump(self, source, sink, watched):
        try:
            while data := source.recv(65536):
                if watched and self.freezes(data):
                    self.frozen.set()
                if self.frozen.is_set():
                    self.closed.wait()
                    return
                sink.sendall(data)
        except OSError:
            return

    def close(self):
        self.closed.set()
        self.threads[0].join(10)  # the accept loop ends before the listener closes
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self.threads:
            thread.join(10)


def test_a_replica_that_stops_answering_ends_the_check_with_a_timeout(replica_pair, make_connection):
    marker = b"pulse-test-freeze"
    # Freeze when the query itself is sent (not its EXPLAIN, which the cost guard sends first).
    proxy = FreezingProxy(replica_pair.standby.port, lambda data: marker in data and b"EXPLAIN" not in data)
    try:
        shop = make_connection(port=proxy.port, statement_timeout_ms=500, max_queries_per_second=100_000)
        orders = MonitoredTable.objects.create(connection=shop, table_name="orders")
        check = stored(orders, f"SELECT count(*) /* {marker.decode()} */ FROM orders")
        later = Check.objects.create(table=orders, kind="row_count", min_value=1)
        results = {r.check_definition_id: r for r in run_now(orders)}  # returns though the replica never answers
        assert proxy.frozen.is_set()
        assert results[check.id].status == "error"
        assert results[check.id].message.startswith("timed out after 500 ms: the replica did not answer")
        # The session is gone: the checks not yet run get the same error instead of waiting.
        assert (results[later.id].status, results[later.id].message) == ("error", results[check.id].message)
        shop.refresh_from_db()
        assert shop.status == "error"
    finally:
        proxy.close()


# --- legitimate checks still pass ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql_text", "expected"),
    [
        ("SELECT count(*) FROM orders WHERE created_at > now() - interval '1 day'", 500),
        ("WITH recent AS (SELECT * FROM orders WHERE created_at > now() - interval '1 day')"
         " SELECT count(*) FROM recent", 500),
        ("SELECT coalesce(sum(amount), 0)::int FROM orders"
         " WHERE customer_id IN (SELECT id FROM customers WHERE id < 2)", 3390),
        ("SELECT avg(amount)::float8 FROM orders", 375.75),
        ("SELECT max(amount) - min(amount) FROM public.orders;", 748.5),
        ("SELECT count(*) FILTER (WHERE note IS NULL) FROM orders -- every order has no note", 500),
        ("SELECT (SELECT count(*) FROM customers) + (SELECT count(*) FROM orders)", 550),
    ],
)  # fmt: skip
def test_legitimate_checks_are_saved_and_run(owner_client, orders, sql_text, expected):
    response = create(owner_client, orders, sql_text)
    assert response.status_code == 201, response.data
    check = Check.objects.get()
    result = custom_results(run_now(orders))[check.id]
    assert result.status == "pass", result.message
    assert result.observed_value == pytest.approx(expected)
