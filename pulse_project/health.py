from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.response import Response

from monitors.heartbeat import scheduler_status


@extend_schema(
    responses=inline_serializer(
        "Health",
        {
            "status": serializers.ChoiceField(choices=["ok", "degraded"]),
            "database": serializers.ChoiceField(choices=["ok", "error"]),
            "scheduler": serializers.DictField(),
            "version": serializers.CharField(),
        },
    )
)
@api_view(["GET"])
@authentication_classes([])
@permission_classes([])
def health(request):
    """Pulse's own health: its database and its scheduler. Says nothing about customers."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        scheduler = scheduler_status(now=timezone.now())
    except DatabaseError:
        body = {
            "status": "degraded",
            "database": "error",
            "scheduler": {"status": "unknown"},
            "version": settings.PULSE_VERSION,
        }
        return Response(body, status=503)
    status = "ok" if scheduler["status"] == "ok" else "degraded"
    return Response({"status": status, "database": "ok", "scheduler": scheduler, "version": settings.PULSE_VERSION})
