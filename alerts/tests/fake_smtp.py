"""A scripted SMTP server on 127.0.0.1 (not a test module): answers each command with a reply the test chose."""

from __future__ import annotations

import contextlib
import socket
import threading


class FakeSMTP:
    """Speaks just enough SMTP for Django's backend; `replies` maps a command (GREETING, EHLO, MAIL, RCPT, DATA,
    END for the end of the message data, QUIT) to the reply line it gets instead of the default."""

    DEFAULTS = {
        "GREETING": "220 fake ESMTP",
        "EHLO": "250 fake",
        "HELO": "250 fake",
        "MAIL": "250 ok",
        "RCPT": "250 ok",
        "DATA": "354 go ahead",
        "END": "250 queued",
        "RSET": "250 ok",
        "NOOP": "250 ok",
        "QUIT": "221 bye",
    }

    def __init__(self, **replies: str):
        self.replies = {**self.DEFAULTS, **replies}
        self.commands: list[str] = []
        self.messages: list[bytes] = []
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(5)
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn, conn.makefile("rb") as lines:
                self._session(conn, lines)

    def _reply(self, conn: socket.socket, key: str) -> bool:
        line = self.replies[key]
        conn.sendall(line.encode() + b"\r\n")
        return line.startswith(("421", "221"))  # the server closes the session after these

    def _session(self, conn: socket.socket, lines) -> None:
        try:
            if self._reply(conn, "GREETING"):
                return
            for raw in lines:
                command = raw.decode(errors="replace").strip()
                verb = command.split(" ", 1)[0].split(":", 1)[0].upper()
                self.commands.append(command)
                if verb == "DATA":
                    if self._reply(conn, "DATA") or not self.replies["DATA"].startswith("354"):
                        continue
                    data = b""
                    for chunk in lines:
                        if chunk in (b".\r\n", b".\n"):
                            break
                        data += chunk
                    self.messages.append(data)
                    if self._reply(conn, "END"):
                        return
                    continue
                if self._reply(conn, verb if verb in self.replies else "NOOP"):
                    return
        except OSError:
            pass

    def close(self) -> None:
        with contextlib.suppress(OSError):  # shutdown wakes the thread blocked in accept() (close alone does not)
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(5)
