"""The dashboard's scenario: acme's failing `orders` table with 14 days of history and its open volume alert,
a healthy `customers` table, and globex's own table (the other team)."""

import pytest
from django.test import Client
from django.utils import timezone

from dashboard.testing import connection_for, failing_table, healthy_table


@pytest.fixture
def scene(teams):
    now = timezone.now()
    connection = connection_for(teams[0])
    table, alert = failing_table(connection, now=now)
    customers = healthy_table(connection, now=now, name="customers")
    foreign_connection = connection_for(teams[1], name="globex-replica")
    foreign_table, foreign_alert = failing_table(foreign_connection, now=now, name="secret_orders")
    return {
        "connection": connection,
        "table": table,
        "alert": alert,
        "customers": customers,
        "foreign_connection": foreign_connection,
        "foreign_table": foreign_table,
        "foreign_alert": foreign_alert,
        "now": now,
    }


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def owner_browser(owner):
    """A dashboard client logged in as acme's owner (every permission)."""
    return logged_in(owner)


@pytest.fixture
def member_browser(member):
    """A dashboard client logged in as acme's member (no change permissions)."""
    return logged_in(member)


@pytest.fixture
def outsider_browser(outsider):
    return logged_in(outsider)
