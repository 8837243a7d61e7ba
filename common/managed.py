"""Objects managed by a monitors-as-code file: what may not change outside the file, and the one message.

A model that can be managed has a `managed_by` field (the file's `source` label, empty when the object is
managed in the admin and API) and a `MANAGED_FIELDS` tuple: the fields the file sets. The API serializers and
the admin forms ask `managed_change_problems` before saving and `managed_delete_problem` before deleting, so
both refuse the same edits. Clearing `managed_by` (the team opts the object out) is always allowed.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import models, router
from django.db.models.deletion import Collector

RELEASE_HINT = 'or opt this object out of the file first (set managed_by to "")'


def managed_by_field() -> models.CharField:
    return models.CharField(
        max_length=100,
        blank=True,
        default="",
        db_default="",
        editable=False,
        help_text="The monitors-as-code file (its source label) that manages this object; empty: not managed.",
    )


def _label(instance) -> str:
    return instance._meta.verbose_name


def managed_change_problems(*, instance, changed: Iterable[str], releasing: bool = False) -> dict[str, str]:
    """{field: message} for each managed field in `changed` of a managed `instance`; {} when the change is allowed.

    `changed` are the fields whose new value differs from the stored one. `releasing`: the same request clears
    `managed_by`, after which the object is the team's to edit."""
    if instance is None or instance.pk is None or not instance.managed_by or releasing:
        return {}
    managed = set(type(instance).MANAGED_FIELDS)
    return {
        field: f'this {_label(instance)} is managed by "{instance.managed_by}" (monitors as code): change '
        f"{field} in that file and apply it, {RELEASE_HINT}"
        for field in changed
        if field in managed
    }


def managed_delete_problem(*, instance) -> str | None:
    """Why `instance` may not be deleted outside its file: it is managed, or deleting it would cascade to objects
    a file manages (a connection with managed tables) — as the admin refuses a delete it cannot fully make."""
    if getattr(instance, "managed_by", ""):
        return (
            f'this {_label(instance)} is managed by "{instance.managed_by}" (monitors as code): remove it from '
            f"that file and apply with --prune, {RELEASE_HINT}"
        )
    collector = Collector(using=router.db_for_write(type(instance)))
    collector.collect([instance])
    cascaded = [objects for model, objects in collector.data.items() if hasattr(model, "MANAGED_FIELDS")]
    managed = [obj for objects in cascaded for obj in objects if obj.managed_by and obj is not instance]
    managed += [
        obj
        for query in collector.fast_deletes
        if hasattr(query.model, "MANAGED_FIELDS")
        for obj in query.exclude(managed_by="")[:1]
    ]
    if not managed:
        return None
    return (
        f"deleting this {_label(instance)} would delete the {_label(managed[0])} {managed[0]}, which "
        f'"{managed[0].managed_by}" manages (monitors as code): remove it from that file and apply with --prune, '
        f"{RELEASE_HINT}"
    )


def managed_by_problem(value) -> str | None:
    """Only the release is written from outside a file: managed_by may be set to "" and nothing else."""
    if value not in ("", None):
        return 'only "" (opt out of the file) can be written here; a file marks the objects it manages'
    return None


def changed_fields(*, instance, attrs: dict, write_only=()) -> list[str]:
    """The fields of `attrs` that would change `instance`: a different value, or a write-only field (a secret
    that cannot be compared) given at all."""
    if instance is None:
        return []
    return [name for name, value in attrs.items() if name in write_only or getattr(instance, name, None) != value]
