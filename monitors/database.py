"""Raw access to Pulse's own database, for the few hot statements the ORM makes too slow."""

import psycopg
from django.db import connection as pulse_db


def binary_cursor() -> psycopg.Cursor:
    """A psycopg cursor on Django's connection (same transaction) that binds parameters server-side, in
    binary: Django's own cursor interpolates arrays as text and parses timestamps in Python, which costs
    more CPU than the checks."""
    pulse_db.ensure_connection()
    return psycopg.Cursor(pulse_db.connection)
