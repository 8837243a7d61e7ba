"""Throwaway PostgreSQL primary + hot-standby pairs, for tests, benchmarks and the quick-start demo.

Run as root, the server commands run as the `postgres` OS user (PostgreSQL refuses root).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

PG_BIN = Path(os.environ.get("PULSE_PG_BIN", "/usr/lib/postgresql/15/bin"))
SUPERUSER = "postgres"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_postgres(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    if os.geteuid() == 0:
        args = ["runuser", "-u", "postgres", "--", *args]
    return subprocess.run(args, check=True, capture_output=True, text=True, **kwargs)


@dataclass
class Server:
    data_dir: Path
    port: int
    log_file: Path

    def start(self) -> None:
        _as_postgres(
            [
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                "30",
                "-o",
                f"-p {self.port} -k {self.data_dir} -c listen_addresses=127.0.0.1",
                "start",
            ]
        )

    def stop(self, mode: str = "fast") -> None:
        if (self.data_dir / "postmaster.pid").exists():
            _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop"])

    def promote(self) -> None:
        _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir), "-w", "promote"])

    def dsn(self, *, user: str = SUPERUSER, password: str | None = None, dbname: str = "postgres") -> dict:
        info = {"host": "127.0.0.1", "port": self.port, "user": user, "dbname": dbname}
        if password is not None:
            info["password"] = password
        return info

    def connect(self, dbname: str = "postgres", **kwargs) -> psycopg.Connection:
        return psycopg.connect(**self.dsn(dbname=dbname), autocommit=True, **kwargs)


def standalone_server(base_dir: str | Path | None = None) -> Server:
    """A single throwaway server (trust auth on loopback), started; e.g. Pulse's own database in fault tests."""
    base = Path(base_dir or tempfile.mkdtemp(prefix="pulse-pg-"))
    base.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    base.chmod(0o755)
    server = Server(data_dir=base / "data", port=free_port(), log_file=base / "server.log")
    _as_postgres(
        [str(PG_BIN / "initdb"), "-D", str(server.data_dir), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-sync"]
    )
    with open(server.data_dir / "postgresql.conf", "a") as conf:
        conf.write("fsync = off\nfull_page_writes = off\nshared_buffers = 32MB\nmax_connections = 100\n")
    server.start()
    return server


@dataclass
class ReplicaPair:
    """A primary and a streaming hot standby on free loopback ports."""

    base_dir: Path
    primary: Server = field(init=False)
    standby: Server = field(init=False)

    @classmethod
    def create(cls, base_dir: str | Path | None = None, *, autovacuum: bool = True) -> ReplicaPair:
        """Start a pair; `autovacuum=False` (tests) keeps statistics exactly as the SQL that ran left them:
        a table gets pg_stats and reltuples only from an explicit ANALYZE, never from a background worker."""
        base = Path(base_dir or tempfile.mkdtemp(prefix="pulse-pg-"))
        base.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(base, "postgres", "postgres")
        base.chmod(0o755)
        pair = cls(base_dir=base)
        pair.primary = Server(data_dir=base / "primary", port=free_port(), log_file=base / "primary.log")
        pair.standby = Server(data_dir=base / "standby", port=free_port(), log_file=base / "standby.log")
        pair._init_primary(autovacuum=autovacuum)
        pair.primary.start()
        pair._clone_standby()
        pair.standby.start()
        return pair

    def _init_primary(self, *, autovacuum: bool) -> None:
        _as_postgres(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(self.primary.data_dir),
                "-U",
                SUPERUSER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
            ]
        )
        hba = self.primary.data_dir / "pg_hba.conf"
        rules = "host all postgres 127.0.0.1/32 trust\nhost replication postgres 127.0.0.1/32 trust\n"
        hba.write_text(rules + hba.read_text())
        with open(self.primary.data_dir / "postgresql.conf", "a") as conf:
            conf.write(
                "wal_level = replica\nmax_wal_senders = 5\nhot_standby = on\nfsync = off\n"
                "full_page_writes = off\nshared_buffers = 32MB\n"
                "hot_standby_feedback = off\nmax_standby_streaming_delay = 1s\n"
                "wal_receiver_status_interval = 1s\n"
                f"autovacuum = {'on' if autovacuum else 'off'}\n"
            )

    def _clone_standby(self) -> None:
        _as_postgres(
            [
                str(PG_BIN / "pg_basebackup"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.primary.port),
                "-U",
                SUPERUSER,
                "-D",
                str(self.standby.data_dir),
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-sync",
            ]
        )

    def wait_for_replay(self, timeout: float = 10.0) -> None:
        """Block until the standby has replayed everything the primary has written so far."""
        with self.primary.connect() as conn:
            target = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]
        deadline = time.monotonic() + timeout
        with self.standby.connect() as conn:
            while True:
                caught_up = conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,)).fetchone()[0]
                if caught_up:
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError("standby did not catch up")
                time.sleep(0.02)

    def stop(self) -> None:
        for server in (self.standby, self.primary):
            with contextlib.suppress(subprocess.CalledProcessError):
                server.stop(mode="immediate")
        shutil.rmtree(self.base_dir, ignore_errors=True)
