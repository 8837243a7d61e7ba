"""The viewset base every team-owned model's API shares: scoped to the user's teams, permissions per model."""

from rest_framework import serializers, viewsets

from common.api import TeamModelPermissions
from common.managed import managed_delete_problem
from common.tenancy import scope_to_user


class TeamScopedMixin:
    """Lists and finds only the objects of the user's teams (others are simply not found: 404).

    Subclasses give `base_queryset()` (the model's rows, with any select_related) and `team_path`, which leads
    from the model to its team id.
    """

    team_path = "team"
    permission_classes = [TeamModelPermissions]

    def base_queryset(self):
        raise NotImplementedError

    def get_queryset(self):
        return scope_to_user(self.base_queryset(), user=self.request.user, team_path=self.team_path)


class TeamScopedViewSet(TeamScopedMixin, viewsets.ModelViewSet):
    """Create, read, partial update and delete; no PUT (a partial update says what changes)."""

    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def perform_destroy(self, instance):
        """An object a monitors-as-code file manages (or that would take managed objects with it, such as a
        connection with managed tables) is deleted by that file (apply --prune), or opted out first."""
        problem = managed_delete_problem(instance=instance)
        if problem:
            raise serializers.ValidationError({"managed_by": [problem]})
        super().perform_destroy(instance)
