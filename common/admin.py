"""The admin base class every team-owned model shares."""

from django.contrib import admin

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
