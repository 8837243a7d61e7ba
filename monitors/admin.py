from django.contrib import admin

from connections.admin import ConnectionAdmin, TeamScopedAdmin
from monitors.models import CheckResult, MonitoredTable, SchedulerHeartbeat


class MonitoredTableInline(admin.TabularInline):
    model = MonitoredTable
    extra = 0
    fields = ["schema_name", "table_name", "timestamp_column", "check_interval_seconds", "is_active", "status"]
    readonly_fields = ["status"]
    show_change_link = True


ConnectionAdmin.inlines = [*ConnectionAdmin.inlines, MonitoredTableInline]


@admin.register(MonitoredTable)
class MonitoredTableAdmin(TeamScopedAdmin):
    team_path = "connection__team"
    list_display = [
        "status",
        "qualified_name",
        "connection",
        "timestamp_column",
        "is_active",
        "last_checked_at",
        "next_check_at",
    ]
    list_filter = ["status", "is_active", "connection"]
    search_fields = ["schema_name", "table_name", "connection__name"]
    ordering = ["connection__name", "schema_name", "table_name"]
    readonly_fields = ["status", "last_checked_at", "next_check_at", "created_at", "updated_at"]
    list_select_related = ["connection"]


@admin.register(CheckResult)
class CheckResultAdmin(TeamScopedAdmin):
    team_path = "table__connection__team"
    list_display = [
        "status",
        "kind",
        "table",
        "observed_value",
        "expected_lower",
        "expected_upper",
        "started_at",
        "duration_ms",
    ]
    list_filter = ["status", "kind"]
    search_fields = ["table__table_name", "message"]
    ordering = ["-started_at"]
    list_select_related = ["table", "table__connection"]
    date_hierarchy = "started_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(SchedulerHeartbeat)
class SchedulerHeartbeatAdmin(admin.ModelAdmin):
    list_display = ["worker", "beat_at", "started_at"]
    ordering = ["-beat_at"]
