"""Fixtures of the connections tests: fake servers a tenant could point a connection at."""

import pytest

from connections.tests.fake_servers import FakeServer


@pytest.fixture
def fake_server():
    """Start fake servers by handler; all are closed at the end of the test."""
    started: list[FakeServer] = []

    def start(handle) -> FakeServer:
        started.append(FakeServer(handle))
        return started[-1]

    yield start
    for server in started:
        server.close()


@pytest.fixture
def admin_form():
    """The admin change form of a connection as a browser posts it, with `changes` (None leaves a field out)."""

    def form_for(connection, **changes):
        form = {
            "name": connection.name,
            "team": connection.team_id,
            "host": connection.host,
            "port": connection.port,
            "database": connection.database,
            "username": connection.username,
            "password": "",
            "sslmode": connection.sslmode,
            "require_replica": "on",
            "statement_timeout_ms": connection.statement_timeout_ms,
            "max_queries_per_hour": connection.max_queries_per_hour,
            "max_queries_per_second": connection.max_queries_per_second,
            "max_query_cost": connection.max_query_cost,
            "replica_time_share_percent": connection.replica_time_share_percent,
            "replica_time_burst_seconds": connection.replica_time_burst_seconds,
            "replication_lag_threshold_seconds": connection.replication_lag_threshold_seconds,
            "connection_error_threshold": connection.connection_error_threshold,
            "holidays": ",".join(day.isoformat() for day in connection.holidays),
            "max_concurrent_queries": connection.max_concurrent_queries,
            "is_active": "on",
            "tables-TOTAL_FORMS": 0,  # the monitored tables inline the project layer adds
            "tables-INITIAL_FORMS": 0,
            "discovery-TOTAL_FORMS": 0,  # and its discovery section
            "discovery-INITIAL_FORMS": 0,
            **changes,
        }
        return {field: value for field, value in form.items() if value is not None}

    return form_for
