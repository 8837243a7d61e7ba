"""The dashboard's pages: thin views over dashboard.status (reading) and the apps' service functions (acting).

Every page and action finds its object among the user's teams' objects only (another team's is a 404),
and every action needs the model's change permission (403 without it) and Django's CSRF token.
"""

from __future__ import annotations

import zoneinfo
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import connection as pulse_db
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from alerts.lifecycle import (
    UNRESOLVED,
    AlertStateError,
    alert_acknowledge,
    alert_resolve,
    alert_snooze,
    table_rebaseline_accept,
)
from connections.maintenance import windows_by_connection
from connections.state import connection_test
from dashboard import charts, status
from dashboard.forms import OverviewFilterForm, PointInTimeForm, SnoozeForm, ThresholdsForm, first_error
from monitors import checks
from monitors.models import CheckKind, CheckResult, MonitoredTable
from monitors.results import result_mark_expected
from monitors.tables import table_activation_apply, table_run_now

WINDOW = timedelta(days=14)
TZ_COOKIE = "pulse_tz"
CHANGE_TABLE = "monitors.change_monitoredtable"
CHANGE_ALERT = "alerts.change_alert"
CHANGE_CONNECTION = "connections.change_connection"


def viewer_zone(request: HttpRequest) -> zoneinfo.ZoneInfo:
    """The viewer's time zone (set by the page's script from the browser), else Pulse's."""
    name = request.COOKIES.get(TZ_COOKIE, "")
    if name and len(name) <= 64:
        try:
            return zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            pass
    return zoneinfo.ZoneInfo(settings.TIME_ZONE)


def _require(request: HttpRequest, permission: str) -> None:
    if not request.user.has_perm(permission):
        raise PermissionDenied(f"You may not do this: it needs the permission {permission}.")


def _render(request, template, context, *, status_code=200):
    tz = viewer_zone(request)
    with timezone.override(tz):
        return render(request, template, {**context, "zone": tz.key}, status=status_code)


def _bad_request(request, message: str) -> HttpResponse:
    return _render(request, "dashboard/error.html", {"message": message}, status_code=400)


# --- overview -----------------------------------------------------------------------------------------------


@login_required
@require_GET
def overview(request):
    filters = OverviewFilterForm(request.GET)
    if not filters.is_valid():
        return _bad_request(request, first_error(filters))
    now = timezone.now()
    data = status.overview(
        user=request.user,
        now=now,
        connection_id=filters.cleaned_data["connection"],
        state=filters.cleaned_data["status"],
        name=filters.cleaned_data["name"],
    )
    return _render(
        request,
        "dashboard/overview.html",
        {
            "data": data,
            "filters": filters,
            "states": status.TABLE_STATE_LABELS,
            "rows_html": status.table_rows_html(data.tables, tables_url=reverse("dashboard:overview") + "tables/"),
        },
    )


@login_required
@require_GET
def table_sparkline(request, pk):
    """The table's volume over the last 24 hours as a small SVG image (the overview loads it lazily)."""
    table = _table(request, pk)
    values = status.sparklines([table.pk], now=timezone.now()).get(table.pk, [])
    response = HttpResponse(charts.sparkline(values, standalone=True), content_type="image/svg+xml")
    response["Cache-Control"] = "private, max-age=60"
    return response


@login_required
@require_GET
def live(request):
    """The small JSON the pages poll to update statuses without a reload."""
    return JsonResponse(status.live(user=request.user, now=timezone.now()))


# --- table page ---------------------------------------------------------------------------------------------


def _table(request, pk) -> MonitoredTable:
    return get_object_or_404(status.teams_tables(request.user), pk=pk)


def _volume_points(table: MonitoredTable, *, start: datetime, end: datetime) -> list[charts.BandPoint]:
    """The latest judgement of each volume bucket (or each hour's last total for tables without buckets)."""
    results = CheckResult.objects.filter(table=table, kind=CheckKind.VOLUME)
    if table.timestamp_column:
        rows = (
            results.filter(bucket_start__gte=start, bucket_start__lte=end)
            .order_by("bucket_start", "-started_at", "-id")
            .distinct("bucket_start")
            .values_list(
                "bucket_start",
                "observed_value",
                "expected_lower",
                "expected_upper",
                "is_anomaly",
                "marked_expected",
                "id",
            )
        )
    else:
        rows = (
            results.filter(started_at__gte=start, started_at__lte=end)
            .order_by("started_at")
            .values_list(
                "started_at",
                "observed_value",
                "expected_lower",
                "expected_upper",
                "is_anomaly",
                "marked_expected",
                "id",
            )
        )
        by_hour = {}
        for row in rows:
            by_hour[row[0].replace(minute=0, second=0, microsecond=0)] = row
        rows = list(by_hour.values())
    return [charts.BandPoint(*row) for row in rows]


def _freshness_chart(table: MonitoredTable, *, start, end, tz):
    """Age of the newest row (hourly max, summed up by PostgreSQL) against the threshold and learned limit."""
    with pulse_db.cursor() as cursor:
        cursor.execute(
            "SELECT max(started_at), max(observed_value), max((details ->> 'learned_limit')::float)"
            " FROM monitors_checkresult WHERE table_id = %s AND kind = 'freshness' AND started_at BETWEEN %s AND %s"
            " GROUP BY date_trunc('hour', started_at) ORDER BY 1",
            [table.pk, start, end],
        )
        rows = cursor.fetchall()
    if not rows:
        return None
    limits = [("Threshold", float(table.freshness_threshold_minutes * 60))]
    learned = [(at, limit) for at, _, limit in rows if limit is not None]
    if learned:
        limits.append(("Learned from the update cadence", learned))
    return charts.limit_chart(
        points=[(at, age) for at, age, _ in rows],
        limits=limits,
        start=start,
        end=end,
        tz=tz,
        kind=CheckKind.FRESHNESS,
        label="Age of the newest row against the freshness threshold",
    )


def _newest_by_kind(table: MonitoredTable, *, kinds, count: int) -> dict[str, list[CheckResult]]:
    """The newest `count` results of each kind of the table, newest first (each kind read through its index)."""
    return {
        kind: list(
            table.results.filter(kind=kind).select_related("check_definition").order_by("-started_at", "-id")[:count]
        )
        for kind in kinds
    }


def _latest_of_check(check, newest: list[CheckResult]) -> CheckResult | None:
    found = next((r for r in newest if r.check_definition_id == check.pk), None)
    return found or check.results.order_by("-started_at", "-id").first()


@login_required
@require_GET
def table_page(request, pk):
    table = _table(request, pk)
    tz = viewer_zone(request)
    when = PointInTimeForm(request.GET)
    if not when.is_valid():
        return _bad_request(request, first_error(when))
    now = timezone.now()
    at = when.cleaned_data["at"]
    end = min(now, at + timedelta(days=1)) if at else now
    start = end - WINDOW
    maintenance = windows_by_connection(connection_ids=[table.connection_id], since=start).get(table.connection_id, [])
    marks = []
    if table.baseline_since:
        marks.append((table.baseline_since, "rebaselined"))
    if at:
        marks.append((at, "alert"))
    points = _volume_points(table, start=start, end=end)
    volume = charts.volume_chart(
        points=points,
        start=start,
        end=end,
        tz=tz,
        maintenance=maintenance,
        marks=marks,
    )
    freshness = _freshness_chart(table, start=start, end=end, tz=tz) if table.timestamp_column else None
    table_checks = list(table.checks.all())
    newest = _newest_by_kind(table, kinds={*checks.BUILT_IN, *(check.kind for check in table_checks)}, count=25)
    latest_kind = {
        kind: next((r for r in newest[kind] if r.check_definition_id is None), None) for kind in checks.BUILT_IN
    }
    configured = [(check, _latest_of_check(check, newest[check.kind])) for check in table_checks]
    recent = sorted((r for of_kind in newest.values() for r in of_kind), key=lambda r: (r.started_at, r.pk))
    schema_changes = list(
        table.results.filter(kind=CheckKind.SCHEMA_CHANGE, status=CheckResult.Status.FAIL).order_by("-started_at")[:20]
    )
    alerts = list(
        status.teams_alerts(request.user).filter(table=table, status__in=UNRESOLVED).prefetch_related("events__actor")
    )
    return _render(
        request,
        "dashboard/table.html",
        {
            "table": table,
            "state": status.table_state(
                status=table.status, snoozed=any(a.snoozed_until and a.snoozed_until > now for a in alerts)
            ),
            "state_labels": status.TABLE_STATE_LABELS,
            "volume_chart": volume,
            # The window's anomalies, newest first: each can be marked expected from here.
            "anomalies": [p for p in reversed(points) if p.anomaly][:20],
            "freshness_chart": freshness,
            "built_in": [
                (checks.label(kind), latest_kind.get(kind))
                for kind in checks.BUILT_IN
                if kind != CheckKind.FRESHNESS or table.timestamp_column
            ],
            "configured": configured,
            "schema_changes": schema_changes,
            "recent": recent[::-1][:16],
            "alerts": alerts,
            "now": now,
            "start": start,
            "end": end,
            "at": at,
            "form": ThresholdsForm(instance=table),
            "can_change": request.user.has_perm(CHANGE_TABLE),
            "can_change_alert": request.user.has_perm(CHANGE_ALERT),
            "snooze_form": SnoozeForm(),
        },
    )


def _back_to_table(table):
    return redirect(reverse("dashboard:table", args=[table.pk]))


@login_required
@require_POST
def table_run_now_view(request, pk):
    table = _table(request, pk)
    _require(request, CHANGE_TABLE)
    if not table.is_active:
        return _bad_request(request, "is_active: the table is paused; resume it to run its checks.")
    table_run_now(table=table)
    messages.success(request, f"{table} is due now: the next runchecks cycle checks it.")
    return _back_to_table(table)


def _set_active(request, pk, *, active: bool):
    table = _table(request, pk)
    _require(request, CHANGE_TABLE)
    with transaction.atomic():
        table = MonitoredTable.objects.select_for_update().get(pk=table.pk)
        was_active = table.is_active
        table.is_active = active
        table_activation_apply(table=table, was_active=was_active)
        table.save(update_fields=["is_active", "status", "next_check_at", "updated_at"])
    messages.success(request, f"{table} {'resumed: checked in the next cycle' if active else 'paused'}.")
    return _back_to_table(table)


@login_required
@require_POST
def table_pause(request, pk):
    return _set_active(request, pk, active=False)


@login_required
@require_POST
def table_resume(request, pk):
    return _set_active(request, pk, active=True)


@login_required
@require_POST
def table_rebaseline_view(request, pk):
    table = _table(request, pk)
    _require(request, CHANGE_TABLE)
    table_rebaseline_accept(table=table)
    messages.success(request, f"{table}: the volume baseline restarts now; its open volume alert is resolved.")
    return _back_to_table(table)


@login_required
@require_POST
def result_mark_expected_view(request, pk, result_id):
    table = _table(request, pk)
    _require(request, CHANGE_TABLE)
    result = get_object_or_404(table.results, pk=result_id)
    if not result.is_anomaly:
        return _bad_request(request, "result: only results judged anomalous can be marked expected.")
    result_mark_expected(result=result)
    messages.success(request, "Marked expected: the value trains the baseline from now on.")
    return _back_to_table(table)


@login_required
@require_POST
def table_thresholds(request, pk):
    table = _table(request, pk)
    _require(request, CHANGE_TABLE)
    form = ThresholdsForm(request.POST, instance=MonitoredTable.objects.get(pk=table.pk))
    if not form.is_valid():
        return _bad_request(request, f"Nothing saved. {first_error(form)}")
    form.save()
    messages.success(request, f"{table}: thresholds saved.")
    return _back_to_table(table)


# --- alerts -------------------------------------------------------------------------------------------------


@login_required
@require_GET
def alerts_page(request):
    now = timezone.now()
    alerts = list(
        status.teams_alerts(request.user)
        .filter(status__in=UNRESOLVED)
        .prefetch_related("events__actor")
        .order_by("-opened_at", "-id")
    )
    groups = {"open": [], "acknowledged": [], "snoozed": []}
    for alert in alerts:
        alert.state = status.alert_state(status=alert.status, snoozed_until=alert.snoozed_until, now=now)
        groups[alert.state].append(alert)
    recent = list(status.teams_alerts(request.user).filter(status="resolved").order_by("-resolved_at", "-id")[:10])
    return _render(
        request,
        "dashboard/alerts.html",
        {
            "groups": [
                ("Open", groups["open"]),
                ("Acknowledged", groups["acknowledged"]),
                ("Snoozed", groups["snoozed"]),
            ],
            "recent": recent,
            "can_change": request.user.has_perm(CHANGE_ALERT),
            "snooze_form": SnoozeForm(),
            "now": now,
        },
    )


def _alert(request, pk):
    return get_object_or_404(status.teams_alerts(request.user), pk=pk)


def _back(request, fallback: str):
    """Back to the page the action was sent from (a path on Pulse only), else `fallback`."""
    target = request.POST.get("next", "")
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return redirect(target)
    return redirect(fallback)


def _transition(request, pk, transition, done: str, **kwargs):
    alert = _alert(request, pk)
    _require(request, CHANGE_ALERT)
    try:
        transition(alert=alert, user=request.user, **kwargs)
    except AlertStateError as exc:
        return _bad_request(request, f"status: {exc}")
    messages.success(
        request, f"Alert {alert.pk} ({alert.get_kind_display()} on {alert.table or alert.connection}) {done}."
    )
    return _back(request, reverse("dashboard:alerts"))


@login_required
@require_POST
def alert_acknowledge_view(request, pk):
    return _transition(request, pk, alert_acknowledge, "acknowledged")


@login_required
@require_POST
def alert_resolve_view(request, pk):
    return _transition(request, pk, alert_resolve, "resolved")


@login_required
@require_POST
def alert_snooze_view(request, pk):
    _alert(request, pk)
    _require(request, CHANGE_ALERT)
    with timezone.override(viewer_zone(request)):
        form = SnoozeForm(request.POST)
        valid = form.is_valid()
    if not valid:
        return _bad_request(request, f"Nothing saved. {first_error(form)}")
    until = form.cleaned_data["until"]
    with timezone.override(viewer_zone(request)):
        shown = f"{timezone.localtime(until):%a %d %b %H:%M}"
    return _transition(request, pk, alert_snooze, f"snoozed until {shown}", until=until)


# --- connection page ----------------------------------------------------------------------------------------


def _connection(request, pk):
    return get_object_or_404(status.teams_connections(request.user), pk=pk)


@login_required
@require_GET
def connection_page(request, pk):
    connection = _connection(request, pk)
    tz = viewer_zone(request)
    now = timezone.now()
    start = now - WINDOW
    row = status.connection_rows(status.teams_connections(request.user).filter(pk=connection.pk), now=now)[0]
    lag_rows = list(
        CheckResult.objects.filter(
            connection=connection, table__isnull=True, kind=CheckKind.REPLICATION_LAG, started_at__gte=start
        )
        .order_by("started_at")
        .values_list("started_at", "observed_value")
    )
    lag_chart = None
    if lag_rows:
        threshold = connection.replication_lag_threshold_seconds
        lag_chart = charts.limit_chart(
            points=charts.downsample_max(lag_rows, bucket=timedelta(hours=1)),
            limits=[("Lag threshold", float(threshold))],
            start=start,
            end=now,
            tz=tz,
            kind=CheckKind.REPLICATION_LAG,
            label="Replication lag against its threshold",
        )
    tables = status.overview(user=request.user, now=now, connection_id=connection.pk).tables
    windows = connection.maintenance_windows.filter(ends_at__gte=now - WINDOW).order_by("-starts_at")[:10]
    alerts = status.teams_alerts(request.user).filter(connection=connection, status__in=UNRESOLVED)
    return _render(
        request,
        "dashboard/connection.html",
        {
            "connection": connection,
            "row": row,
            "gauges": status.guardrail_gauges(connection=connection, now=now),
            "lag_chart": lag_chart,
            "tables": tables,
            "windows": windows,
            "alerts": alerts,
            "can_change": request.user.has_perm(CHANGE_CONNECTION),
            "now": now,
        },
    )


@login_required
@require_POST
def connection_test_view(request, pk):
    connection = _connection(request, pk)
    _require(request, CHANGE_CONNECTION)
    result = connection_test(connection=connection)
    if result.ok:
        messages.success(request, f"{connection}: reachable, in recovery (PostgreSQL {result.server_version}).")
    else:
        messages.error(request, f"{connection}: test failed — {result.error}")
    return redirect(reverse("dashboard:connection", args=[connection.pk]))
