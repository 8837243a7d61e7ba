from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from observability.badges import badge_url, badges_ensure
from observability.models import Badge


@extend_schema_field(OpenApiTypes.URI)
class BadgeUrlField(serializers.Field):
    """The object's public badge URL (read-only). The badges of a whole page are created and read in bulk."""

    def __init__(self, **kwargs):
        kwargs.update(read_only=True, source="*")
        super().__init__(**kwargs)

    def _badges(self) -> dict:
        cache = self.context.setdefault("_badges", {})
        if not cache:
            instance = self.root.instance
            subjects = (
                list(instance) if isinstance(instance, list | tuple) or hasattr(instance, "model") else [instance]
            )
            cache.update(badges_ensure(subjects=[subject for subject in subjects if subject is not None]))
        return cache

    def to_representation(self, subject):
        badges = self._badges()
        if subject.pk not in badges:
            badges.update(badges_ensure(subjects=[subject]))
        return badge_url(badges[subject.pk])


class BadgeSerializer(serializers.ModelSerializer):
    kind = serializers.CharField(read_only=True)
    name = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()

    class Meta:
        model = Badge
        fields = ["id", "kind", "team", "connection", "table", "name", "url", "created_at", "rotated_at"]
        read_only_fields = fields

    def get_name(self, badge) -> str:
        return str(badge.subject)

    def get_url(self, badge) -> str:
        return badge_url(badge)
