from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from common.tenancy import scope_to_user, teams_of
from common.viewsets import TeamScopedMixin
from observability.api.serializers import BadgeSerializer
from observability.badges import badge_rotate, badges_ensure
from observability.models import Badge


class BadgeViewSet(TeamScopedMixin, viewsets.ReadOnlyModelViewSet):
    """`/api/badges`: the badges of the user's teams, their connections and tables; `rotate` replaces a key.

    Listing creates the team badges of the user's teams; a connection's or table's badge appears once its
    `badge_url` was shown (API or admin).
    """

    serializer_class = BadgeSerializer
    action_permissions = {"rotate": "change"}

    def get_queryset(self):
        user = self.request.user
        badges = Badge.objects.select_related("team", "connection", "table")
        return (
            scope_to_user(badges, user=user, team_path="team")
            | scope_to_user(badges, user=user, team_path="connection__team")
            | scope_to_user(badges, user=user, team_path="table__connection__team")
        )

    def list(self, request, *args, **kwargs):
        badges_ensure(subjects=teams_of(request.user))
        return super().list(request, *args, **kwargs)

    @extend_schema(request=None, responses=BadgeSerializer)
    @action(detail=True, methods=["post"])
    def rotate(self, request, pk=None):
        """A new key for this badge: its old URL answers 404 from now on."""
        return Response(BadgeSerializer(badge_rotate(badge=self.get_object()), context={"request": request}).data)
