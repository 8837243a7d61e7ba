"""Raw access to Pulse's own database, for the few hot statements the ORM makes too slow."""

import functools

import psycopg
from django.db import connection as pulse_db
from django.db.models import Model
from django.db.models.base import ModelState
from django.db.models.fields.related_descriptors import ForeignKeyDeferredAttribute
from django.db.models.query_utils import DeferredAttribute


def binary_cursor() -> psycopg.Cursor:
    """A psycopg cursor on Django's connection (same transaction) that binds parameters server-side, in
    binary: Django's own cursor interpolates arrays as text and parses timestamps in Python, which costs
    more CPU than the checks. Its binary results are decoded by psycopg's own loaders (timestamps as UTC, the
    session's time zone, as Django's text loader gives them; jsonb parsed, so read JSON as `::text` for a
    JSONField's converter)."""
    pulse_db.ensure_connection()
    return psycopg.Cursor(pulse_db.connection)


# Field descriptors whose setting on a new instance only stores the value under the field's name (the foreign
# key's clears a cached related object, which a new instance does not have yet).
_PLAIN_DESCRIPTORS = (DeferredAttribute, ForeignKeyDeferredAttribute)


@functools.cache
def _plain_attnames(model: type[Model]) -> tuple[str, ...] | None:
    """The concrete fields' attribute names when `model(*values)` only stores each value under its name; None when
    some field's descriptor does more (a file, a custom descriptor)."""
    names = tuple(f.attname for f in model._meta.concrete_fields)
    plain = all(type(model.__dict__.get(name)) in _PLAIN_DESCRIPTORS for name in names)
    return names if plain else None


def model_new(model: type[Model], values) -> Model:
    """`model(*values)` (every concrete field, in field order), a few times cheaper: the same instance state and
    attributes, without Model.__init__'s per-field setattr (the hot paths build thousands per pass). Falls back
    to `model(*values)` when a field has its own descriptor. Model.__init__'s pre_init/post_init signals are not
    sent: Pulse connects none (test_architecture), and test_database checks the models built here have none."""
    names = _plain_attnames(model)
    if names is None:
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
