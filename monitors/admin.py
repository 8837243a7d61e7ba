from django import forms
from django.contrib import admin

from common.admin import TeamScopedAdmin
from common.tenancy import scope_to_user
from monitors import tables
from monitors.check_rules import check_problems
from monitors.models import Check, CheckResult, MonitoredTable, SchedulerHeartbeat
from monitors.results import result_mark_expected
from monitors.table_rules import CATALOG_FIELDS, table_problems

CHECK_RULE_FIELDS = ("table", "kind", "column", "sql", "min_value", "max_value")
CHECK_REPLICA_FIELDS = ("table", "column", "sql")


class CheckAdminForm(forms.ModelForm):
    """Runs the same rules as the REST API (monitors.check_rules) before a check is saved."""

    class Meta:
        model = Check
        fields = ["table", "kind", "column", "sql", "min_value", "max_value", "is_active"]

    def _value(self, field):
        if field in self.fields:
            return self.cleaned_data.get(field)
        return getattr(self.instance, field, None)

    def clean(self):
        cleaned_data = super().clean()
        if any(field in self.errors for field in CHECK_RULE_FIELDS):
            return cleaned_data  # a field is already refused: its value is unknown
        if self.instance.pk is not None and self._value("kind") != self.instance.kind:
            self.add_error(
                "kind" if "kind" in self.fields else None,
                "The kind of a check cannot change; create a new check instead.",
            )
            return cleaned_data
        table = self._value("table")
        if table is None:
            return cleaned_data
        # A table being added together with its checks may not have a valid connection yet: its own form says why.
        has_connection = getattr(table, "connection_id", None) is not None
        changed = self.instance.pk is None or any(field in self.changed_data for field in CHECK_REPLICA_FIELDS)
        problems = check_problems(
            table=table,
            kind=self._value("kind"),
            column=self._value("column"),
            sql_text=self._value("sql"),
            min_value=self._value("min_value"),
            max_value=self._value("max_value"),
            consult_replica=has_connection and changed,
        )
        for field, message in problems.items():
            self.add_error(field if field in self.fields else None, message)
        return cleaned_data


class CheckInline(admin.TabularInline):
    model = Check
    form = CheckAdminForm
    extra = 0
    fields = ["is_active", "kind", "column", "sql", "min_value", "max_value"]
    show_change_link = True


class MonitoredTableAdminForm(forms.ModelForm):
    """The table's change form and the inline under its connection: the REST API's rules (the catalog
    check, no move to another connection) and its pause/resume rule (monitors.tables)."""

    def _value(self, field):
        if field in self.fields:
            return self.cleaned_data.get(field)
        return getattr(self.instance, field, None)

    def clean(self):
        cleaned_data = super().clean()
        if any(field in self.errors for field in CATALOG_FIELDS):
            return cleaned_data  # a field is already refused: its value is unknown
        connection = self._value("connection")
        adding = self.instance.pk is None
        if not adding and connection is not None and connection.pk != self.instance.connection_id:
            self.add_error("connection", "A monitored table cannot move to another connection.")
            return cleaned_data
        if not adding and not any(field in self.changed_data for field in CATALOG_FIELDS):
            return cleaned_data
        if connection is None:
            return cleaned_data  # the connection field says why
        if connection.pk is None:
            self.add_error(None, "Save the connection first: its tables are looked up on the replica.")
            return cleaned_data
        problems = table_problems(
            connection=connection,
            schema_name=self._value("schema_name") or "public",
            table_name=self._value("table_name"),
            timestamp_column=self._value("timestamp_column") or "",
        )
        for field, message in problems.items():
            self.add_error(field if field in self.fields else None, message)
        return cleaned_data

    def save(self, commit=True):
        was_active = None if self.instance.pk is None else self.initial.get("is_active")
        tables.table_activation_apply(table=self.instance, was_active=was_active)
        return super().save(commit=commit)


class MonitoredTableInline(admin.TabularInline):
    """The tables under their connection's change page (the project's admin puts it on ConnectionAdmin)."""

    model = MonitoredTable
    form = MonitoredTableAdminForm
    extra = 0
    fields = ["schema_name", "table_name", "timestamp_column", "check_interval_seconds", "is_active", "status"]
    readonly_fields = ["status"]
    show_change_link = True


class MonitoredTableAdmin(TeamScopedAdmin):
    """Registered by the project's admin, which binds `table_rebaseline` to the alert-resolving version."""

    table_rebaseline = staticmethod(tables.table_rebaseline)
    form = MonitoredTableAdminForm
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
    list_filter = ["status", "is_active", ("connection", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["schema_name", "table_name", "connection__name"]
    ordering = ["connection__name", "schema_name", "table_name"]
    readonly_fields = [
        "status",
        "last_checked_at",
        "next_check_at",
        "last_error",
        "baseline_since",
        "backfilled_at",
        "created_at",
        "updated_at",
    ]
    list_select_related = ["connection"]
    inlines = [CheckInline]
    actions = ["rebaseline"]

    @admin.action(description="Rebaseline volume (accept the current level)", permissions=["change"])
    def rebaseline(self, request, queryset):
        for table in queryset:
            self.table_rebaseline(table=table)
        self.message_user(request, f"{queryset.count()} table(s) rebaselined; volume training restarts now.")


@admin.register(Check)
class CheckAdmin(TeamScopedAdmin):
    team_path = "table__connection__team"
    form = CheckAdminForm
    list_display = ["is_active", "kind", "table", "column", "min_value", "max_value", "updated_at"]
    list_filter = [
        "is_active",
        "kind",
        # RelatedOnly: the choices come from the (team-scoped) list, never other teams' connections or tables.
        ("table__connection", admin.RelatedOnlyFieldListFilter),
        ("table", admin.RelatedOnlyFieldListFilter),
    ]
    search_fields = ["table__schema_name", "table__table_name", "table__connection__name", "column", "sql"]
    ordering = ["table__connection__name", "table__schema_name", "table__table_name", "kind", "id"]
    readonly_fields = ["created_at", "updated_at"]
    list_select_related = ["table", "table__connection"]

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        if obj is not None:
            readonly = ["table", "kind", *readonly]  # a check keeps its table and kind
        return readonly

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "table":
            kwargs["queryset"] = scope_to_user(
                MonitoredTable.objects.select_related("connection"), user=request.user, team_path="connection__team"
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


@admin.register(CheckResult)
class CheckResultAdmin(TeamScopedAdmin):
    team_path = "connection__team"
    list_display = [
        "status",
        "kind",
        "connection",
        "table",
        "observed_value",
        "expected_lower",
        "expected_upper",
        "is_anomaly",
        "marked_expected",
        "started_at",
        "duration_ms",
    ]
    list_filter = ["status", "kind", "is_anomaly"]
    actions = ["mark_expected"]
    search_fields = ["table__table_name", "message"]
    ordering = ["-started_at"]
    list_select_related = ["table", "table__connection"]
    date_hierarchy = "started_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_mark_expected_permission(self, request):
        return request.user.has_perm("monitors.change_checkresult")

    @admin.action(
        description="Mark anomalous values as expected (they train the baseline)", permissions=["mark_expected"]
    )
    def mark_expected(self, request, queryset):
        marked = [result_mark_expected(result=r) for r in queryset.filter(is_anomaly=True)]
        self.message_user(request, f"{len(marked)} anomalous value(s) marked expected.")


@admin.register(SchedulerHeartbeat)
class SchedulerHeartbeatAdmin(admin.ModelAdmin):
    list_display = ["worker", "beat_at", "started_at"]
    ordering = ["-beat_at"]
