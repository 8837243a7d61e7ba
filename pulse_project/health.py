"""`/api/health`: Pulse's own health, for a load balancer's probe and for monitoring the daemons.

Fast (two indexed queries under a 2 s statement timeout), no authentication, a small JSON body, and never
cached. 200 while Pulse's database answers (the web process can serve), 503 when it does not. The
scheduler (the `runchecks` heartbeats) is reported in the body; `?require=scheduler` also answers 503 when
no `runchecks` process has beaten recently, for a monitor of the daemons rather than of the web process.

`HealthProbeMiddleware` answers the probe before any other middleware, so neither the HTTPS redirect nor
ALLOWED_HOSTS turns it away: a load balancer probes each backend by its address, over plain HTTP. The
answer holds nothing taken from the request.
"""

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import api_view, authentication_classes, permission_classes, renderer_classes
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from monitors.heartbeat import scheduler_status

HEALTH_PATHS = frozenset({"/api/health", "/api/health/"})
STATEMENT_TIMEOUT_MS = 2000


@extend_schema(
    parameters=[
        OpenApiParameter("require", str, enum=["scheduler"], description="503 also when the scheduler is not ok")
    ],
    responses=inline_serializer(
        "Health",
        {
            "status": serializers.ChoiceField(choices=["ok", "degraded"]),
            "database": serializers.ChoiceField(choices=["ok", "error"]),
            "scheduler": serializers.DictField(),
            "version": serializers.CharField(),
        },
    ),
)
@api_view(["GET"])
@authentication_classes([])
@permission_classes([])
@renderer_classes([JSONRenderer])
def health(request):
    """Pulse's own health: its database and its scheduler. Says nothing about customers."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT set_config('statement_timeout', %s, true)", [str(STATEMENT_TIMEOUT_MS)])
            scheduler = scheduler_status(now=timezone.now())
    except DatabaseError:
        body = {
            "status": "degraded",
            "database": "error",
            "scheduler": {"status": "unknown"},
            "version": settings.PULSE_VERSION,
        }
        return _uncached(Response(body, status=503))
    status = "ok" if scheduler["status"] == "ok" else "degraded"
    body = {"status": status, "database": "ok", "scheduler": scheduler, "version": settings.PULSE_VERSION}
    required = request.query_params.get("require") == "scheduler"
    return _uncached(Response(body, status=503 if required and status != "ok" else 200))


def _uncached(response: Response) -> Response:
    response["Cache-Control"] = "no-store"
    return response


class HealthProbeMiddleware:
    """Answers GET /api/health ahead of the HTTPS redirect and the host check (see the module docstring)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path_info not in HEALTH_PATHS or request.method != "GET":
            return self.get_response(request)
        response = health(request)
        response.render()
        return response
