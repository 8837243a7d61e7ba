from django.contrib import admin, messages

from alerts.lifecycle import AlertStateError, alert_acknowledge, alert_resolve
from alerts.models import Alert
from connections.admin import TeamScopedAdmin


@admin.register(Alert)
class AlertAdmin(TeamScopedAdmin):
    team_path = "connection__team"
    list_display = [
        "status",
        "severity",
        "kind",
        "connection",
        "table",
        "message",
        "opened_at",
        "last_seen_at",
        "consecutive_failures",
    ]
    list_filter = ["status", "severity", "kind", "connection"]
    search_fields = ["message", "connection__name", "table__table_name"]
    ordering = ["-opened_at"]
    list_select_related = ["connection", "table"]
    readonly_fields = [
        "connection",
        "table",
        "kind",
        "severity",
        "status",
        "message",
        "opened_at",
        "last_seen_at",
        "resolved_at",
        "consecutive_failures",
    ]
    actions = ["acknowledge", "resolve"]

    def has_add_permission(self, request):
        return False

    def _apply(self, request, queryset, transition, verb):
        done = 0
        for alert in queryset:
            try:
                transition(alert=alert)
                done += 1
            except AlertStateError as exc:
                self.message_user(request, f"{alert}: {exc}", messages.WARNING)
        self.message_user(request, f"{done} alert(s) {verb}.", messages.SUCCESS)

    @admin.action(description="Acknowledge selected alerts", permissions=["change"])
    def acknowledge(self, request, queryset):
        self._apply(request, queryset, alert_acknowledge, "acknowledged")

    @admin.action(description="Resolve selected alerts", permissions=["change"])
    def resolve(self, request, queryset):
        self._apply(request, queryset, alert_resolve, "resolved")
