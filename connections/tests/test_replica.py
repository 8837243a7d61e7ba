"""Read-only sessions on the real hot standby: settings, refusals, probing, catalog lookups, error messages."""

import psycopg
import pytest

from connections import replica

pytestmark = pytest.mark.django_db


def conninfo(settings: dict) -> dict:
    return {
        "host": settings["host"],
        "port": settings["port"],
        "dbname": settings["database"],
        "user": settings["username"],
        "password": settings["password"],
        "sslmode": settings["sslmode"],
    }


def test_a_session_is_read_only_and_bounded(replica_settings):
    with replica.open_session(conninfo=conninfo(replica_settings), statement_timeout_ms=1234) as session:
        shown = {
            name: session.execute(f"SHOW {name}").fetchone()[0]
            for name in ("default_transaction_read_only", "statement_timeout", "lock_timeout", "TimeZone")
        }
        assert shown == {
            "default_transaction_read_only": "on",
            "statement_timeout": "1234ms",
            "lock_timeout": "617ms",
            "TimeZone": "UTC",
        }
        assert session.execute("SELECT current_setting('application_name')").fetchone() == ("pulse",)
    assert session.closed


def test_a_session_on_the_primary_cannot_write_either(primary_settings):
    with replica.open_session(conninfo=conninfo(primary_settings), statement_timeout_ms=5000) as session:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            session.execute("CREATE TABLE public.pulse_was_here (id int)")
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction), session.transaction():
            session.execute("INSERT INTO public.customers VALUES (9999, 'x', NULL)")


def test_lock_waits_give_up_at_half_the_statement_timeout_but_never_below_50_ms():
    assert replica.lock_timeout_ms(5000) == 2500
    assert replica.lock_timeout_ms(60) == 50


def test_session_for_refuses_a_primary_unless_the_connection_allows_it(make_connection, primary_settings):
    on_primary = make_connection(port=primary_settings["port"])
    with pytest.raises(replica.ReplicaError, match="not a read replica"), replica.session_for(on_primary):
        pass
    allowed = make_connection(name="primary-allowed", port=primary_settings["port"], require_replica=False)
    with replica.session_for(allowed) as session:
        assert replica.is_in_recovery(session) is False


def test_session_for_a_replica_is_in_recovery(make_connection):
    with replica.session_for(make_connection()) as session:
        assert replica.is_in_recovery(session) is True


def test_probe_tells_a_replica_from_a_primary_and_a_wrong_password(replica_settings, primary_settings):
    found = replica.probe(conninfo=conninfo(replica_settings))
    assert (found.ok, found.in_recovery, found.error) == (True, True, None)
    assert found.server_version.startswith("15")

    primary = replica.probe(conninfo=conninfo(primary_settings))
    assert (primary.ok, primary.in_recovery, primary.error) == (False, False, replica.NOT_A_REPLICA)
    assert replica.probe(conninfo=conninfo(primary_settings), require_replica=False).ok

    wrong_password = "not-" + replica_settings["password"]
    wrong = replica.probe(conninfo={**conninfo(replica_settings), "password": wrong_password})
    assert wrong.ok is False
    assert wrong.error == 'cannot connect: password authentication failed for user "pulse_reader"'
    assert replica_settings["password"] not in wrong.error


def test_describe_table_reports_existence_privilege_and_columns(replica_settings):
    with replica.open_session(conninfo=conninfo(replica_settings), statement_timeout_ms=5000) as session:
        orders = replica.describe_table(session, schema="public", table="orders")
        salaries = replica.describe_table(session, schema="private", table="salaries")
        missing = replica.describe_table(session, schema="public", table="no_such_table")
    assert orders.exists and orders.readable
    assert [c.name for c in orders.columns] == ["id", "customer_id", "amount", "created_at", "note"]
    assert orders.column("created_at").type == "timestamp with time zone"
    assert orders.column("customer_id").not_null and not orders.column("note").not_null
    assert orders.column("nope") is None
    assert (salaries.exists, salaries.readable) == (True, False)
    assert missing == replica.TableInfo(exists=False)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "name must not be empty"),
        ("x" * 64, "name must be at most 63 bytes (PostgreSQL's identifier limit)"),
        ("é" * 32, "name must be at most 63 bytes (PostgreSQL's identifier limit)"),
        ("bad\nname", "name must not contain control characters"),
        ("bad\x7fname", "name must not contain control characters"),
    ],
)
def test_validate_identifier_names_the_problem(value, problem):
    assert replica.validate_identifier(value, what="name") == problem


def test_validate_identifier_accepts_any_other_name():
    for value in ("orders", "x" * 63, "Mixed Case", "é" * 31, "a;b"):
        assert replica.validate_identifier(value, what="name") is None


def test_a_failed_connect_is_described_by_category_never_by_the_servers_words():
    info = {"user": "pulse_reader", "dbname": "shop"}
    said = psycopg.OperationalError('FATAL:  database "secret_name" does not exist')
    assert replica.describe_connect_error(said, conninfo=info) == 'database "shop" does not exist'
    banner = psycopg.OperationalError("received invalid response to SSL negotiation: SSH-2.0-OpenSSH_9.6")
    assert replica.describe_connect_error(banner, conninfo=info) == replica.NOT_POSTGRESQL


def test_describe_error_is_one_line_without_the_servers_address():
    exc = psycopg.OperationalError(
        'connection failed: connection to server at "10.1.2.3", port 5432 failed: server closed\n  the connection'
    )
    assert replica.describe_error(exc) == "server closed the connection"


def test_describe_error_keeps_libpqs_sentences_apart(closed_port):
    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect(host="127.0.0.1", port=closed_port, dbname="shop", connect_timeout=5)
    assert replica.describe_error(refused.value) == (
        "Connection refused. Is the server running on that host and accepting TCP/IP connections?"
    )
    lost = psycopg.OperationalError(  # libpq's text when a session is cut, a sentence wrapped over two lines
        "server closed the connection unexpectedly\n\tThis probably means the server terminated abnormally\n"
        "\tbefore or while processing the request.\n"
    )
    assert replica.describe_error(lost) == (
        "server closed the connection unexpectedly. This probably means the server terminated abnormally "
        "before or while processing the request."
    )
