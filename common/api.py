"""What every Pulse API shares: permissions, strict input, the team field, error handling."""

import copy
import logging
from datetime import datetime

import django_filters
from django import forms
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import IntegrityError
from django.utils import timezone
from rest_framework import ISO_8601, exceptions, fields, permissions, relations, routers, serializers, status
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.response import Response
from rest_framework.settings import api_settings
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
        if self.perms_map.get(request.method) == []:
            return True  # a read needs no model permission: no queryset built (and scoped) just to name the model
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


# Field types whose output DRF computes as one plain conversion of the model attribute's value.
_PLAIN_CONVERSIONS = {
    fields.CharField: str,
    fields.IntegerField: int,
    fields.FloatField: float,
    fields.BooleanField: bool,
}
_ISO_DATETIME = object()
_OWN = object()  # the field's own to_representation, given the attribute's value


def _read_step(field, model_fields: dict) -> tuple:
    """(model attribute or None, conversion) of one readable field: no attribute means DRF's own path."""
    source = field.source_attrs
    model_field = model_fields.get(source[0]) if len(source) == 1 else None
    if model_field is None or not model_field.concrete:
        return None, None
    kind = type(field)
    if model_field.is_relation:
        if (
            isinstance(field, relations.PrimaryKeyRelatedField)
            and field.pk_field is None
            and kind.use_pk_only_optimization is relations.PrimaryKeyRelatedField.use_pk_only_optimization
            and kind.get_attribute is relations.RelatedField.get_attribute
            and kind.to_representation is relations.PrimaryKeyRelatedField.to_representation
        ):
            return model_field.attname, None  # the id, as DRF's pk-only optimisation gives it
        return None, None
    if kind.get_attribute is not fields.Field.get_attribute:
        return None, None
    if kind in _PLAIN_CONVERSIONS:
        return model_field.attname, _PLAIN_CONVERSIONS[kind]
    if (
        kind is fields.DateTimeField
        and settings.USE_TZ
        and not hasattr(field, "timezone")
        and str(getattr(field, "format", api_settings.DATETIME_FORMAT)).lower() == ISO_8601
    ):
        return model_field.attname, _ISO_DATETIME
    return model_field.attname, _OWN


class ReadPlanMixin(FieldsBuiltOnceMixin):
    """A model serializer whose output reads each model attribute once and converts it as DRF would, without
    DRF's per-field dispatch (sources, callables, timezone look-ups per value): DRF's generic path was most of a
    list request's CPU. Fields it cannot read that way (`source="*"`, method fields, nested) take DRF's own path;
    the output is the same (pulse_project/tests/test_api_representation.py compares them)."""

    def _read_plan_build(self) -> list[tuple]:
        """(field, output name, attribute, conversion) per readable field; the steps are worked out once per class."""
        cls = type(self)
        steps = cls.__dict__.get("_read_steps")
        if steps is None:
            model_fields = {field.name: field for field in self.Meta.model._meta.get_fields()}
            steps = cls._read_steps = {
                field.field_name: _read_step(field, model_fields) for field in self._readable_fields
            }
        plan = []
        for field in self._readable_fields:
            attribute, convert = steps[field.field_name]
            plan.append((field, field.field_name, attribute, field.to_representation if convert is _OWN else convert))
        return plan

    def to_representation(self, instance):
        plan = self.__dict__.get("_read_plan")
        if plan is None:
            plan = self._read_plan = self._read_plan_build()
        zone = timezone.get_current_timezone() if settings.USE_TZ else None
        representation = {}
        for field, name, attribute, convert in plan:
            if attribute is None:
                try:
                    value = field.get_attribute(instance)
                except fields.SkipField:
                    continue
                missing = (value.pk if isinstance(value, relations.PKOnlyObject) else value) is None
                representation[name] = None if missing else field.to_representation(value)
                continue
            value = getattr(instance, attribute)
            if value is None or convert is None:
                representation[name] = value
            elif convert is _ISO_DATETIME and isinstance(value, datetime) and value.tzinfo is not None:
                text = value.astimezone(zone).isoformat()
                representation[name] = text[:-6] + "Z" if text.endswith("+00:00") else text
            elif convert is _ISO_DATETIME:
                representation[name] = field.to_representation(value)
            else:
                representation[name] = convert(value)
        return representation


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
