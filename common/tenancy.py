"""Which teams a user belongs to, and the objects those teams own."""

from django.contrib.auth.models import Group
from django.db.models import QuerySet


def teams_of(user) -> QuerySet[Group]:
    if user.is_superuser:
        return Group.objects.all()
    return user.groups.all()


def scope_to_user(queryset: QuerySet, *, user, team_path: str) -> QuerySet:
    """Keep the objects owned by the user's teams; `team_path` leads from the model to its team id."""
    if user.is_superuser:
        return queryset
    if not user.is_authenticated:
        return queryset.none()
    return queryset.filter(**{f"{team_path}__in": user.groups.values("id")})
