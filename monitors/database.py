"""Raw access to Pulse's own database, for the few hot statements the ORM makes too slow."""

import functools

import psycopg
from django.db import connection as pulse_db
from django.db.models import Model
from django.db.models.base import ModelState
from django.db.models.query_utils import DeferredAttribute
from django.db.models.signals import post_init, pre_init


def binary_cursor() -> psycopg.Cursor:
    """A psycopg cursor on Django's connection (same transaction) that binds parameters server-side, in
    binary: Django's own cursor interpolates arrays as text and parses timestamps in Python, which costs
    more CPU than the checks. Its binary results are decoded by psycopg's own loaders (timestamps as UTC, the
    session's time zone, as Django's text loader gives them; jsonb parsed, so read JSON as `::text` for a
    JSONField's converter)."""
    pulse_db.ensure_connection()
    return psycopg.Cursor(pulse_db.connection)


@functools.cache
def _plain_attnames(model: type[Model]) -> tuple[str, ...] | None:
    """The concrete fields' attribute names when `model(*values)` only stores each value under its name (every
    field's class attribute a plain DeferredAttribute, whose foreign-key kind clears a cache a new instance does
    not have yet); None when some field does more (a file, a custom descriptor)."""
    names = tuple(f.attname for f in model._meta.concrete_fields)
    plain = all(isinstance(model.__dict__.get(name), DeferredAttribute) for name in names)
    return names if plain else None


def model_new(model: type[Model], values) -> Model:
    """`model(*values)` (every concrete field, in field order), a few times cheaper: the same instance state and
    attributes, without Model.__init__'s per-field setattr (the hot paths build thousands per pass). Falls back
    to `model(*values)` when init signals have receivers or a field has its own descriptor."""
    names = _plain_attnames(model)
    signalled = (pre_init.receivers and pre_init.has_listeners(model)) or (
        post_init.receivers and post_init.has_listeners(model)
    )
    if names is None or signalled:
        return model(*values)
    instance = model.__new__(model)
    instance._state = ModelState()
    instance.__dict__.update(zip(names, values, strict=True))
    return instance


def model_loaded(model: type[Model], values, *, db: str) -> Model:
    """`model.from_db(db, names, values)` for a row of every concrete field, in field order (see `model_new`)."""
    instance = model_new(model, values)
    instance._state.adding = False
    instance._state.db = db
    return instance
