from django import forms
from django.contrib import admin
from django.utils.html import format_html

from common.admin import TeamScopedAdmin, managed_form_errors, place_label, release_from_file, short_time, status_label
from common.tenancy import scope_to_user
from monitors import checks, discovery, tables
from monitors.check_rules import check_problems
from monitors.models import Check, CheckResult, DiscoveryPolicy, MonitoredTable, SchedulerHeartbeat
from monitors.results import result_mark_expected
from monitors.table_rules import CATALOG_FIELDS, table_problems

CHECK_RULE_FIELDS = ("table", "kind", "column", "sql", "min_value", "max_value")
CHECK_REPLICA_FIELDS = ("table", "column", "sql")


def value_text(kind: str, value: float | None) -> str:
    """One value of a check kind as people read it (the registry's formatter), '-' when there is none."""
    return "-" if value is None else checks.format_value(kind, value)


def band_text(kind: str, lower: float | None, upper: float | None) -> str:
    """The expected range of a check kind's value: both ends joined by an en dash, '≤ 1 h 0 min', '≥ 1', or '-'."""
    if lower is not None and upper is not None:
        return f"{checks.format_value(kind, lower)} – {checks.format_value(kind, upper)}"
    if upper is not None:
        return f"≤ {checks.format_value(kind, upper)}"
    if lower is not None:
        return f"≥ {checks.format_value(kind, lower)}"
    return "-"


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
        if managed_form_errors(self):
            return cleaned_data
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
        if managed_form_errors(self):
            return cleaned_data
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
        if "timestamp_column" in self.fields:
            previous_column = None if self.instance.pk is None else (self.initial.get("timestamp_column") or "")
            tables.table_timestamp_choice_apply(table=self.instance, previous_column=previous_column)
        return super().save(commit=commit)


class MonitoredTableInlineForm(MonitoredTableAdminForm):
    """The inline's row: narrow inputs and short headers, so the connection page fits a 1400 px window."""

    class Meta:
        model = MonitoredTable
        fields = ["schema_name", "table_name", "timestamp_column", "check_interval_seconds", "is_active"]
        widgets = {
            "schema_name": forms.TextInput(attrs={"size": 10}),
            "table_name": forms.TextInput(attrs={"size": 22}),
            "timestamp_column": forms.TextInput(attrs={"size": 14}),
            "check_interval_seconds": forms.NumberInput(attrs={"style": "width: 6em"}),
        }
        labels = {"schema_name": "schema", "table_name": "table", "check_interval_seconds": "every (s)"}
        help_texts = {"timestamp_column": "For freshness and hourly volume."}


class MonitoredTableInline(admin.TabularInline):
    """The tables under their connection's change page (the project's admin puts it on ConnectionAdmin):
    the catalog fields, interval and pause switch; everything else is on the table's own page (its link)."""

    model = MonitoredTable
    form = MonitoredTableInlineForm
    extra = 0
    fields = [
        "schema_name",
        "table_name",
        "timestamp_column",
        "chosen",
        "check_interval_seconds",
        "is_active",
        "state",
    ]
    readonly_fields = ["chosen", "state"]
    show_change_link = True

    @admin.display(description="chosen by")
    def chosen(self, obj):
        if obj.pk is None:
            return "-"
        return format_html('<span title="{}">{}</span>', obj.timestamp_column_reason, obj.timestamp_column_chosen_by)

    @admin.display(description="status")
    def state(self, obj):
        if obj.pk is None:
            return "-"
        return format_html(
            "{} <small>checked {}</small>",
            status_label(obj.status, obj.get_status_display()),
            short_time(obj.last_checked_at),
        )


class DiscoveryPolicyForm(forms.ModelForm):
    """The connection page's discovery section: the API's scope rules (monitors.discovery)."""

    class Meta:
        model = DiscoveryPolicy
        fields = [
            "is_enabled",
            "interval_minutes",
            "schemas",
            "include_patterns",
            "exclude_patterns",
            "max_tables",
            "first_checks_per_minute",
            "check_interval_seconds",
            "freshness_threshold_minutes",
            "failure_threshold",
        ]

    def clean(self):
        cleaned = super().clean()
        scope = {name: cleaned.get(name, getattr(self.instance, name)) for name in discovery.SCOPE_FIELDS}
        scope = {name: [] if value is None else value for name, value in scope.items()}
        for name, message in discovery.scope_problems(**scope).items():
            self.add_error(name, message)
        return cleaned

    def save(self, commit=True):
        if self.instance.is_enabled and {"is_enabled", "interval_minutes"} & set(self.changed_data):
            self.instance.next_run_at = None  # due now
        return super().save(commit=commit)


class DiscoveryPolicyInline(admin.StackedInline):
    """The discovery section of the connection's page (the project's admin puts it on ConnectionAdmin)."""

    model = DiscoveryPolicy
    form = DiscoveryPolicyForm
    extra = 0
    max_num = 1
    can_delete = False
    verbose_name = verbose_name_plural = "discovery"
    readonly_fields = ["last_run_at", "next_run_at", "last_result", "last_error"]

    @admin.display(description="last discovery")
    def last_result(self, obj):
        summary = obj.last_summary or {}
        if not summary:
            return "-"
        return (
            f"{summary.get('added_count', 0)} added, {summary.get('skipped_count', 0)} skipped, "
            f"{summary.get('over_cap_count', 0)} over the cap, {summary.get('missing_count', 0)} missing, "
            f"{summary.get('already_monitored', 0)} already monitored"
        )


class MonitoredTableAdmin(TeamScopedAdmin):
    """Registered by the project's admin, which binds `table_rebaseline` to the alert-resolving version."""

    table_rebaseline = staticmethod(tables.table_rebaseline)
    form = MonitoredTableAdminForm
    team_path = "connection__team"
    list_display = [
        "state",
        "qualified_name",
        "connection",
        "timestamp",
        "freshness_limit",
        "interval",
        "active",
        "last_checked",
        "next_check",
        "managed_by",
    ]
    list_display_links = ["qualified_name"]
    list_filter = ["status", "is_active", ("connection", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["schema_name", "table_name", "connection__name"]
    ordering = ["connection__name", "schema_name", "table_name"]
    readonly_fields = [
        "state",
        "timestamp_column_chosen_by",
        "timestamp_column_reason",
        "discovered_at",
        "missing_since",
        "last_checked_at",
        "next_check_at",
        "last_error",
        "baseline_since",
        "backfilled_at",
        "managed_by",
        "created_at",
        "updated_at",
    ]
    list_select_related = ["connection"]
    inlines = [CheckInline]
    actions = ["rebaseline", release_from_file]

    @admin.display(description="status", ordering="status")
    def state(self, obj):
        return status_label(obj.status, obj.get_status_display())

    @admin.display(description="table", ordering="table_name")
    def qualified_name(self, obj):
        return obj.qualified_name

    @admin.display(description="timestamp", ordering="timestamp_column")
    def timestamp(self, obj):
        return obj.timestamp_column or "-"

    @admin.display(description="stale after", ordering="freshness_threshold_minutes")
    def freshness_limit(self, obj):
        if not obj.timestamp_column:
            return "-"
        return checks.format_value("freshness", obj.freshness_threshold_minutes * 60)

    @admin.display(boolean=True, description="active", ordering="is_active")
    def active(self, obj):
        return obj.is_active

    @admin.display(description="every", ordering="check_interval_seconds")
    def interval(self, obj):
        return checks.format_duration(obj.check_interval_seconds)

    @admin.display(description="last checked", ordering="last_checked_at")
    def last_checked(self, obj):
        return short_time(obj.last_checked_at)

    @admin.display(description="next check", ordering="next_check_at")
    def next_check(self, obj):
        return short_time(obj.next_check_at)

    @admin.action(description="Rebaseline volume (accept the current level)", permissions=["change"])
    def rebaseline(self, request, queryset):
        for table in queryset:
            self.table_rebaseline(table=table)
        self.message_user(request, f"{queryset.count()} table(s) rebaselined; volume takes the new level from now.")


@admin.register(Check)
class CheckAdmin(TeamScopedAdmin):
    team_path = "table__connection__team"
    form = CheckAdminForm
    list_display = ["is_active", "kind", "table", "column", "limits", "managed_by", "updated"]
    list_display_links = ["kind"]
    list_filter = [
        "is_active",
        "kind",
        # RelatedOnly: the choices come from the (team-scoped) list, never other teams' connections or tables.
        ("table__connection", admin.RelatedOnlyFieldListFilter),
        ("table", admin.RelatedOnlyFieldListFilter),
    ]
    search_fields = ["table__schema_name", "table__table_name", "table__connection__name", "column", "sql"]
    ordering = ["table__connection__name", "table__schema_name", "table__table_name", "kind", "id"]
    readonly_fields = ["managed_by", "created_at", "updated_at"]
    list_select_related = ["table", "table__connection"]
    actions = [release_from_file]

    @admin.display(description="limits")
    def limits(self, obj):
        return band_text(obj.kind, obj.min_value, obj.max_value)

    @admin.display(description="updated", ordering="updated_at")
    def updated(self, obj):
        return short_time(obj.updated_at)

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
    list_display = ["state", "kind", "subject", "value", "expected", "message", "anomaly", "when"]
    list_display_links = ["state"]
    list_filter = ["status", "kind", "is_anomaly"]
    # The result page (read-only): the value and band in their unit, like the list.
    fields = [
        "connection",
        "table",
        "check_definition",
        "kind",
        "state",
        "value",
        "expected",
        "message",
        "anomaly",
        "started_at",
        "bucket_start",
        "duration_ms",
        "queries_used",
        "details",
    ]
    readonly_fields = ["state", "value", "expected", "anomaly"]
    actions = ["mark_expected"]
    search_fields = ["table__table_name", "message"]
    ordering = ["-started_at"]
    list_select_related = ["connection", "table"]
    date_hierarchy = "started_at"

    @admin.display(description="status", ordering="status")
    def state(self, obj):
        return status_label(obj.status, obj.get_status_display())

    @admin.display(description="table", ordering="table__table_name")
    def subject(self, obj):
        """The table on its connection, or the connection for connection-level kinds (replication lag)."""
        return place_label(obj.table, obj.connection)

    @admin.display(description="value")
    def value(self, obj):
        return value_text(obj.kind, obj.observed_value)

    @admin.display(description="expected")
    def expected(self, obj):
        return band_text(obj.kind, obj.expected_lower, obj.expected_upper)

    @admin.display(description="anomaly", ordering="is_anomaly")
    def anomaly(self, obj):
        if not obj.is_anomaly:
            return "-"
        return "yes, marked expected" if obj.marked_expected else "yes"

    @admin.display(description="started", ordering="started_at")
    def when(self, obj):
        return short_time(obj.started_at)

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
