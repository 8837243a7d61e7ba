"""What every Pulse API shares: permissions, strict input, error handling."""

import logging

import django_filters
from django import forms
from django.db import IntegrityError
from rest_framework import exceptions, permissions, routers, serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)


class PulseRouter(routers.DefaultRouter):
    """Every route answers with and without a trailing slash, never redirecting."""

    include_root_view = False

    def __init__(self):
        super().__init__()
        self.trailing_slash = "/?"


class IdFilter(django_filters.NumberFilter):
    """Filter on an id: a whole number in bigint range, else 400."""

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", 2**63 - 1)
        super().__init__(*args, **kwargs)


class TeamModelPermissions(permissions.DjangoModelPermissions):
    """Reads need team membership only; writes need Django's add/change/delete permission.

    Custom actions name the permission they need in the view's `action_permissions`
    (e.g. {"acknowledge": "change"}).
    """

    def has_permission(self, request, view):
        if not request.user or not request.user.is_authenticated:
            return False
        action_permission = getattr(view, "action_permissions", {}).get(getattr(view, "action", None))
        if action_permission:
            model = view.get_queryset().model
            codename = f"{model._meta.app_label}.{action_permission}_{model._meta.model_name}"
            return request.user.has_perm(codename)
        return super().has_permission(request, view)


class StrictModelSerializer(serializers.ModelSerializer):
    """Refuses fields it does not know or will not write, instead of silently dropping them."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            writable = {name for name, field in self.fields.items() if not field.read_only}
            errors = {}
            for key in data:
                if key in writable:
                    continue
                if key in self.fields:
                    errors[key] = ["This field is read-only."]
                else:
                    errors[key] = ["Unknown field."]
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)


def exception_handler(exc, context):
    if isinstance(exc, IntegrityError):
        logger.info("integrity error answered as 409: %s", exc.__class__.__name__)
        return Response(
            {"detail": "This conflicts with an existing object (for example a duplicate name)."},
            status=status.HTTP_409_CONFLICT,
        )
    if isinstance(exc, exceptions.ParseError):
        return Response({"detail": f"Malformed request body: {exc.detail}"}, status=status.HTTP_400_BAD_REQUEST)
    return drf_exception_handler(exc, context)
