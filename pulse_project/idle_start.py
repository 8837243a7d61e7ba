"""`manage.py runchecks --once` with nothing due, answered before Django starts.

A `--once` pass that finds nothing to claim only reports when the first table becomes claimable. That is one
statement (monitors/due.py, the same one the runner asks through Django); loading Django, its apps and models
and the checking machinery costs about three times as much as reading the settings and asking it. So for
exactly `runchecks --once`, manage.py asks here first: when no table is claimable yet and no spooled batch
waits to be recorded, this prints the runner's line and the process exits 0; in every other case (something
is due or could be, a spool file, settings or a database this does not handle, any error) it returns False and
the command runs as usual, which claims, checks, records and reports errors itself.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from importlib import import_module
from pathlib import Path

# Django's connection options with an effect beyond libpq's parameters: with any of them, Django connects.
_EARLY_CONNECT_TIMEOUT_SECONDS = 2  # libpq's minimum
_DJANGO_ONLY_OPTIONS = {"assume_role", "pool", "server_side_binding", "cursor_factory", "context"}


def runchecks_once_idle(argv: list[str]) -> bool:
    """True when `argv` is `manage.py runchecks --once`, nothing is claimable yet and the line is printed."""
    if argv[1:] != ["runchecks", "--once"]:
        return False
    try:
        settings = import_module(os.environ["DJANGO_SETTINGS_MODULE"])
        line = _idle_line(settings)
    except Exception:
        return False  # the command itself runs and reports whatever went wrong
    if line is None:
        return False
    sys.stdout.write(line + "\n")
    return True


def _idle_line(settings) -> str | None:
    spool = Path(settings.PULSE_SPOOL_DIR)
    if spool.is_dir() and any(spool.glob("*.json")):
        return None  # the runner records spooled batches first
    params = _connection_params(settings.DATABASES["default"])
    if params is None:
        return None
    from zoneinfo import ZoneInfo

    import psycopg

    from monitors.due import first_claimable, idle_line

    now = datetime.now(UTC)
    with (
        psycopg.connect(**params, autocommit=True, cursor_factory=psycopg.ClientCursor) as conn,
        conn.cursor() as cursor,
    ):
        first = first_claimable(cursor, now=now)
    if first is not None and first <= now:
        return None
    return idle_line(
        first=first, now=now, zone=ZoneInfo(settings.TIME_ZONE), forced=False, some_tables=False, once=True
    )


def _connection_params(database: dict) -> dict | None:
    """libpq parameters for Pulse's database as Django's PostgreSQL backend builds them; None if it is not
    PostgreSQL, names no database or has options that need Django."""
    options = dict(database.get("OPTIONS") or {})
    if (
        database.get("ENGINE") != "django.db.backends.postgresql"
        or not database.get("NAME")
        or _DJANGO_ONLY_OPTIONS & options.keys()
    ):
        return None
    options.pop("isolation_level", None)
    params = {"dbname": database["NAME"], **options}
    params["client_encoding"] = "UTF8"
    params["prepare_threshold"] = options.get("prepare_threshold")
    # A database that does not answer at once is left to the command, which waits its full timeout and says why.
    params["connect_timeout"] = _EARLY_CONNECT_TIMEOUT_SECONDS
    for key, param in (("USER", "user"), ("PASSWORD", "password"), ("HOST", "host"), ("PORT", "port")):
        if database.get(key):
            params[param] = database[key]
    return params
