from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ObjectDoesNotExist
from django.utils import timezone

from common.admin import TeamScopedAdmin, managed_form_errors, release_from_file, short_time, status_label
from connections import guardrails
from connections.maintenance import maintenance_window_problems
from connections.models import Connection, MaintenanceWindow, QueryAllowance, holidays_in_order
from connections.state import connection_activation_apply, connection_change_problems, connection_test


class ConnectionAdminForm(forms.ModelForm):
    password = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Stored encrypted. Leave blank to keep the current password.",
    )

    class Meta:
        model = Connection
        widgets = {"holidays": forms.Textarea(attrs={"rows": 3, "cols": 60})}
        fields = [
            "name",
            "team",
            "host",
            "port",
            "database",
            "username",
            "password",
            "sslmode",
            "require_replica",
            "statement_timeout_ms",
            "max_queries_per_hour",
            "max_concurrent_queries",
            "max_queries_per_second",
            "max_query_cost",
            "replica_time_share_percent",
            "replica_time_burst_seconds",
            "replication_lag_threshold_seconds",
            "connection_error_threshold",
            "holidays",
            "is_active",
        ]

    user = None  # the requesting user, set by ConnectionAdmin.get_form

    def clean_holidays(self):
        return holidays_in_order(self.cleaned_data["holidays"])

    def clean(self):
        cleaned = super().clean()
        connection = self.instance if self.instance.pk else None
        problems = connection_change_problems(
            connection=connection,
            changes={field: value for field, value in cleaned.items() if field != "password"},
            password_given=bool(cleaned.get("password")),
            user=self.user,
        )
        for field, message in problems.items():
            self.add_error(field if field in self.fields else None, message)
        return cleaned

    def save(self, commit=True):
        if self.cleaned_data.get("password"):
            self.instance.set_password(self.cleaned_data["password"])
        connection_activation_apply(connection=self.instance, probed=False)
        return super().save(commit=commit)


class ConnectionAdmin(TeamScopedAdmin):
    """Registered by the project layer (pulse_project/admin.py), which adds the monitored tables inline."""

    form = ConnectionAdminForm
    list_display = ["state", "name", "team", "host", "port", "database", "is_active", "last_checked"]
    list_display_links = ["name"]
    # RelatedOnly: the choices come from the (team-scoped) list, never the names of other teams.
    list_filter = ["status", "is_active", ("team", admin.RelatedOnlyFieldListFilter), "require_replica"]
    search_fields = ["name", "host", "database"]
    ordering = ["name"]
    readonly_fields = [
        "has_password",
        "replica_time_used",
        "state",
        "last_error",
        "last_checked_at",
        "consecutive_failures",
        "backoff_until",
        "created_at",
        "updated_at",
    ]
    actions = ["test_connection"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        return type(form.__name__, (form,), {"user": request.user})

    @admin.display(description="status", ordering="status")
    def state(self, obj):
        return status_label(obj.status, obj.get_status_display())

    @admin.display(description="last checked", ordering="last_checked_at")
    def last_checked(self, obj):
        return short_time(obj.last_checked_at)

    @admin.display(description="replica time used")
    def replica_time_used(self, obj):
        return replica_time_text(obj)

    @admin.display(boolean=True, description="password stored")
    def has_password(self, obj):
        return obj.has_password

    @admin.action(description="Test connection", permissions=["change"])
    def test_connection(self, request, queryset):
        for connection in queryset:
            result = connection_test(connection=connection)
            if result.ok:
                self.message_user(
                    request, f"{connection.name}: ok (replica, PostgreSQL {result.server_version})", messages.SUCCESS
                )
            else:
                self.message_user(request, f"{connection.name}: {result.error}", messages.ERROR)


def replica_time_text(connection: Connection, allowance: QueryAllowance | None = None) -> str:
    """The replica time share of a connection, used now and this hour, for people."""
    if allowance is None:
        try:
            allowance = connection.allowance
        except ObjectDoesNotExist:
            allowance = None
    use = guardrails.share_use(connection=connection, allowance=allowance, now=timezone.now())
    return (
        f"{use.now_percent:.2f}% of one backend now, {use.this_hour_percent:.2f}% this hour "
        f"({use.this_hour_seconds:,.1f} s of server time, {use.queries_this_hour:,} queries); "
        f"limit {use.limit_percent:g}% with a {use.burst_seconds:g} s burst, {use.available_seconds:,.1f} s available"
    )


@admin.register(QueryAllowance)
class QueryAllowanceAdmin(TeamScopedAdmin):
    """Read-only view of each connection's replica time share, query budget this hour and rate schedule."""

    team_path = "connection__team"
    list_display = ["connection", "replica_time", "queries_used", "window_start", "next_query_at"]
    list_select_related = ["connection"]
    ordering = ["connection__name"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="replica time used")
    def replica_time(self, obj):
        return replica_time_text(obj.connection, obj)


class MaintenanceWindowAdminForm(forms.ModelForm):
    class Meta:
        model = MaintenanceWindow
        fields = ["connection", "starts_at", "ends_at", "reason"]

    def clean(self):
        cleaned = super().clean()
        if managed_form_errors(self):
            return cleaned
        problems = maintenance_window_problems(window=self.instance if self.instance.pk else None, changes=cleaned)
        for field, message in problems.items():
            self.add_error(field, message)
        return cleaned


@admin.register(MaintenanceWindow)
class MaintenanceWindowAdmin(TeamScopedAdmin):
    form = MaintenanceWindowAdminForm
    team_path = "connection__team"
    list_display = ["connection", "starts_at", "ends_at", "reason", "managed_by"]
    list_filter = [("connection", admin.RelatedOnlyFieldListFilter)]
    readonly_fields = ["managed_by"]
    actions = [release_from_file]
    ordering = ["-starts_at"]
