"""What every Pulse API shares: permissions, strict input, the team field, error handling."""

import copy
import logging

import django_filters
from django import forms
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import IntegrityError
from rest_framework import exceptions, permissions, routers, serializers, status
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from common.managed import changed_fields, managed_by_problem, managed_change_problems
from common.parsers import FormBodyParser, JSONBodyParser, MultiPartBodyParser, text_encodable
from common.tenancy import teams_of

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


class FieldsBuiltOnceMixin:
    """A model serializer whose fields are built from the model once per class, then copied for each use (as DRF
    copies declared fields): building 15-30 fields by introspection was most of a list request's serialising."""

    def get_fields(self):
        cls = type(self)
        prototype = cls.__dict__.get("_fields_prototype")
        if prototype is None:
            prototype = super().get_fields()
            cls._fields_prototype = prototype
        return copy.deepcopy(prototype)


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


class ManagedModelSerializer(StrictModelSerializer):
    """A model a monitors-as-code file can manage (common/managed.py): `managed_by` is shown, can only be
    cleared (the team opts the object out), and the file's fields of a managed object are refused, before
    any other rule runs. `write_only_managed`: fields that cannot be compared (secrets): giving one is a change."""

    managed_by = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=100,
        help_text='The monitors-as-code file managing this object (read-only but for "", which opts it out).',
    )
    write_only_managed: tuple[str, ...] = ()

    def validate_managed_by(self, value):
        problem = managed_by_problem(value)
        if problem:
            raise serializers.ValidationError(problem)
        return value

    def to_internal_value(self, data):
        attrs = super().to_internal_value(data)
        problems = managed_change_problems(
            instance=self.instance,
            changed=changed_fields(instance=self.instance, attrs=attrs, write_only=self.write_only_managed),
            releasing=attrs.get("managed_by") == "",
        )
        if problems:
            raise serializers.ValidationError({field: [message] for field, message in problems.items()})
        return attrs


class UserTeamField(serializers.PrimaryKeyRelatedField):
    def get_queryset(self):
        return teams_of(self.context["request"].user)


class SoleTeamDefault:
    """`team` may be omitted when the user belongs to exactly one team."""

    requires_context = True

    def __call__(self, serializer_field):
        teams = list(teams_of(serializer_field.context["request"].user)[:2])
        if len(teams) != 1:
            raise serializers.ValidationError("This field is required unless you belong to exactly one team.")
        return teams[0]


class AuthTokenView(ObtainAuthToken):
    """DRF's token endpoint, parsing bodies like every other view (it names its own parsers otherwise)."""

    parser_classes = (JSONBodyParser, FormBodyParser, MultiPartBodyParser)


def exception_handler(exc, context):
    if isinstance(exc, IntegrityError):
        logger.info("integrity error answered as 409: %s", exc.__class__.__name__)
        return Response(
            {"detail": "This conflicts with an existing object (for example a duplicate name)."},
            status=status.HTTP_409_CONFLICT,
        )
    if isinstance(exc, RequestDataTooBig):
        return Response(
            {"detail": f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes."},
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, exceptions.ParseError):
        detail = _without_surrogates(f"Malformed request body: {exc.detail}")
        return Response({"detail": detail}, status=status.HTTP_400_BAD_REQUEST)
    response = drf_exception_handler(exc, context)
    if response is not None:
        response.data = _without_surrogates(response.data)
    return response


def _without_surrogates(data):
    """Error details can repeat input (an unknown key, an invalid choice). The parsers refuse lone surrogates;
    this is the backstop that keeps any other one from making the response unencodable (a 500)."""
    if isinstance(data, str):
        return data if text_encodable(data) else data.encode("utf-8", "replace").decode()
    if isinstance(data, list):
        return [_without_surrogates(item) for item in data]
    if isinstance(data, dict):
        return {_without_surrogates(key): _without_surrogates(value) for key, value in data.items()}
    return data
