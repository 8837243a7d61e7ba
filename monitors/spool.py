"""A local spool for batches whose recording could not reach Pulse's database in time.

One JSON file per batch under `PULSE_SPOOL_DIR` (default `var/spool`), written atomically (a temporary
file in the same directory, fsynced, then renamed). A reader claims a file by renaming it to
`*.flushing` (one process wins on a shared directory) and deletes it once recorded; a claim older than
`STALE_CLAIM_SECONDS` (its process died mid-flush) is put back. The payload is plain JSON; what it means
is recording.py's business.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings

logger = logging.getLogger(__name__)
STALE_CLAIM_SECONDS = 300


def spool_dir() -> Path:
    return Path(settings.PULSE_SPOOL_DIR)


def spool_put(payload: dict, *, name: str) -> Path:
    """Write `payload` as `<name>.json`, atomically: a reader sees the whole file or none of it."""
    directory = spool_dir()
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(payload, out)
            out.flush()
            os.fsync(out.fileno())
        target = directory / f"{name}.json"
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return target


def spool_pending() -> bool:
    directory = spool_dir()
    return directory.is_dir() and any(directory.glob("*.json"))


def _put_back_stale_claims(directory: Path) -> None:
    for claimed in directory.glob("*.json.flushing"):
        try:
            if time.time() - claimed.stat().st_mtime > STALE_CLAIM_SECONDS:
                os.replace(claimed, claimed.with_suffix(""))
        except FileNotFoundError:
            pass


def spool_claim() -> Iterator[tuple[Path, dict]]:
    """Claim spooled batches one by one, oldest first: yields (claimed path, payload).

    The caller calls `spool_done(path)` after recording it, or `spool_return(path)` to leave it for later.
    """
    directory = spool_dir()
    if not directory.is_dir():
        return
    _put_back_stale_claims(directory)
    for path in sorted(directory.glob("*.json")):
        claimed = path.with_name(path.name + ".flushing")
        try:
            os.replace(path, claimed)  # atomic: of two processes, one gets FileNotFoundError
            os.utime(claimed)
        except FileNotFoundError:
            continue  # another process took it
        try:
            payload = json.loads(claimed.read_text())
        except (OSError, ValueError):
            logger.exception("spooled batch %s is unreadable; moved aside", path.name)
            os.replace(claimed, claimed.with_name(path.name + ".unreadable"))
            continue
        yield claimed, payload


def spool_done(path: Path) -> None:
    path.unlink(missing_ok=True)


def spool_return(path: Path) -> None:
    os.replace(path, path.with_name(path.name.removesuffix(".flushing")))


def spool_reject(path: Path) -> None:
    """Keep a batch that cannot be recorded (not a database outage) aside, for an operator to look at."""
    os.replace(path, path.with_name(path.name.removesuffix(".flushing") + ".rejected"))
