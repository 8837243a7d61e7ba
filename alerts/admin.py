from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseBadRequest, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone

from alerts.channels import (
    REMINDER_MAX_MINUTES,
    SECRET_MAX_LENGTH,
    SECRET_MIN_LENGTH,
    TARGET_HELP,
    TARGET_MAX_LENGTH,
    channel_create,
    channel_problems,
    channel_update,
)
from alerts.lifecycle import AlertStateError, alert_acknowledge, alert_resolve, alert_snooze
from alerts.models import Alert, AlertEvent, Channel, LifecycleBacklog, Notification
from alerts.outbox import notification_test
from common.admin import TeamScopedAdmin, managed_form_errors, place_label, release_from_file, short_time, status_label


class AlertEventInline(admin.TabularInline):
    model = AlertEvent
    extra = 0
    fields = ["at", "kind", "message", "actor"]
    readonly_fields = fields
    ordering = ["at", "id"]
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


# The snoozes the alert page offers (POST field `hours`).
SNOOZE_HOURS = {1: "1 hour", 24: "1 day", 168: "1 week"}


@admin.register(Alert)
class AlertAdmin(TeamScopedAdmin):
    """Alerts of the user's teams; the change page (templates/admin/alerts/alert/change_form.html) has
    Acknowledge, Snooze and Resolve buttons that POST to `<id>/acknowledge/`, `<id>/snooze/`, `<id>/resolve/`."""

    team_path = "connection__team"
    list_display = ["state", "level", "kind", "subject", "message", "opened", "last_seen", "failures"]
    list_display_links = ["state"]
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
        "resolved_while_failing_at",
    ]
    actions = ["acknowledge", "resolve", "snooze_one_hour"]

    @admin.display(description="status", ordering="status")
    def state(self, obj):
        return status_label(obj.status, obj.get_status_display())

    @admin.display(description="severity", ordering="severity")
    def level(self, obj):
        return status_label(obj.severity, obj.get_severity_display())

    @admin.display(description="table", ordering="table__table_name")
    def subject(self, obj):
        """The table on its connection, or the connection for connection-level alerts."""
        return place_label(obj.table, obj.connection)

    @admin.display(description="opened", ordering="opened_at")
    def opened(self, obj):
        return short_time(obj.opened_at)

    @admin.display(description="last seen", ordering="last_seen_at")
    def last_seen(self, obj):
        return short_time(obj.last_seen_at)

    @admin.display(description="failures", ordering="consecutive_failures")
    def failures(self, obj):
        return obj.consecutive_failures

    def has_add_permission(self, request):
        return False

    def get_urls(self):
        buttons = [
            path(
                f"<path:object_id>/{name}/",
                self.admin_site.admin_view(self.transition_view),
                {"transition": name},
                name=f"alerts_alert_{name}",
            )
            for name in ("acknowledge", "snooze", "resolve")
        ]
        return buttons + super().get_urls()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "snooze_choices": SNOOZE_HOURS.items()}
        return super().change_view(request, object_id, form_url, extra_context)

    def transition_view(self, request, object_id, transition):
        """One button of the alert page: POST only (CSRF-checked by admin_view); another team's alert is a 404."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        alert = self.get_object(request, unquote(object_id))
        if alert is None:
            raise Http404("No such alert.")
        if not self.has_change_permission(request, alert):
            raise PermissionDenied
        if transition == "snooze":
            hours = request.POST.get("hours", "")
            if not hours.isdigit() or int(hours) not in SNOOZE_HOURS:
                return HttpResponseBadRequest(f"hours: choose one of {', '.join(map(str, SNOOZE_HOURS))}.")
            until = timezone.now() + timedelta(hours=int(hours))
            done = self._apply(request, [alert], lambda **kw: alert_snooze(until=until, **kw), "snoozed")
        elif transition == "acknowledge":
            done = self._apply(request, [alert], alert_acknowledge, "acknowledged")
        else:
            done = self._apply(request, [alert], alert_resolve, "resolved")
            self._say_if_held(request, done)
        return HttpResponseRedirect(reverse("admin:alerts_alert_change", args=[alert.pk]))

    def _say_if_held(self, request, resolved: list[Alert]) -> None:
        held = [alert for alert in resolved if alert.resolved_while_failing_at]
        if held:
            self.message_user(
                request,
                f"{len(held)} of them still fail: Pulse opens no new alert for these failures and alerts again "
                "only if a check fails after passing once.",
                messages.INFO,
            )

    def _apply(self, request, queryset, transition, verb) -> list[Alert]:
        done = []
        for alert in queryset:
            try:
                done.append(transition(alert=alert, user=request.user))
            except AlertStateError as exc:
                self.message_user(request, f"{alert}: {exc}", messages.WARNING)
        self.message_user(request, f"{len(done)} alert(s) {verb}.", messages.SUCCESS)
        return done

    @admin.action(description="Acknowledge selected alerts", permissions=["change"])
    def acknowledge(self, request, queryset):
        self._apply(request, queryset, alert_acknowledge, "acknowledged")

    @admin.action(
        description="Resolve selected alerts (a still-failing check stays quiet until it passes once)",
        permissions=["change"],
    )
    def resolve(self, request, queryset):
        self._say_if_held(request, self._apply(request, queryset, alert_resolve, "resolved"))

    @admin.action(description="Snooze selected alerts for an hour", permissions=["change"])
    def snooze_one_hour(self, request, queryset):
        until = timezone.now() + timedelta(hours=1)
        self._apply(request, queryset, lambda **kw: alert_snooze(until=until, **kw), "snoozed for an hour")


class ChannelAdminForm(forms.ModelForm):
    """`target` and `secret` are masked and never rendered back; blank keeps the stored value.

    Validation and saving go through alerts.channels, like the API: same limits, same refusals.
    """

    target = forms.CharField(
        required=False,
        max_length=TARGET_MAX_LENGTH,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=TARGET_HELP + " Leave blank to keep the current one.",
    )
    secret = forms.CharField(
        required=False,
        strip=False,
        min_length=SECRET_MIN_LENGTH,
        max_length=SECRET_MAX_LENGTH,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Webhook only: the signing key. Leave blank to keep it (a new webhook gets a generated one, "
        "shown once after saving).",
    )
    reminder_interval_minutes = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=REMINDER_MAX_MINUTES,
        help_text="Remind while an alert stays open and unacknowledged; empty: never.",
    )

    class Meta:
        model = Channel
        fields = [
            "name",
            "team",
            "kind",
            "target",
            "secret",
            "reminder_interval_minutes",
            "remind_earlier_alerts",
            "is_active",
        ]

    def clean(self):
        cleaned = super().clean()
        if managed_form_errors(self):
            return cleaned
        problems = channel_problems(
            kind=cleaned.get("kind"),
            target=cleaned.get("target") or None,
            secret=cleaned.get("secret") or None,
            instance=self.instance if self.instance.pk else None,
            team=cleaned.get("team"),
        )
        for field, message in problems.items():
            self.add_error(field if field in self.fields else None, message)
        return cleaned

    def save(self, commit=True):
        """Save through alerts.channels (whatever `commit` says: the service writes the row)."""
        data = self.cleaned_data
        fields = {
            "name": data["name"],
            "reminder_interval_minutes": data.get("reminder_interval_minutes"),
            "remind_earlier_alerts": data.get("remind_earlier_alerts", False),
            "is_active": data.get("is_active", False),
        }
        self.generated_secret = None
        if self.instance.pk is None:
            self.instance, self.generated_secret = channel_create(
                team=data["team"], kind=data["kind"], target=data["target"], secret=data.get("secret") or None, **fields
            )
        else:
            channel_update(channel=self.instance, target=data.get("target"), secret=data.get("secret"), **fields)
        self.save_m2m = lambda: None
        return self.instance


@admin.register(Channel)
class ChannelAdmin(TeamScopedAdmin):
    form = ChannelAdminForm
    team_path = "team"
    list_display = [
        "is_active",
        "name",
        "kind",
        "team",
        "last_error_at",
        "reminder_interval_minutes",
        "managed_by",
        "updated_at",
    ]
    list_display_links = ["name"]
    # RelatedOnly: the filter lists only teams (and channels) the staff user can see.
    list_filter = ["is_active", "kind", ("team", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["name"]
    ordering = ["team__name", "name"]
    list_select_related = ["team"]
    readonly_fields = [
        "has_target",
        "has_secret",
        "managed_by",
        "last_error",
        "last_error_at",
        "created_at",
        "updated_at",
    ]
    actions = ["send_test", release_from_file]

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
        # The form saved it through alerts.channels.
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


@admin.register(LifecycleBacklog)
class LifecycleBacklogAdmin(TeamScopedAdmin):
    """Batches whose alert lifecycle failed, waiting for the notify job to replay them; read-only."""

    team_path = "connection__team"
    list_display = ["connection", "error", "tries", "next_try_at", "created_at"]
    list_filter = [("connection", admin.RelatedOnlyFieldListFilter)]
    ordering = ["next_try_at", "id"]
    list_select_related = ["connection"]
    readonly_fields = ["connection", "result_ids", "error", "tries", "next_try_at", "created_at"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
