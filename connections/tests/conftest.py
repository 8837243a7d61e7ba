"""Fixtures of the connections tests: fake servers a tenant could point a connection at."""

import socket

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
def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return sock.getsockname()[1]
