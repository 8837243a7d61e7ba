"""The badge URL on admin change pages, and the badges' own admin (read-only, with a rotate action)."""

from django.contrib import admin, messages
from django.utils.html import format_html

from common.admin import TeamScopedAdmin
from common.tenancy import scope_to_user
from observability.badges import badge_for, badge_rotate, badge_url
from observability.models import Badge


class BadgeUrlAdminMixin:
    """Adds a read-only "badge" field: the object's public badge URL and the badge itself."""

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        return [*fields, "status_badge"] if obj is not None else fields

    @admin.display(description="status badge")
    def status_badge(self, obj):
        if obj is None or obj.pk is None:
            return "-"
        url = badge_url(badge_for(subject=obj))
        return format_html(
            '<img src="{}" alt="status badge"><br><code>{}</code><br><span class="help">Anyone with this URL sees '
            "the name and status word; rotate the key under Observability › Badges.</span>",
            url,
            url,
        )


@admin.register(Badge)
class BadgeAdmin(TeamScopedAdmin):
    list_display = ["__str__", "url", "created_at", "rotated_at"]
    readonly_fields = ["team", "connection", "table", "url", "created_at", "rotated_at"]
    fields = readonly_fields
    actions = ["rotate"]

    def get_queryset(self, request):
        badges = admin.ModelAdmin.get_queryset(self, request).select_related("team", "connection", "table")
        user = request.user
        return (
            scope_to_user(badges, user=user, team_path="team")
            | scope_to_user(badges, user=user, team_path="connection__team")
            | scope_to_user(badges, user=user, team_path="table__connection__team")
        )

    def has_add_permission(self, request):
        return False

    @admin.display(description="URL")
    def url(self, obj):
        return badge_url(obj)

    @admin.action(description="Rotate the keys (old badge URLs stop working)", permissions=["change"])
    def rotate(self, request, queryset):
        count = 0
        for badge in queryset:
            badge_rotate(badge=badge)
            count += 1
        self.message_user(request, f"{count} badge key(s) rotated; the old URLs answer 404.", messages.SUCCESS)
