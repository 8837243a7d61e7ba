"""Check kinds: one module each, and the one registry every list of kinds is derived from.

A kind module declares `KIND`, `LABEL`, `SCOPE` ("table" or "connection"), `CONFIGURABLE` (a user adds it
as a Check; else Pulse runs it on its own), `QUERIES` (how many queries a run usually sends, for the budget
reservation) and `format_value(value) -> str` (how notifications show its values). Table kinds expose
`run(ctx, check=None) -> Outcome`; replication_lag exposes `outcome(*, connection, state)`. Queries are
fixed `psycopg.sql` templates; names are identifiers that were looked up in the replica's catalog when
the table was saved.

Adding a kind: one module here, one entry in KINDS, and `makemigrations` for the choices.
"""

from django.db import models

from monitors.checks import custom_sql, freshness, null_rate, replication_lag, row_count, schema_change, volume
from monitors.checks.base import CheckContext, Outcome, Status, format_duration, format_quantity

KINDS = {
    module.KIND: module
    for module in (freshness, volume, schema_change, null_rate, row_count, custom_sql, replication_lag)
}
TABLE_KINDS = tuple(kind for kind, module in KINDS.items() if module.SCOPE == "table")
# What every table's run executes, in this order (freshness only with a timestamp column).
BUILT_IN = {kind: KINDS[kind] for kind in ("schema_change", "volume", "freshness")}
CONFIGURABLE = {kind: module for kind, module in KINDS.items() if module.CONFIGURABLE}

CheckKind = models.TextChoices("CheckKind", [(kind.upper(), (kind, module.LABEL)) for kind, module in KINDS.items()])
ConfigurableKind = models.TextChoices(
    "ConfigurableKind", [(kind.upper(), (kind, module.LABEL)) for kind, module in CONFIGURABLE.items()]
)


def label(kind: str) -> str:
    """A kind's name for people ('Null rate'); an unknown kind is shown as it is."""
    module = KINDS.get(kind)
    return module.LABEL if module else kind


def format_value(kind: str, value: float) -> str:
    """A value of `kind` for people: durations for freshness and lag, percentages for null rates, else numbers."""
    module = KINDS.get(kind)
    return module.format_value(value) if module else format_quantity(value)


__all__ = [
    "BUILT_IN",
    "CONFIGURABLE",
    "KINDS",
    "TABLE_KINDS",
    "CheckContext",
    "CheckKind",
    "ConfigurableKind",
    "Outcome",
    "Status",
    "format_duration",
    "format_value",
    "label",
]
