"""Admin classes composed in the project layer: the apps' admins, joined where one app shows another's objects.

Connection and MonitoredTable are registered here only (connections and monitors define their admins but do
not register them), so the connection page lists its tables, a rebaseline resolves the volume alert, and both
pages show their public status badge."""

from django.contrib import admin
from django_apscheduler.models import DjangoJob, DjangoJobExecution

from alerts.lifecycle import table_rebaseline_accept
from connections.admin import ConnectionAdmin
from connections.models import Connection
from monitors.admin import MonitoredTableAdmin, MonitoredTableInline
from monitors.models import MonitoredTable
from observability.admin import BadgeUrlAdminMixin


@admin.register(Connection)
class ConnectionWithTablesAdmin(BadgeUrlAdminMixin, ConnectionAdmin):
    inlines = [MonitoredTableInline]


@admin.register(MonitoredTable)
class TableAdmin(BadgeUrlAdminMixin, MonitoredTableAdmin):
    table_rebaseline = staticmethod(table_rebaseline_accept)


# The lists (results, alerts, tables) need the width: the index and breadcrumbs lead to every model anyway.
admin.site.enable_nav_sidebar = False

# runchecks keeps its jobs in each process's memory (nothing is shared through django-apscheduler's tables), so
# their always-empty admin pages would only mislead; housekeeping still prunes executions of older versions.
admin.site.unregister(DjangoJob)
admin.site.unregister(DjangoJobExecution)
