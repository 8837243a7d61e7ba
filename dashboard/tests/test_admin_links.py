"""The admin's connection, table and alert pages link to their dashboard pages ("View on site")."""

from django.test import Client
from django.urls import reverse
from django.utils.http import urlencode


def test_admin_objects_link_to_their_dashboard_pages(scene, staff):
    client = Client()
    client.force_login(staff)
    table, alert, connection = scene["table"], scene["alert"], scene["connection"]
    expected = {
        reverse("admin:monitors_monitoredtable_change", args=[table.pk]): reverse("dashboard:table", args=[table.pk]),
        reverse("admin:connections_connection_change", args=[connection.pk]): reverse(
            "dashboard:connection", args=[connection.pk]
        ),
        reverse("admin:alerts_alert_change", args=[alert.pk]): reverse("dashboard:table", args=[table.pk])
        + "?"
        + urlencode({"at": alert.opened_at.isoformat()}),
    }
    for admin_page, dashboard_page in expected.items():
        response = client.get(admin_page)
        assert response.status_code == 200, admin_page
        link = response.content.decode().split('class="viewsitelink"')[0].rsplit('href="', 1)[1].split('"')[0]
        target = client.get(link.replace("&amp;", "&"), follow=True)
        assert link.replace("&amp;", "&").endswith(dashboard_page) and target.status_code == 200, (admin_page, link)
