from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from observability.badges import badge_url, badges_ensure
from observability.keys import KEY_PATTERN
from observability.models import Badge

# A well-formed key (observability/keys.py) stands for the page's keys in the one URL built with `reverse`.
_MODEL_KEY = "K" * 32


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

    def _url(self, badge: Badge) -> str:
        """`badge_url`, with the URL around the key built once per serialisation (a `reverse` per row was a
        tenth of a table list's CPU); keys are URL-safe, so nothing in them is quoted."""
        if not KEY_PATTERN.match(badge.key):
            return badge_url(badge)
        around = self.context.get("_badge_url_around")
        if around is None:
            prefix, _, suffix = badge_url(Badge(key=_MODEL_KEY)).rpartition(_MODEL_KEY)
            around = self.context["_badge_url_around"] = (prefix, suffix)
        return around[0] + badge.key + around[1]

    def to_representation(self, subject):
        badges = self._badges()
        if subject.pk not in badges:
            badges.update(badges_ensure(subjects=[subject]))
        return self._url(badges[subject.pk])


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
