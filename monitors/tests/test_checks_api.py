import pytest
from django import forms

from connections.models import QueryAllowance
from monitors.check_rules import check_problems
from monitors.models import Check, MonitoredTable

pytestmark = pytest.mark.django_db

COUNT_ORDERS = "SELECT count(*) FROM public.orders"


@pytest.fixture
def shop(make_connection):
    return make_connection()


@pytest.fixture
def orders(shop):
    return MonitoredTable.objects.create(connection=shop, table_name="orders")


# Bounds that make each kind valid unless a test says otherwise (None included).
BOUNDS = {"null_rate": {"max_value": 0.5}, "row_count": {"min_value": 1}, "custom_sql": {"min_value": 1}}


def with_bounds(fields):
    kind = fields.get("kind", "row_count")
    return {"kind": kind, **BOUNDS.get(kind, {}), **fields}


def create(client, table, **fields):
    return client.post("/api/checks", {"table": table.id, **with_bounds(fields)}, format="json")


def a_check(table, **fields):
    return Check.objects.create(table=table, **with_bounds(fields))


# --- CRUD -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "queries"),
    [({"kind": "custom_sql", "sql": COUNT_ORDERS}, 4), ({"kind": "null_rate", "column": "note"}, 3)],
)
def test_save_time_lookups_count_against_the_budget_and_stop_when_it_is_spent(
    owner_client, make_connection, fields, queries
):
    """The function lookup, Describe and EXPLAIN (custom SQL) or the column lookup (null rate), and the recovery
    check."""
    shop = make_connection(max_queries_per_hour=queries)
    orders = MonitoredTable.objects.create(connection=shop, table_name="orders")
    assert create(owner_client, orders, **fields).status_code == 201
    assert QueryAllowance.objects.get(connection=shop).queries_used == queries

    refused = create(owner_client, orders, **fields)
    assert refused.status_code == 400
    assert "query budget" in str(refused.data)
    assert Check.objects.filter(table=orders).count() == 1


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": "null_rate", "column": "note", "max_value": 0.5, "min_value": None},
        {"kind": "null_rate", "column": "amount", "min_value": 0, "max_value": 1},
        {"kind": "row_count", "min_value": 100, "max_value": 1_000_000},
        {"kind": "row_count", "min_value": None, "max_value": 10},
        {"kind": "custom_sql", "sql": COUNT_ORDERS + ";", "min_value": 1, "max_value": None},
        {"kind": "custom_sql", "sql": "SELECT avg(amount) FROM orders", "min_value": -5, "max_value": 5},
    ],
)
def test_it_creates_each_kind_of_check(owner_client, orders, fields):
    response = create(owner_client, orders, **fields)
    assert response.status_code == 201, response.data
    body = response.json()
    assert set(body) == {
        "id",
        "table",
        "kind",
        "column",
        "sql",
        "min_value",
        "max_value",
        "is_active",
        "managed_by",
        "created_at",
        "updated_at",
    }
    assert (body["table"], body["kind"], body["is_active"]) == (orders.id, fields["kind"], True)
    check = Check.objects.get()
    assert (check.kind, check.min_value, check.max_value) == (fields["kind"], fields["min_value"], fields["max_value"])
    assert check.column == fields.get("column", "")
    assert check.sql == fields.get("sql", "")


def test_it_lists_reads_updates_and_deletes(owner_client, orders):
    check_id = create(owner_client, orders, max_value=10).json()["id"]
    listing = owner_client.get("/api/checks").json()
    assert listing["count"] == 1 and listing["results"][0]["id"] == check_id
    assert owner_client.get(f"/api/checks/{check_id}").json()["max_value"] == 10
    response = owner_client.patch(f"/api/checks/{check_id}", {"max_value": 20, "is_active": False}, format="json")
    assert response.status_code == 200, response.data
    check = Check.objects.get()
    assert (check.max_value, check.is_active) == (20, False)
    assert owner_client.delete(f"/api/checks/{check_id}").status_code == 204
    assert not Check.objects.exists()


def test_it_answers_with_and_without_a_trailing_slash(owner_client, orders):
    response = owner_client.post(
        "/api/checks/", {"table": orders.id, "kind": "row_count", "min_value": 1}, format="json"
    )
    assert response.status_code == 201
    check_id = response.json()["id"]
    assert owner_client.get("/api/checks/").json()["count"] == 1
    assert owner_client.get(f"/api/checks/{check_id}/").status_code == 200
    assert owner_client.patch(f"/api/checks/{check_id}/", {"min_value": 2}, format="json").status_code == 200
    assert owner_client.delete(f"/api/checks/{check_id}/").status_code == 204


def test_it_filters_by_table_and_kind(owner_client, shop, orders):
    customers = MonitoredTable.objects.create(connection=shop, table_name="customers")
    a_check(orders)
    a_check(orders, kind="custom_sql", sql=COUNT_ORDERS)
    a_check(customers)
    assert owner_client.get(f"/api/checks?table={orders.id}").json()["count"] == 2
    assert owner_client.get("/api/checks?kind=row_count").json()["count"] == 2
    assert owner_client.get(f"/api/checks?table={customers.id}&kind=custom_sql").json()["count"] == 0
    assert owner_client.get("/api/checks").json()["count"] == 3
    assert owner_client.get("/api/checks?table=abc").status_code == 400
    assert owner_client.get("/api/checks?kind=freshness").status_code == 400


# --- validation ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"kind": "freshness"}, "kind", "automatic"),
        ({"kind": "volume"}, "kind", "automatic"),
        ({"kind": "schema_change"}, "kind", "automatic"),
        ({"kind": "bogus"}, "kind", "not a valid choice"),
        ({"kind": None}, "kind", ""),
        # null_rate
        ({"kind": "null_rate", "max_value": 0.1}, "column", "need a column"),
        ({"kind": "null_rate", "column": "nope", "max_value": 0.1}, "column", 'column "nope" not found in table'),
        ({"kind": "null_rate", "column": "x" * 64, "max_value": 0.1}, "column", ""),
        ({"kind": "null_rate", "column": "bad\x01name", "max_value": 0.1}, "column", "control characters"),
        ({"kind": "null_rate", "column": "note", "max_value": None}, "max_value", "need max_value"),
        ({"kind": "null_rate", "column": "note", "max_value": 1.5}, "max_value", "between 0 and 1"),
        ({"kind": "null_rate", "column": "note", "max_value": -0.1}, "max_value", "between 0 and 1"),
        ({"kind": "null_rate", "column": "note", "min_value": 2, "max_value": 1}, "min_value", "between 0 and 1"),
        ({"kind": "null_rate", "column": "note", "min_value": 0.5, "max_value": 0.1}, "min_value", "must not exceed"),
        ({"kind": "null_rate", "column": "note", "max_value": 0.1, "sql": COUNT_ORDERS}, "sql", "only custom_sql"),
        # row_count
        ({"kind": "row_count", "min_value": None}, "min_value", "need min_value, max_value or both"),
        ({"kind": "row_count", "min_value": None}, "max_value", "need min_value, max_value or both"),
        ({"kind": "row_count", "min_value": -1}, "min_value", "cannot be negative"),
        ({"kind": "row_count", "min_value": 10, "max_value": 5}, "min_value", "must not exceed"),
        ({"kind": "row_count", "column": "note"}, "column", "only null_rate"),
        ({"kind": "row_count", "sql": COUNT_ORDERS}, "sql", "only custom_sql"),
        # custom_sql
        ({"kind": "custom_sql"}, "sql", "need sql"),
        ({"kind": "custom_sql", "sql": COUNT_ORDERS, "min_value": None}, "min_value", "need min_value"),
        ({"kind": "custom_sql", "sql": COUNT_ORDERS, "min_value": 5, "max_value": 1}, "min_value", "must not exceed"),
        ({"kind": "custom_sql", "sql": COUNT_ORDERS, "column": "note"}, "column", "only null_rate"),
        ({"kind": "custom_sql", "sql": "x" * 10_001}, "sql", ""),
        ({"kind": "custom_sql", "sql": "SELECT count(*) FROM nope"}, "sql", 'relation "nope" does not exist'),
        ({"kind": "custom_sql", "sql": "SELECT count(nope) FROM orders"}, "sql", 'column "nope" does not exist'),
        ({"kind": "custom_sql", "sql": "SELECT count(*) FROM private.salaries"}, "sql", "permission denied"),
        ({"kind": "custom_sql", "sql": "SELECT count(*) FROM"}, "sql", "syntax error"),
        # numbers
        ({"min_value": "NaN"}, "min_value", "valid number"),
        ({"min_value": "Infinity"}, "min_value", "valid number"),
        ({"min_value": 1, "max_value": "-Infinity"}, "max_value", "valid number"),
        ({"min_value": "many"}, "min_value", ""),
        # strict input
        ({"created_at": "2024-01-01T00:00:00Z"}, "created_at", "read-only"),
        ({"table_id": 1}, "table_id", "Unknown field"),
    ],
)
def test_it_rejects_bad_checks_naming_the_field(owner_client, orders, fields, field, message):
    response = create(owner_client, orders, **fields)
    assert response.status_code == 400
    assert field in response.data, response.data
    assert message in str(response.data[field])
    assert not Check.objects.exists()


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_the_shared_rules_refuse_non_finite_bounds(orders, value):
    problems = check_problems(
        table=orders, kind="row_count", column="", sql_text="", min_value=value, max_value=None, consult_replica=False
    )
    assert problems == {"min_value": "must be a finite number (not NaN or Infinity)"}


def test_it_refuses_json_nan_literals(owner_client, orders):
    body = f'{{"table": {orders.id}, "kind": "row_count", "min_value": NaN}}'
    response = owner_client.post("/api/checks", body, content_type="application/json")
    assert response.status_code == 400
    assert not Check.objects.exists()


@pytest.mark.parametrize(
    ("sql_text", "message"),
    [
        ("SELECT 1; DROP TABLE orders", "; chain"),
        ("WITH d AS (DELETE FROM orders RETURNING 1) SELECT count(*) FROM d", "DELETE is not allowed"),
        ("SELECT 1 FROM orders FOR UPDATE", "locking clauses"),
        ("SELECT pg_terminate_backend(1)", "pg_terminate_backend() is not allowed"),
        ("SELECT '\\'; DROP TABLE orders; --'", "; chain"),
        ("UPDATE orders SET amount = 0", "UPDATE is not allowed"),
        ("SELECT count(*) FROM orders WHERE", "cannot parse this query: syntax error"),
        ("SELECT pg_sleep(10)", "pg_sleep() is volatile"),
        ("SELECT 'abc'", "the query returns text, not a number"),
        ("SELECT customer_id FROM orders", "aggregate it"),
    ],
)
def test_it_refuses_sql_injection_attempts(owner_client, orders, sql_text, message):
    response = create(owner_client, orders, kind="custom_sql", sql=sql_text)
    assert response.status_code == 400
    assert message in str(response.data["sql"])
    assert not Check.objects.exists()


def test_it_treats_an_injected_column_name_as_a_name(owner_client, orders):
    response = create(owner_client, orders, kind="null_rate", column='x"; drop table orders; --', max_value=0.1)
    assert response.status_code == 400
    assert 'column "x"; drop table orders; --" not found' in str(response.data["column"])
    assert not Check.objects.exists()
    # orders is still there: a query over it still plans on the replica
    assert create(owner_client, orders, kind="custom_sql", sql=COUNT_ORDERS).status_code == 201


@pytest.mark.parametrize(
    "sql_text",
    [
        "SELECT count(*) FROM orders WHERE note IS DISTINCT FROM 'DROP TABLE orders; DELETE' -- UPDATE;\n/* INSERT; */",
        'SELECT count(*) AS "delete" FROM orders WHERE note IS DISTINCT FROM $$; TRUNCATE orders$$',
        "select count(*) from orders where created_at > now() - interval '1 day';",
    ],
)
def test_it_accepts_keywords_inside_literals_comments_and_quoted_names(owner_client, orders, sql_text):
    response = create(owner_client, orders, kind="custom_sql", sql=sql_text)
    assert response.status_code == 201, response.data
    assert Check.objects.get().sql == sql_text.strip()


def test_it_refuses_sql_over_the_connections_cost_limit(owner_client, make_connection):
    table = MonitoredTable.objects.create(connection=make_connection(max_query_cost=1), table_name="orders")
    response = create(owner_client, table, kind="custom_sql", sql=COUNT_ORDERS)
    assert response.status_code == 400
    assert "exceeds this connection's limit of 1" in str(response.data["sql"])
    assert "estimated cost" in str(response.data["sql"])
    assert not Check.objects.exists()


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"kind": "custom_sql", "sql": COUNT_ORDERS}, "sql"),
        ({"kind": "null_rate", "column": "note", "max_value": 0.1}, "column"),
    ],
)
def test_it_reports_an_unreachable_replica_as_400_on_the_field(owner_client, make_connection, fields, field):
    table = MonitoredTable.objects.create(connection=make_connection(port=1), table_name="orders")
    response = create(owner_client, table, **fields)
    assert response.status_code == 400
    assert "cannot connect" in str(response.data[field])
    assert 'connection "shop-replica"' in str(response.data[field])
    assert not Check.objects.exists()


def test_it_refuses_to_change_the_kind_or_the_table(owner_client, shop, orders):
    customers = MonitoredTable.objects.create(connection=shop, table_name="customers")
    check = a_check(orders)
    response = owner_client.patch(f"/api/checks/{check.id}", {"kind": "custom_sql", "sql": COUNT_ORDERS}, format="json")
    assert response.status_code == 400
    assert "cannot change" in str(response.data["kind"])
    response = owner_client.patch(f"/api/checks/{check.id}", {"table": customers.id}, format="json")
    assert response.status_code == 400
    assert "cannot move" in str(response.data["table"])
    check.refresh_from_db()
    assert (check.kind, check.table_id, check.sql) == ("row_count", orders.id, "")
    # sending the same kind and table is fine
    response = owner_client.patch(
        f"/api/checks/{check.id}", {"kind": "row_count", "table": orders.id, "min_value": 3}, format="json"
    )
    assert response.status_code == 200


def test_it_validates_a_patch_against_the_stored_values(owner_client, orders):
    check = a_check(orders, kind="null_rate", column="note", max_value=0.5)
    response = owner_client.patch(f"/api/checks/{check.id}", {"min_value": 0.9}, format="json")
    assert response.status_code == 400
    assert "must not exceed" in str(response.data["min_value"])
    response = owner_client.patch(f"/api/checks/{check.id}", {"max_value": None}, format="json")
    assert response.status_code == 400
    assert "need max_value" in str(response.data["max_value"])
    check.refresh_from_db()
    assert (check.min_value, check.max_value) == (None, 0.5)


def test_it_revalidates_column_and_sql_against_the_replica_on_patch(owner_client, orders):
    null_rate = a_check(orders, kind="null_rate", column="note", max_value=0.5)
    custom = a_check(orders, kind="custom_sql", sql=COUNT_ORDERS)
    response = owner_client.patch(f"/api/checks/{null_rate.id}", {"column": "nope"}, format="json")
    assert response.status_code == 400
    assert "not found" in str(response.data["column"])
    response = owner_client.patch(f"/api/checks/{custom.id}", {"sql": "SELECT count(*) FROM nope"}, format="json")
    assert response.status_code == 400
    assert 'relation "nope" does not exist' in str(response.data["sql"])
    assert owner_client.patch(f"/api/checks/{null_rate.id}", {"column": "amount"}, format="json").status_code == 200
    response = owner_client.patch(f"/api/checks/{custom.id}", {"sql": "SELECT max(id) FROM orders"}, format="json")
    assert response.status_code == 200
    null_rate.refresh_from_db()
    custom.refresh_from_db()
    assert (null_rate.column, custom.sql) == ("amount", "SELECT max(id) FROM orders")


def test_a_patch_of_bounds_alone_does_not_contact_the_replica(owner_client, orders, shop):
    check = a_check(orders, kind="custom_sql", sql=COUNT_ORDERS)
    shop.port = 1  # the replica becomes unreachable
    shop.save()
    response = owner_client.patch(f"/api/checks/{check.id}", {"max_value": 1000}, format="json")
    assert response.status_code == 200, response.data
    response = owner_client.patch(f"/api/checks/{check.id}", {"sql": COUNT_ORDERS}, format="json")
    assert response.status_code == 400
    assert "cannot connect" in str(response.data["sql"])
    # the static rules still apply without the replica
    response = owner_client.patch(f"/api/checks/{check.id}", {"min_value": None, "max_value": None}, format="json")
    assert response.status_code == 400
    check.refresh_from_db()
    assert (check.min_value, check.max_value) == (1, 1000)


# --- teams and permissions ---------------------------------------------------------------------------------


def test_outsider_cannot_see_or_use_another_teams_checks(outsider_client, outsider, orders, make_connection, teams):
    check = a_check(orders)
    assert outsider_client.get("/api/checks").json()["count"] == 0
    assert outsider_client.get(f"/api/checks?table={orders.id}").json()["count"] == 0
    for method in ("get", "patch", "delete"):
        response = getattr(outsider_client, method)(f"/api/checks/{check.id}", {}, format="json")
        assert response.status_code == 404
    response = create(outsider_client, orders)
    assert response.status_code == 400
    assert "table" in response.data
    # their own table works, and cannot be used to reach acme's check
    globex = make_connection(name="globex-replica", team=teams[1])
    own = MonitoredTable.objects.create(connection=globex, table_name="orders")
    assert create(outsider_client, own).status_code == 201
    assert outsider_client.get("/api/checks").json()["count"] == 1
    check.refresh_from_db()
    assert check.min_value == 1
    assert Check.objects.count() == 2


def test_member_reads_but_cannot_write(member_client, orders):
    check = a_check(orders)
    assert member_client.get("/api/checks").json()["count"] == 1
    assert member_client.get(f"/api/checks/{check.id}").status_code == 200
    assert create(member_client, orders).status_code == 403
    assert member_client.patch(f"/api/checks/{check.id}", {"is_active": False}, format="json").status_code == 403
    assert member_client.delete(f"/api/checks/{check.id}").status_code == 403
    assert Check.objects.get().is_active is True


def test_anonymous_users_get_nothing(client, orders):
    a_check(orders)
    assert client.get("/api/checks").status_code in (401, 403)


def test_the_schema_lists_the_checks_endpoints(owner_client):
    schema = owner_client.get("/api/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    paths = {path.rstrip("/") for path in schema["paths"]}
    assert {"/api/checks", "/api/checks/{id}"} <= paths


# --- admin -----------------------------------------------------------------------------------------------------


def admin_form(table, **fields):
    return {
        "table": table.id,
        "kind": "row_count",
        "column": "",
        "sql": "",
        "min_value": "1",
        "max_value": "",
        "is_active": "on",
        **fields,
    }


def test_the_admin_saves_a_valid_check(client, staff, orders):
    client.force_login(staff)
    response = client.post("/admin/monitors/check/add/", admin_form(orders, kind="custom_sql", sql=COUNT_ORDERS))
    assert response.status_code == 302, response.content.decode()[:3000]
    assert Check.objects.get().sql == COUNT_ORDERS


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "custom_sql", "sql": "SELECT 1; DROP TABLE orders"}, "; chain"),
        ({"kind": "custom_sql", "sql": "SELECT count(*) FROM nope"}, "relation &quot;nope&quot; does not exist"),
        ({"kind": "null_rate", "column": "nope", "max_value": "0.1", "min_value": ""}, "not found in table"),
        ({"kind": "row_count", "min_value": "5", "max_value": "1"}, "must not exceed"),
        ({"kind": "freshness"}, "not one of the available choices"),
    ],
)
def test_the_admin_applies_the_same_rules(client, staff, orders, fields, message):
    client.force_login(staff)
    response = client.post("/admin/monitors/check/add/", admin_form(orders, **fields))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Check.objects.exists()


def test_the_admin_offers_only_the_users_teams_tables_and_checks(client, staff, orders, make_connection, teams):
    theirs = MonitoredTable.objects.create(
        connection=make_connection(name="globex-replica", team=teams[1]), table_name="customers"
    )
    mine, other = a_check(orders), a_check(theirs)
    client.force_login(staff)
    add_form = client.get("/admin/monitors/check/add/").content.decode()
    assert f'value="{orders.id}"' in add_form and f'value="{theirs.id}"' not in add_form
    listing = client.get("/admin/monitors/check/").content.decode()
    assert f"/admin/monitors/check/{mine.id}/change/" in listing
    assert f"/admin/monitors/check/{other.id}/change/" not in listing
    assert "globex-replica" not in listing
    assert client.get(f"/admin/monitors/check/{other.id}/change/").status_code in (302, 404)
    response = client.post("/admin/monitors/check/add/", admin_form(theirs))
    assert response.status_code == 200
    assert Check.objects.count() == 2


def table_form_data(page):
    """The monitored table's change form as the admin rendered it, ready to post back."""
    form = page.context["adminform"].form
    data = {}
    for name, field in form.fields.items():
        value = form[name].value()
        if isinstance(field, forms.BooleanField):
            if value:
                data[name] = "on"
        elif value is not None:
            data[name] = value
    return data


def test_the_admin_edits_checks_inline_under_their_table_with_the_same_rules(client, staff, orders):
    check = a_check(orders)
    client.force_login(staff)
    url = f"/admin/monitors/monitoredtable/{orders.id}/change/"
    page = client.get(url)
    assert "checks-TOTAL_FORMS" in page.content.decode()
    form = {
        **table_form_data(page),
        "checks-TOTAL_FORMS": 2,
        "checks-INITIAL_FORMS": 1,
        "checks-0-id": check.id,
        "checks-0-table": orders.id,
        "checks-0-kind": "row_count",
        "checks-0-min_value": "1",
        "checks-0-is_active": "on",
        "checks-1-table": orders.id,
        "checks-1-kind": "custom_sql",
        "checks-1-sql": "WITH d AS (DELETE FROM orders RETURNING 1) SELECT count(*) FROM d",
        "checks-1-min_value": "0",
        "checks-1-is_active": "on",
    }
    response = client.post(url, form)
    assert response.status_code == 200
    assert "DELETE is not allowed" in response.content.decode()
    assert Check.objects.count() == 1
    response = client.post(url, {**form, "checks-1-sql": COUNT_ORDERS, "checks-0-kind": "custom_sql"})
    assert response.status_code == 200
    assert "cannot change" in response.content.decode()
    response = client.post(url, {**form, "checks-1-sql": COUNT_ORDERS})
    assert response.status_code == 302, response.content.decode()[:3000]
    assert Check.objects.filter(kind="custom_sql", sql=COUNT_ORDERS, table=orders).exists()


def test_the_admin_change_form_keeps_table_and_kind_and_revalidates_sql(client, staff, orders):
    check = a_check(orders, kind="custom_sql", sql=COUNT_ORDERS)
    client.force_login(staff)
    url = f"/admin/monitors/check/{check.id}/change/"
    form = {"column": "", "sql": "SELECT count(*) FROM nope", "min_value": "1", "max_value": "", "is_active": "on"}
    response = client.post(url, form)
    assert response.status_code == 200
    assert "relation &quot;nope&quot; does not exist" in response.content.decode()
    response = client.post(url, {**form, "sql": "SELECT max(id) FROM orders", "kind": "row_count"})
    assert response.status_code == 302, response.content.decode()[:3000]
    check.refresh_from_db()
    assert (check.kind, check.sql) == ("custom_sql", "SELECT max(id) FROM orders")
