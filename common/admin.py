"""The admin base class every team-owned model shares."""

from django.contrib import admin
from django.utils import timezone
from django.utils.html import format_html

from common.managed import managed_change_problems
from common.tenancy import scope_to_user, teams_of


class TeamScopedAdmin(admin.ModelAdmin):
    """Staff who are not superusers see and pick only their teams' objects.

    `team_path` leads from the model to its team id. A `team` foreign key offers the user's teams; each
    foreign key in `scoped_foreign_keys` (field name -> path from the related model to its team id) offers
    only the user's teams' objects.
    """

    team_path = "team"
    scoped_foreign_keys: dict[str, str] = {"connection": "team"}

    def get_queryset(self, request):
        return scope_to_user(super().get_queryset(request), user=request.user, team_path=self.team_path)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "team":
            kwargs["queryset"] = teams_of(request.user)
        elif db_field.name in self.scoped_foreign_keys:
            kwargs["queryset"] = scope_to_user(
                db_field.related_model._default_manager.all(),
                user=request.user,
                team_path=self.scoped_foreign_keys[db_field.name],
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_delete_permission(self, request, obj=None):
        # An object a monitors-as-code file manages is deleted by that file (apply --prune), or opted out first;
        # the bulk "delete selected" checks this per object too, and deletes nothing when one is managed.
        if obj is not None and getattr(obj, "managed_by", ""):
            return False
        return super().has_delete_permission(request, obj)


def managed_form_errors(form) -> bool:
    """Add the refusals of common.managed to an admin form (a managed object's file fields stay as the file
    says); True when there were any, so the form's own (replica) rules need not run."""
    problems = managed_change_problems(instance=form.instance, changed=form.changed_data)
    for field, message in problems.items():
        form.add_error(field if field in form.fields else None, message)
    return bool(problems)


@admin.action(description="Opt out of monitors as code (edit here from now on)", permissions=["change"])
def release_from_file(modeladmin, request, queryset):
    released = queryset.exclude(managed_by="").update(managed_by="")
    modeladmin.message_user(request, f"{released} object(s) opted out of their monitors-as-code file.")


# The tone of each status word any Pulse model uses (results, tables, connections, alerts, severities, outbox).
STATUS_TONES = {
    "pass": "good",
    "healthy": "good",
    "ok": "good",
    "sent": "good",
    "fail": "bad",
    "failing": "bad",
    "error": "bad",
    "not_replica": "bad",
    "open": "bad",
    "critical": "bad",
    "failed": "bad",
    "learning": "note",
    "acknowledged": "note",
    "warning": "note",
    "pending": "note",
}


def status_label(value: str, text: str | None = None):
    """A coloured label for a status value (its tone from STATUS_TONES, else neutral grey); styled in
    templates/admin/base_site.html."""
    tone = STATUS_TONES.get(value, "neutral")
    return format_html('<span class="pulse-status pulse-{}">{}</span>', tone, text if text is not None else value)


def short_time(value):
    """A timestamp in the admin's time zone, short enough for a list column ('Nov 29 19:36'), in full on hover."""
    if value is None:
        return "-"
    local = timezone.localtime(value)
    return format_html('<span title="{}">{}</span>', local.isoformat(timespec="seconds"), local.strftime("%b %d %H:%M"))


def place_label(table, connection):
    """Where a result or alert is: the table with its connection below it, or the connection alone."""
    if table is None:
        return connection.name
    return format_html('{}<br><span class="pulse-muted">{}</span>', table, connection.name)
