"""monitors.table_rules.table_problems: a table definition checked against the replica's catalog."""

import pytest

from monitors.table_rules import table_problems

pytestmark = pytest.mark.django_db


def problems(connection, table_name, *, schema_name="public", timestamp_column=""):
    return table_problems(
        connection=connection, schema_name=schema_name, table_name=table_name, timestamp_column=timestamp_column
    )


def test_a_readable_table_with_a_timestamp_column_is_fine(make_connection):
    shop = make_connection()
    assert problems(shop, "orders", timestamp_column="created_at") == {}
    assert problems(shop, "customers", timestamp_column="signup_date") == {}  # a date column counts
    assert problems(shop, "customers") == {}


def test_names_that_are_not_identifiers_are_refused_before_any_lookup(make_connection):
    down = make_connection(name="down", port=1)  # never contacted: the names are refused first
    found = problems(down, "x" * 64, schema_name="", timestamp_column="a\nb")
    assert found == {
        "schema_name": "schema name must not be empty",
        "table_name": "table name must be at most 63 bytes (PostgreSQL's identifier limit)",
        "timestamp_column": "timestamp column must not contain control characters",
    }


def test_a_missing_or_unreadable_table_is_named(make_connection):
    shop = make_connection(name="shop")
    assert problems(shop, "nope") == {"table_name": 'table "public.nope" not found on connection "shop"'}
    assert "is not readable by user" in problems(shop, "salaries", schema_name="private")["table_name"]


def test_a_timestamp_column_must_exist_and_hold_times(make_connection):
    shop = make_connection()
    assert "not found" in problems(shop, "orders", timestamp_column="nope")["timestamp_column"]
    assert "not a date or timestamp type" in problems(shop, "orders", timestamp_column="note")["timestamp_column"]


def test_an_unreachable_replica_is_a_problem_of_the_connection(make_connection):
    down = make_connection(name="down", port=1)
    found = problems(down, "orders")
    assert list(found) == ["connection"]
    assert 'cannot look up "public.orders" on connection "down"' in found["connection"]
