"""POST /api/monitors/plan and /api/monitors/apply: the file as the body, under the caller's teams and permissions.

The body is the file itself (Content-Type application/yaml, text/yaml or text/plain; `?prune=true` to delete
managed objects that left it), or JSON `{"file": "...", "env": {"NAME": "value"}, "prune": false}` when the
channels' `*_env` names must resolve: through the API they are read from `env` only, never from the server's
environment. Problems answer 400 with each problem's line and field; a plan with changes answers 200 with
`has_changes` true (a CI job fails on it, like `manage.py monitors plan`'s exit code 2).
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, parsers, permissions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from common.parsers import JSONBodyParser
from common.tenancy import teams_of
from monitors_as_code.apply import plan_apply
from monitors_as_code.document import MAX_FILE_BYTES, Problem
from monitors_as_code.plan import Plan, plan_build

API_FILENAME = "pulse.yml"


class YAMLBodyParser(parsers.BaseParser):
    """The body is the file: read at most MAX_FILE_BYTES (one more byte says it is too large)."""

    media_type = "application/yaml"

    def parse(self, stream, media_type=None, parser_context=None):
        content = stream.read(MAX_FILE_BYTES + 1) if stream is not None else b""
        if len(content) > MAX_FILE_BYTES:
            raise exceptions.ParseError(f"the file is larger than {MAX_FILE_BYTES:,} bytes")
        return content


class TextYAMLParser(YAMLBodyParser):
    media_type = "text/yaml"


class PlainTextParser(YAMLBodyParser):
    media_type = "text/plain"


class XYAMLParser(YAMLBodyParser):
    media_type = "application/x-yaml"


class FileBodySerializer(serializers.Serializer):
    file = serializers.CharField(max_length=MAX_FILE_BYTES, trim_whitespace=False)
    env = serializers.DictField(
        child=serializers.CharField(max_length=2000, trim_whitespace=False), required=False, default=dict
    )
    prune = serializers.BooleanField(required=False, default=False)

    def validate(self, attrs):
        unknown = set(self.initial_data) - set(self.fields)
        if unknown:
            raise serializers.ValidationError({field: ["Unknown field."] for field in sorted(unknown)})
        if len(attrs["env"]) > 200:
            raise serializers.ValidationError({"env": ["At most 200 variables."]})
        return attrs


class _FileView(APIView):
    parser_classes = [YAMLBodyParser, TextYAMLParser, XYAMLParser, PlainTextParser, JSONBodyParser]
    permission_classes = [permissions.IsAuthenticated]

    def _inputs(self, request) -> tuple[bytes | str, dict, bool]:
        if isinstance(request.data, bytes):
            prune = request.query_params.get("prune", "false")
            if prune not in ("true", "false"):
                raise serializers.ValidationError({"prune": ['Must be "true" or "false".']})
            return request.data, {}, prune == "true"
        body = FileBodySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return body.validated_data["file"], body.validated_data["env"], body.validated_data["prune"]

    @staticmethod
    def _answer(plan: Plan, *, refused_status=status.HTTP_400_BAD_REQUEST) -> Response:
        return Response(plan.as_dict(), status=refused_status if plan.problems else status.HTTP_200_OK)


_DOC = dict(
    request={"application/yaml": {"type": "string"}, "application/json": FileBodySerializer},
    parameters=[
        OpenApiParameter("prune", bool, description="Raw YAML bodies: delete managed objects that left the file.")
    ],
    responses={200: dict, 400: dict},
)


class PlanView(_FileView):
    """The diff a file would make (nothing is written); team membership is enough."""

    @extend_schema(**_DOC)
    def post(self, request):
        content, env, prune = self._inputs(request)
        plan = plan_build(content=content, filename=API_FILENAME, teams=teams_of(request.user), env=env, prune=prune)
        return self._answer(plan)


class ApplyView(_FileView):
    """Make the file's changes in one transaction; needs the add/change/delete permissions the changes use."""

    @extend_schema(**_DOC)
    def post(self, request):
        content, env, prune = self._inputs(request)
        user = request.user

        def allowed(plan: Plan) -> list[Problem]:
            missing = sorted(perm for perm in plan.required_permissions() if not user.has_perm(perm))
            return [Problem(line=None, field="", message=f"permission {perm} is needed") for perm in missing]

        plan = plan_apply(
            content=content, filename=API_FILENAME, teams=teams_of(user), env=env, prune=prune, allowed=allowed
        )
        forbidden = plan.problems and all(p.message.startswith("permission ") for p in plan.problems)
        return self._answer(
            plan, refused_status=status.HTTP_403_FORBIDDEN if forbidden else status.HTTP_400_BAD_REQUEST
        )
