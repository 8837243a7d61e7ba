"""Raw access to Pulse's database: models built without Model.__init__ must be the instances the ORM builds."""

from datetime import UTC, datetime

import pytest
from django.db import connection as pulse_db
from django.db.models.signals import post_init

from monitors.database import model_loaded, model_new
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


def test_with_an_init_receiver_the_model_builds_it_so_the_receiver_runs():
    seen = []

    def receiver(sender, instance, **kwargs):
        seen.append(instance)

    post_init.connect(receiver, sender=CheckResult)
    try:
        result = model_new(CheckResult, _result_values())
    finally:
        post_init.disconnect(receiver, sender=CheckResult)
    assert seen == [result] and seen[0] is result
    assert _concrete(result) == _concrete(CheckResult(*_result_values()))
