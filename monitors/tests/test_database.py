"""Raw access to Pulse's database: models built without Model.__init__ must be the instances the ORM builds."""

from datetime import UTC, datetime

import pytest
from django.db import connection as pulse_db
from django.db import models
from django.db.models.fields.files import FieldFile
from django.db.models.signals import post_init, pre_init
from django.test.utils import isolate_apps

from monitors.database import _plain_attnames, model_loaded, model_new
from monitors.models import CheckResult, MonitoredTable


def _concrete(instance) -> dict:
    return {f.attname: getattr(instance, f.attname) for f in type(instance)._meta.concrete_fields}


def _state(instance) -> tuple:
    return instance._state.adding, instance._state.db, instance._state.fields_cache


def _result_values() -> tuple:
    at = datetime(2026, 11, 30, 5, 0, tzinfo=UTC)
    return (None, 7, 11, None, "volume", "fail", 3.0, 5.5, 9.25, "3 rows", at, 12, 2, at, "rows:at:1h", {"a": [1]},
            True, False)  # fmt: skip


def test_a_new_instance_equals_the_models_own_field_by_field():
    ours, theirs = model_new(CheckResult, _result_values()), CheckResult(*_result_values())
    assert type(ours) is CheckResult
    assert vars(ours).keys() == vars(theirs).keys()
    assert _concrete(ours) == _concrete(theirs)
    assert _state(ours) == _state(theirs) == (True, None, {})
    assert ours.pk is None and ours.connection_id == 7 and ours.table_id == 11


def test_a_new_instance_takes_its_related_objects_as_the_models_own_does(make_connection):
    connection = make_connection()
    values = list(_result_values())
    values[1], values[2] = connection.pk, None
    result = model_new(CheckResult, values)
    assert result.connection == connection  # loaded by its id, as for CheckResult(*values)
    assert CheckResult.connection.field.is_cached(result)
    result.connection_id = connection.pk + 1000  # the descriptor still forgets the object of the old id
    assert not CheckResult.connection.field.is_cached(result)


@pytest.mark.django_db
def test_a_loaded_instance_equals_from_db_field_by_field(make_connection):
    table = MonitoredTable.objects.create(
        connection=make_connection(), table_name="orders", plan_costs={"count": {"cost": 1.5}}, sensitivity=3.5
    )
    names = [f.attname for f in MonitoredTable._meta.concrete_fields]
    values = [getattr(table, name) for name in names]
    ours, theirs = (
        model_loaded(MonitoredTable, values, db=pulse_db.alias),
        MonitoredTable.from_db(pulse_db.alias, names, values),
    )
    assert vars(ours).keys() == vars(theirs).keys()
    assert _concrete(ours) == _concrete(theirs)
    assert _state(ours) == _state(theirs) == (False, pulse_db.alias, {})
    assert ours == table


def test_the_models_built_without_init_have_no_init_signal_receivers():
    """model_new skips Model.__init__'s pre_init/post_init: a receiver for a model built that way (the claimed tables,
    the results) would be skipped, so none may exist."""
    for model in (CheckResult, MonitoredTable):
        assert not pre_init.has_listeners(model) and not post_init.has_listeners(model), model.__name__


@isolate_apps("monitors")  # a model of the test only, kept out of the app registry (and of makemigrations)
def test_a_field_with_its_own_descriptor_makes_the_model_build_it():
    class Upload(models.Model):
        document = models.FileField()

        class Meta:
            app_label = "monitors"

        def __str__(self):
            return self.document.name

    assert _plain_attnames(Upload) is None and _plain_attnames(CheckResult) is not None
    upload = model_new(Upload, (None, "a.txt"))
    assert isinstance(upload.document, FieldFile) and upload.document.name == "a.txt"
    assert upload._state.adding and vars(upload).keys() == vars(Upload(None, "a.txt")).keys()
