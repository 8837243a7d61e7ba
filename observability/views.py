"""`/metrics` for Prometheus and the public status badges."""

import hmac

from django.conf import settings
from django.http import Http404, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from observability.badges import badge_render
from observability.metrics import metrics_exposition


def _bearer_token(request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


@never_cache
@require_GET
def metrics(request):
    """Prometheus' scrape target: only with `Authorization: Bearer <PULSE_METRICS_TOKEN>`.

    Without a configured token the endpoint does not exist (404): no deployment exposes its metrics by accident.
    The token is never read from the query string (it would land in access logs).
    """
    expected = settings.PULSE_METRICS_TOKEN
    if not expected:
        raise Http404("Metrics are off: set PULSE_METRICS_TOKEN.")
    given = _bearer_token(request)
    if given is None or not hmac.compare_digest(given.encode(), expected.encode()):
        response = HttpResponse("A valid bearer token is required.\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="pulse-metrics"'
        return response
    return HttpResponse(metrics_exposition(), content_type=CONTENT_TYPE_PLAIN_0_0_4)


@never_cache
@require_GET
def badge(request, key: str):
    """The SVG status badge behind an unguessable key; an unknown key is a 404 like any missing page."""
    svg = badge_render(key=key)
    if svg is None:
        raise Http404("No such badge.")
    response = HttpResponse(svg, content_type="image/svg+xml")
    response["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    return response
