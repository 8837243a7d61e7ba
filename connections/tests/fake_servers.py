"""Tiny local servers that are not PostgreSQL replicas: what a tenant could point a connection at."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Callable

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
HTTP_BANNER = "secret-http-banner/1.0"
SSH_BANNER = "OpenSSH_9.6 secret-ssh-banner"
GARBAGE_BANNER = "secret-garbage-banner"


def _recv_exact(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("peer closed")
        data += chunk
    return data


def _error_response(message: str, code: str = "XX000") -> bytes:
    fields = b"SFATAL\0" + f"C{code}\0".encode() + f"M{message}\0".encode() + b"\0"
    return b"E" + struct.pack("!I", len(fields) + 4) + fields


def _read_startup(conn: socket.socket) -> bytes:
    """Read the startup packet, declining TLS and GSS encryption requests on the way."""
    while True:
        (length,) = struct.unpack("!I", _recv_exact(conn, 4))
        body = _recv_exact(conn, length - 4)
        if struct.unpack("!I", body[:4])[0] in (SSL_REQUEST, GSSENC_REQUEST):
            conn.sendall(b"N")
            continue
        return body


class FakeServer:
    """A listener on 127.0.0.1 answering each connection with `handle`; counts connections and keeps passwords."""

    def __init__(self, handle: Callable[[FakeServer, socket.socket], None]):
        self.handle = handle
        self.connections = 0
        self.passwords: list[str] = []
        self.accepted: list[socket.socket] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            self.accepted.append(conn)
            with conn:
                conn.settimeout(5)
                with contextlib.suppress(OSError):
                    self.handle(self, conn)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self.listener.close()
        for conn in self.accepted:  # a handler still waiting on a client that never closed its end returns now
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self.thread.join(timeout=10)


def http_listener(server: FakeServer, conn: socket.socket) -> None:
    conn.recv(1024)
    conn.sendall(f"HTTP/1.1 400 Bad Request\r\nServer: {HTTP_BANNER}\r\nContent-Length: 0\r\n\r\n".encode())


def ssh_listener(server: FakeServer, conn: socket.socket) -> None:
    conn.sendall(f"SSH-2.0-{SSH_BANNER}\r\n".encode())
    conn.recv(1024)


def garbage_bytes_listener(server: FakeServer, conn: socket.socket) -> None:
    conn.recv(1024)
    conn.sendall(b"\x00\xff\x13" + GARBAGE_BANNER.encode() + b"\r\n")


def fake_error_listener(server: FakeServer, conn: socket.socket) -> None:
    """Speaks just enough of the protocol to send its own error text."""
    _read_startup(conn)
    conn.sendall(_error_response(f"{GARBAGE_BANNER}: internal build 4.2 at /srv/secret"))


def cleartext_password_listener(server: FakeServer, conn: socket.socket) -> None:
    """A fake PostgreSQL server that asks for the password in clear text and keeps whatever it is sent."""
    _read_startup(conn)
    conn.sendall(b"R" + struct.pack("!II", 8, 3))  # AuthenticationCleartextPassword
    kind = _recv_exact(conn, 1)
    (length,) = struct.unpack("!I", _recv_exact(conn, 4))
    body = _recv_exact(conn, length - 4)
    if kind == b"p":
        server.passwords.append(body.rstrip(b"\0").decode())
    conn.sendall(_error_response("password authentication failed for user", code="28P01"))


def silent_listener(server: FakeServer, conn: socket.socket) -> None:
    """Accepts, reads, and never answers: it keeps the connection open until the client gives up and closes it
    (longer than the client's 5 s connect timeout, which the server's own 5 s socket timeout would race)."""
    conn.settimeout(60)
    while conn.recv(1024):
        pass


FAKE_LISTENERS = {
    "http": http_listener,
    "ssh": ssh_listener,
    "garbage": garbage_bytes_listener,
    "fake-error": fake_error_listener,
}
