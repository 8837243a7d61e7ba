"""Admin classes composed in the project layer: the apps' admins, joined where one app shows another's objects.

Connection and MonitoredTable are registered here only (connections and monitors define their admins but do
not register them), so the connection page lists its tables, a rebaseline resolves the volume alert, and both
pages show their public status badge."""

from django.contrib import admin
from django.urls import reverse
from django.utils.http import urlencode
from django_apscheduler.models import DjangoJob, DjangoJobExecution

from alerts.admin import AlertAdmin
from alerts.lifecycle import table_rebaseline_accept
from alerts.models import Alert
from connections.admin import ConnectionAdmin
from connections.models import Connection
from monitors.admin import MonitoredTableAdmin, MonitoredTableInline
from monitors.models import MonitoredTable
from observability.admin import BadgeUrlAdminMixin

# "View on site" on a connection, table or alert opens its dashboard page.


@admin.register(Connection)
class ConnectionWithTablesAdmin(BadgeUrlAdminMixin, ConnectionAdmin):
    inlines = [MonitoredTableInline]

    def view_on_site(self, obj):
        return reverse("dashboard:connection", args=[obj.pk])


@admin.register(MonitoredTable)
class TableAdmin(BadgeUrlAdminMixin, MonitoredTableAdmin):
    table_rebaseline = staticmethod(table_rebaseline_accept)

    def view_on_site(self, obj):
        return reverse("dashboard:table", args=[obj.pk])


admin.site.unregister(Alert)


@admin.register(Alert)
class AlertWithDashboardAdmin(AlertAdmin):
    def view_on_site(self, obj):
        """The table's page at the time the alert opened; a connection's alert: the connection's page."""
        if obj.table_id:
            at = urlencode({"at": obj.opened_at.isoformat()})
            return f"{reverse('dashboard:table', args=[obj.table_id])}?{at}"
        return reverse("dashboard:connection", args=[obj.connection_id])


# The lists (results, alerts, tables) need the width: the index and breadcrumbs lead to every model anyway.
admin.site.enable_nav_sidebar = False

# runchecks keeps its jobs in each process's memory (nothing is shared through django-apscheduler's tables), so
# their always-empty admin pages would only mislead; housekeeping still prunes executions of older versions.
admin.site.unregister(DjangoJob)
admin.site.unregister(DjangoJobExecution)
