"""monitors.tables: one pause/resume rule, whether a table is changed through the API, its admin change form
or the inline under its connection; and the admin's table form runs the API's catalog rules."""

from datetime import timedelta

import pytest
from django.contrib import admin
from django.test import RequestFactory
from django.utils import timezone

from connections.models import Connection
from monitors.admin import MonitoredTableAdmin, MonitoredTableInline
from monitors.models import CheckResult, MonitoredTable
from monitors.tables import table_activation_apply, table_rebaseline, table_schema_accept_current

pytestmark = pytest.mark.django_db


@pytest.fixture
def orders(make_connection):
    """A healthy table, checked a minute ago and due again in four."""
    now = timezone.now()
    return MonitoredTable.objects.create(
        connection=make_connection(),
        table_name="orders",
        timestamp_column="created_at",
        status=MonitoredTable.Status.HEALTHY,
        last_checked_at=now - timedelta(minutes=1),
        next_check_at=now + timedelta(minutes=4),
    )


def stored(table) -> tuple:
    table.refresh_from_db()
    return table.is_active, table.status, table.next_check_at


def admin_request(user):
    request = RequestFactory().post("/admin/")
    request.user = user
    return request


def _form_data(form) -> dict:
    data = {}
    for name in form.fields:
        value = form[name].initial
        if value is None or value is False:
            continue
        data[name] = value
    return data


def change_form_save(table, user, **changes):
    """Submit the table's admin change form with `changes` the way ModelAdmin.changeform_view saves it."""
    model_admin = MonitoredTableAdmin(MonitoredTable, admin.site)
    request = admin_request(user)
    form_class = model_admin.get_form(request, table, change=True)
    data = {**_form_data(form_class(instance=table)), **changes}
    data = {name: value for name, value in data.items() if value is not False}
    form = form_class(data, instance=table)
    if not form.is_valid():
        return form.errors
    obj = model_admin.save_form(request, form, change=True)
    model_admin.save_model(request, obj, form, change=True)
    return {}


def add_form_save(user, **fields):
    model_admin = MonitoredTableAdmin(MonitoredTable, admin.site)
    request = admin_request(user)
    form_class = model_admin.get_form(request, None, change=False)
    data = {**_form_data(form_class()), **fields}
    form = form_class(data)
    if not form.is_valid():
        return form.errors
    obj = model_admin.save_form(request, form, change=False)
    model_admin.save_model(request, obj, form, change=False)
    return {}


def inline_save(connection, user, rows: list[dict]):
    """Submit the tables inline under the connection's change page; rows without an id are new tables."""
    inline = MonitoredTableInline(Connection, admin.site)
    formset_class = inline.get_formset(admin_request(user), connection)
    prefix = formset_class.get_default_prefix()
    existing = [row for row in rows if row.get("id")]
    data = {f"{prefix}-TOTAL_FORMS": str(len(rows)), f"{prefix}-INITIAL_FORMS": str(len(existing))}
    for index, row in enumerate(rows):
        for field, value in {"connection": connection.pk, **row}.items():
            if value is not False:
                data[f"{prefix}-{index}-{field}"] = value
    formset = formset_class(data, instance=connection, prefix=prefix)
    if not formset.is_valid():
        return [errors for errors in formset.errors if errors] or formset.non_form_errors()
    formset.save()
    return []


def inline_row(table, **changes) -> dict:
    return {
        "id": table.pk,
        "schema_name": table.schema_name,
        "table_name": table.table_name,
        "timestamp_column": table.timestamp_column,
        "check_interval_seconds": table.check_interval_seconds,
        "is_active": table.is_active,
        **changes,
    }


def api_save(client, table, **changes):
    response = client.patch(f"/api/tables/{table.id}", changes, format="json")
    assert response.status_code == 200, response.data


def test_the_rule_pauses_and_makes_a_resumed_table_due_now(orders):
    orders.is_active = False
    table_activation_apply(table=orders, was_active=True)
    assert orders.status == "paused"
    orders.is_active = True
    table_activation_apply(table=orders, was_active=False)
    assert orders.status == "unknown" and orders.next_check_at is None


def test_the_rule_leaves_an_unchanged_table_alone(orders):
    due = orders.next_check_at
    table_activation_apply(table=orders, was_active=True)
    assert orders.status == "healthy" and orders.next_check_at == due


@pytest.mark.parametrize("where", ["api", "change_form", "inline"])
def test_pause_and_resume_store_the_same_fields_wherever_they_are_made(where, orders, owner, owner_client):
    def change(**changes):
        if where == "api":
            api_save(owner_client, orders, **changes)
        elif where == "change_form":
            assert change_form_save(orders, owner, **changes) == {}
        else:
            assert inline_save(orders.connection, owner, [inline_row(orders, **changes)]) == []

    due = orders.next_check_at
    change(is_active=False)
    assert stored(orders) == (False, "paused", due)
    change(is_active=True)
    assert stored(orders) == (True, "unknown", None)


@pytest.mark.parametrize("where", ["api", "change_form", "inline"])
def test_an_unrelated_change_keeps_status_and_due_time(where, orders, owner, owner_client):
    due = orders.next_check_at
    if where == "api":
        api_save(owner_client, orders, check_interval_seconds=600)
    elif where == "change_form":
        assert change_form_save(orders, owner, check_interval_seconds=600) == {}
    else:
        assert inline_save(orders.connection, owner, [inline_row(orders, check_interval_seconds=600)]) == []
    assert stored(orders) == (True, "healthy", due)
    assert orders.check_interval_seconds == 600


def test_the_admin_form_refuses_a_move_to_another_connection(orders, make_connection, owner):
    other = make_connection(name="other")
    errors = change_form_save(orders, owner, connection=other.pk)
    assert "cannot move to another connection" in str(errors["connection"])
    orders.refresh_from_db()
    assert orders.connection_id != other.pk


def test_the_admin_form_looks_up_a_changed_table_on_the_replica(orders, owner):
    errors = change_form_save(orders, owner, table_name="no_such_table")
    assert "not found" in str(errors["table_name"])
    errors = change_form_save(orders, owner, timestamp_column="note")
    assert "not a date or timestamp type" in str(errors["timestamp_column"])
    orders.refresh_from_db()
    assert (orders.table_name, orders.timestamp_column) == ("orders", "created_at")


def test_the_admin_add_form_looks_up_the_table_like_the_api(make_connection, owner):
    shop = make_connection()
    errors = add_form_save(owner, connection=shop.pk, schema_name="private", table_name="salaries")
    assert "not readable" in str(errors["table_name"])
    assert not MonitoredTable.objects.exists()
    assert add_form_save(owner, connection=shop.pk, schema_name="public", table_name="customers") == {}
    assert MonitoredTable.objects.get().table_name == "customers"


def test_the_inline_looks_up_new_tables_on_the_replica(orders, owner):
    new = {"schema_name": "public", "table_name": "nope", "timestamp_column": "", "check_interval_seconds": 300}
    errors = inline_save(orders.connection, owner, [inline_row(orders), {**new, "is_active": True}])
    assert "not found" in str(errors)
    assert MonitoredTable.objects.count() == 1
    good = {**new, "table_name": "customers", "is_active": True}
    assert inline_save(orders.connection, owner, [inline_row(orders), good]) == []
    added = MonitoredTable.objects.get(table_name="customers")
    assert added.status == "unknown" and added.next_check_at is None


def test_rebaseline_restarts_training_and_backfill(orders):
    MonitoredTable.objects.filter(pk=orders.pk).update(backfilled_at=timezone.now())
    since = timezone.now() - timedelta(hours=3)
    returned = table_rebaseline(table=orders, since=since)
    orders.refresh_from_db()
    assert returned.baseline_since == orders.baseline_since == since
    assert orders.backfilled_at is None


def test_schema_accept_takes_the_latest_observed_columns(orders):
    columns = [["id", "bigint", True], ["created_at", "timestamp with time zone", True]]
    now = timezone.now()
    for at, cols in ((now - timedelta(hours=1), [["id", "bigint", True]]), (now, columns)):
        CheckResult.objects.create(
            connection=orders.connection,
            table=orders,
            kind="schema_change",
            status="fail",
            started_at=at,
            details={"columns": cols},
        )
    table_schema_accept_current(table=orders)
    orders.refresh_from_db()
    assert orders.schema_reference == columns


def test_tables_cannot_be_added_inline_to_a_connection_not_saved_yet(teams, owner, replica_settings):
    unsaved = Connection(name="new", team=teams[0], **{k: v for k, v in replica_settings.items() if k != "password"})
    row = {"schema_name": "public", "table_name": "orders", "timestamp_column": "", "check_interval_seconds": 300}
    errors = inline_save(unsaved, owner, [{**row, "is_active": True}])
    assert "Save the connection first" in str(errors)
    assert not MonitoredTable.objects.exists()
