import secrets
from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.utils import timezone

from alerts.api.channels import REMINDER_MAX_MINUTES
from alerts.lifecycle import AlertStateError, alert_acknowledge, alert_resolve, alert_snooze
from alerts.models import Alert, AlertEvent, Channel, Notification
from alerts.outbox import notification_test
from alerts.transports import target_clean
from common.admin import TeamScopedAdmin
from connections.models import MaintenanceWindow


class AlertEventInline(admin.TabularInline):
    model = AlertEvent
    extra = 0
    fields = ["at", "kind", "message", "actor"]
    readonly_fields = fields
    ordering = ["at", "id"]
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


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
    list_filter = ["status", "severity", "kind", ("connection", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["message", "connection__name", "table__table_name"]
    ordering = ["-opened_at"]
    inlines = [AlertEventInline]
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
        "snoozed_until",
    ]
    actions = ["acknowledge", "resolve", "snooze_one_hour"]

    def has_add_permission(self, request):
        return False

    def _apply(self, request, queryset, transition, verb):
        done = 0
        for alert in queryset:
            try:
                transition(alert=alert, user=request.user)
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

    @admin.action(description="Snooze selected alerts for an hour", permissions=["change"])
    def snooze_one_hour(self, request, queryset):
        until = timezone.now() + timedelta(hours=1)
        self._apply(request, queryset, lambda **kw: alert_snooze(until=until, **kw), "snoozed for an hour")


@admin.register(MaintenanceWindow)
class MaintenanceWindowAdmin(TeamScopedAdmin):
    team_path = "connection__team"
    list_display = ["connection", "starts_at", "ends_at", "reason"]
    list_filter = [("connection", admin.RelatedOnlyFieldListFilter)]
    ordering = ["-starts_at"]


class ChannelAdminForm(forms.ModelForm):
    """`target` and `secret` are masked and never rendered back; blank keeps the stored value."""

    target = forms.CharField(
        required=False,
        max_length=2000,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="email: comma-separated addresses; slack: https://hooks.slack.com/… URL; webhook: http(s) URL; "
        "apprise: an Apprise URL. Stored encrypted. Leave blank to keep the current one.",
    )
    secret = forms.CharField(
        required=False,
        strip=False,
        min_length=16,
        max_length=200,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Webhook only: the signing key. Leave blank to keep it (a new webhook gets a generated one, "
        "shown once after saving).",
    )

    class Meta:
        model = Channel
        fields = ["name", "team", "kind", "target", "secret", "reminder_interval_minutes", "is_active"]

    def clean_reminder_interval_minutes(self):
        minutes = self.cleaned_data.get("reminder_interval_minutes")
        if minutes is not None and not 1 <= minutes <= REMINDER_MAX_MINUTES:
            raise forms.ValidationError(f"Between 1 and {REMINDER_MAX_MINUTES} minutes, or empty.")
        return minutes

    def clean(self):
        cleaned = super().clean()
        kind = cleaned.get("kind") or self.instance.kind
        target = cleaned.get("target")
        if target:
            try:
                cleaned["target"] = target_clean(kind=kind, target=target)
            except ValueError as exc:
                self.add_error("target", str(exc))
        elif not self.instance.target_encrypted:
            self.add_error("target", "This field is required.")
        if cleaned.get("secret") and kind != Channel.Kind.WEBHOOK:
            self.add_error("secret", "Only webhook channels have a signing secret.")
        return cleaned

    def save(self, commit=True):
        self.generated_secret = None
        if self.cleaned_data.get("target"):
            self.instance.set_target(self.cleaned_data["target"])
        if self.cleaned_data.get("secret"):
            self.instance.set_secret(self.cleaned_data["secret"])
        elif self.instance.kind == Channel.Kind.WEBHOOK and not self.instance.secret_encrypted:
            self.generated_secret = secrets.token_urlsafe(32)
            self.instance.set_secret(self.generated_secret)
        return super().save(commit=commit)


@admin.register(Channel)
class ChannelAdmin(TeamScopedAdmin):
    form = ChannelAdminForm
    team_path = "team"
    list_display = ["is_active", "name", "kind", "team", "last_error_at", "reminder_interval_minutes", "updated_at"]
    list_display_links = ["name"]
    # RelatedOnly: the filter lists only teams (and channels) the staff user can see.
    list_filter = ["is_active", "kind", ("team", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["name"]
    ordering = ["team__name", "name"]
    list_select_related = ["team"]
    readonly_fields = ["has_target", "has_secret", "last_error", "last_error_at", "created_at", "updated_at"]
    actions = ["send_test"]

    def get_readonly_fields(self, request, obj=None):
        # The kind decides what the target means: it cannot change (create another channel instead).
        return [*self.readonly_fields, "kind"] if obj is not None else self.readonly_fields

    @admin.display(boolean=True, description="target stored")
    def has_target(self, obj):
        return bool(obj.target_encrypted)

    @admin.display(boolean=True, description="secret stored")
    def has_secret(self, obj):
        return bool(obj.secret_encrypted)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if getattr(form, "generated_secret", None):
            self.message_user(
                request,
                f"Webhook signing secret of “{obj.name}” (shown this once; copy it now): {form.generated_secret}",
                messages.WARNING,
            )

    @admin.action(description="Send a test notification", permissions=["change"])
    def send_test(self, request, queryset):
        count = 0
        for channel in queryset:
            notification_test(channel=channel)
            count += 1
        self.message_user(
            request,
            f"Test notification queued for {count} channel(s); the notifier sends it within seconds.",
            messages.SUCCESS,
        )


@admin.register(Notification)
class NotificationAdmin(TeamScopedAdmin):
    """The outbox, read-only: what was sent where, and what is waiting for a retry."""

    team_path = "channel__team"
    list_display = ["status", "channel", "subject", "tries", "next_try_at", "sent_at", "last_error"]
    list_filter = ["status", "channel__kind", ("channel", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["subject", "channel__name"]
    ordering = ["-created_at", "-id"]
    list_select_related = ["channel"]
    readonly_fields = [
        "status",
        "channel",
        "event",
        "subject",
        "body",
        "payload",
        "tries",
        "next_try_at",
        "claimed_until",
        "sent_at",
        "last_error",
        "created_at",
    ]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
