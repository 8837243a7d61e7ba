"""The whole admin, as composed in the project layer: every model is registered, and a staff member of one team
sees only that team's objects in every list, filter and choice (another team's names never appear)."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from alerts.models import Alert, Channel, Notification
from connections.models import MaintenanceWindow, QueryAllowance
from monitors.models import Check, CheckResult, MonitoredTable

pytestmark = pytest.mark.django_db


def test_every_model_is_registered(client, django_user_model):
    admin = django_user_model.objects.create_superuser("root", password="pw")
    client.force_login(admin)
    index = client.get("/admin/").content.decode()
    assert "Pulse — data health for PostgreSQL replicas" in index  # templates/admin/base_site.html
    for page in [
        "connections/connection",
        "connections/queryallowance",
        "connections/maintenancewindow",
        "monitors/monitoredtable",
        "monitors/check",
        "monitors/checkresult",
        "alerts/alert",
        "alerts/channel",
        "alerts/notification",
        "alerts/lifecyclebacklog",
    ]:
        assert f"/admin/{page}/" in index
    assert Permission.objects.filter(codename="change_connection").exists()
    assert "/admin/django_apscheduler/" not in index  # runchecks stores no jobs there: no empty pages


def team_objects(make_connection, team, marker):
    """One of each admin-listed object, owned by `team`, every name carrying `marker`."""
    connection = make_connection(name=f"{marker}-conn", team=team)
    table = MonitoredTable.objects.create(connection=connection, table_name=f"{marker}_orders")
    check = Check.objects.create(table=table, kind="row_count", min_value=1)
    now = timezone.now()
    CheckResult.objects.create(
        connection=connection,
        table=table,
        check_definition=check,
        kind="row_count",
        status="fail",
        started_at=now,
        message=f"{marker} result",
    )
    Alert.objects.create(
        connection=connection, table=table, kind="freshness", opened_at=now, last_seen_at=now, message=f"{marker} alert"
    )
    QueryAllowance.objects.create(connection=connection, window_start=now, next_query_at=now)
    MaintenanceWindow.objects.create(
        connection=connection, starts_at=now, ends_at=now + timedelta(hours=1), reason=f"{marker} window"
    )
    channel = Channel.objects.create(team=team, name=f"{marker}-channel", kind="email")
    Notification.objects.create(channel=channel, subject=f"{marker} subject", body="-", next_try_at=now)


ADMIN_PAGES = [
    *(
        f"/admin/{model}/"
        for model in [
            "connections/connection",
            "connections/queryallowance",
            "connections/maintenancewindow",
            "monitors/monitoredtable",
            "monitors/check",
            "monitors/checkresult",
            "alerts/alert",
            "alerts/channel",
            "alerts/notification",
        ]
    ),
    *(
        f"/admin/{model}/add/"
        for model in [
            "connections/connection",
            "connections/maintenancewindow",
            "monitors/monitoredtable",
            "monitors/check",
            "alerts/channel",
        ]
    ),
]


@pytest.mark.parametrize("page", ADMIN_PAGES)
def test_every_admin_filter_and_choice_lists_only_the_users_teams(client, staff, make_connection, teams, page):
    team_objects(make_connection, teams[0], "acmemark")
    team_objects(make_connection, teams[1], "globexmark")
    client.force_login(staff)
    response = client.get(page)
    assert response.status_code == 200
    text = response.content.decode()
    assert ("acme" if page.endswith("/add/") else "acmemark") in text  # the user's own are listed (a live page)
    assert "globex" not in text
