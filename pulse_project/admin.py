"""Admin classes composed in the project layer: the apps' admins, joined where one app shows another's objects.

Connection and MonitoredTable are registered here only (connections and monitors define their admins but do
not register them), so the connection page lists its tables and a rebaseline resolves the volume alert."""

from django.contrib import admin

from alerts.lifecycle import table_rebaseline_accept
from connections.admin import ConnectionAdmin
from connections.models import Connection
from monitors.admin import MonitoredTableAdmin, MonitoredTableInline
from monitors.models import MonitoredTable


@admin.register(Connection)
class ConnectionWithTablesAdmin(ConnectionAdmin):
    inlines = [MonitoredTableInline]


@admin.register(MonitoredTable)
class TableAdmin(MonitoredTableAdmin):
    table_rebaseline = staticmethod(table_rebaseline_accept)
