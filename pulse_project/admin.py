"""Admin classes composed in the project layer: the apps' admins, joined where one app shows another's objects.

Connection and MonitoredTable are registered here only (connections and monitors define their admins but do
not register them), so the connection page lists its tables, a rebaseline resolves the volume alert, and both
pages show their public status badge."""

import psycopg
from django.contrib import admin, messages
from django.urls import reverse
from django.utils.http import urlencode

from alerts.admin import AlertAdmin
from alerts.intake import results_intake
from alerts.lifecycle import table_rebaseline_accept
from alerts.models import Alert
from connections import guardrails, replica
from connections.admin import ConnectionAdmin
from connections.models import Connection
from monitors import discovery
from monitors.admin import DiscoveryPolicyInline, MonitoredTableAdmin, MonitoredTableInline
from monitors.models import MonitoredTable
from observability.admin import BadgeUrlAdminMixin

# "View on site" on a connection, table or alert opens its dashboard page.


def discovery_message(*, connection: Connection, summary: dict) -> str:
    """One line per discovery for the admin's messages: what was (or would be) added, skipped and missing."""
    verb = "added" if summary["applied"] else "would add"
    added = "; ".join(
        f"{t['schema']}.{t['table']} ({t['timestamp_column'] or 'no timestamp column'}: {t['reason']})"
        for t in summary["added"][:20]
    )
    more = f" and {summary['added_count'] - 20} more" if summary["added_count"] > 20 else ""
    parts = [f"{connection.name}: {verb} {summary['added_count']} table(s){': ' + added if added else ''}{more}"]
    if summary["skipped_count"]:
        skipped = "; ".join(f"{s['table']} ({s['reason']})" for s in summary["skipped"][:10])
        parts.append(f"skipped {summary['skipped_count']}: {skipped}")
    if summary["over_cap_count"]:
        parts.append(f"{summary['over_cap_count']} over the cap of {connection.discovery.max_tables}")
    if summary["missing_count"]:
        parts.append(f"missing: {', '.join(summary['missing'][:20])}")
    return ". ".join(parts)


@admin.register(Connection)
class ConnectionWithTablesAdmin(BadgeUrlAdminMixin, ConnectionAdmin):
    inlines = [DiscoveryPolicyInline, MonitoredTableInline]
    actions = [*ConnectionAdmin.actions, "discover_dry_run", "discover_apply"]

    def _discover(self, request, queryset, *, apply: bool) -> None:
        for connection in queryset:
            try:
                summary = discovery.discovery_run(connection=connection, apply=apply, on_recorded=results_intake)
            except (replica.ReplicaError, guardrails.GuardrailStop, guardrails.CheckError, psycopg.Error) as exc:
                reason = replica.describe_error(exc) if isinstance(exc, psycopg.Error) else str(exc)
                self.message_user(request, f"{connection.name}: cannot read the catalog: {reason}", messages.ERROR)
                continue
            self.message_user(request, discovery_message(connection=connection, summary=summary), messages.INFO)

    @admin.action(description="Discover tables (dry run: show what would be added)", permissions=["change"])
    def discover_dry_run(self, request, queryset):
        self._discover(request, queryset, apply=False)

    @admin.action(description="Discover tables and add them", permissions=["change"])
    def discover_apply(self, request, queryset):
        self._discover(request, queryset, apply=True)

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
