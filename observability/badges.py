"""Public status badges: one SVG per team, connection or table, behind a random key.

A badge tells only a status word and the subject's name (team, connection or schema.table): nothing that
is not already in the wiki page that shows it. Keys are created on first use (`badges_ensure`, in bulk) and
replaced by `badge_rotate`.
"""

from collections.abc import Iterable

from django.conf import settings
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from connections.models import Connection
from monitors.models import MonitoredTable
from observability.keys import KEY_PATTERN, badge_key_new
from observability.models import Badge

# The status word of a badge and its colour; the worst word present wins for a team or a connection.
WORDS = {
    "failing": "#e05d44",
    "error": "#e05d44",
    "unreachable": "#e05d44",
    "learning": "#007ec6",
    "healthy": "#4c1",
    "paused": "#9f9f9f",
    "unknown": "#9f9f9f",
}
_WORST_FIRST = ["failing", "error", "unreachable", "learning", "healthy", "paused", "unknown"]
_CONNECTION_DOWN = {Connection.Status.ERROR, Connection.Status.NOT_REPLICA}
_SUBJECT_FIELD = {Group: "team", Connection: "connection", MonitoredTable: "table"}
NAME_MAX = 40


def badges_ensure(*, subjects: Iterable) -> dict[int, Badge]:
    """The badges of `subjects` (all teams, all connections or all tables), created where missing: {subject id: badge}.

    Two queries (and one insert when some are new), however many subjects.
    """
    subjects = list(subjects)
    if not subjects:
        return {}
    field = _SUBJECT_FIELD[type(subjects[0])]
    ids = {subject.pk for subject in subjects}
    found = {getattr(badge, f"{field}_id"): badge for badge in Badge.objects.filter(**{f"{field}_id__in": ids})}
    missing = ids - found.keys()
    if missing:
        Badge.objects.bulk_create([Badge(**{f"{field}_id": pk}) for pk in missing], ignore_conflicts=True)
        found.update(
            {getattr(badge, f"{field}_id"): badge for badge in Badge.objects.filter(**{f"{field}_id__in": missing})}
        )
    return found


def badge_for(*, subject) -> Badge:
    return badges_ensure(subjects=[subject])[subject.pk]


def badge_rotate(*, badge: Badge) -> Badge:
    """A new key: every URL with the old one answers 404 from now on."""
    badge.key = badge_key_new()
    badge.rotated_at = timezone.now()
    badge.save(update_fields=["key", "rotated_at"])
    return badge


def badge_url(badge: Badge) -> str:
    return settings.PULSE_BASE_URL.rstrip("/") + reverse("badge", kwargs={"key": badge.key})


def _worst(words: Iterable[str]) -> str:
    present = set(words)
    return next((word for word in _WORST_FIRST if word in present), "unknown")


def _tables_word(tables) -> str:
    """The word for a set of tables: their worst status, paused tables counting only when all are paused."""
    statuses = set(tables.order_by().values_list("status", flat=True).distinct())
    active = statuses - {MonitoredTable.Status.PAUSED, MonitoredTable.Status.UNKNOWN}
    if active:
        return _worst(active)
    return "paused" if MonitoredTable.Status.PAUSED in statuses else "unknown"


def _connection_word(connection: Connection) -> str:
    if not connection.is_active:
        return "paused"
    if connection.status in _CONNECTION_DOWN:
        return "unreachable"
    return _tables_word(MonitoredTable.objects.filter(connection=connection, is_active=True))


def _team_word(team: Group) -> str:
    connections = Connection.objects.filter(team=team, is_active=True)
    if not connections.exists():
        return "paused" if Connection.objects.filter(team=team).exists() else "unknown"
    down = connections.filter(status__in=_CONNECTION_DOWN).exists()
    tables = _tables_word(MonitoredTable.objects.filter(connection__in=connections, is_active=True))
    return _worst(["unreachable", tables] if down else [tables])


def badge_status(badge: Badge) -> tuple[str, str]:
    """(name, status word) of the badge's subject."""
    if badge.table_id:
        table = badge.table
        word = "paused" if not table.is_active else table.status
        return table.qualified_name, word if word in WORDS else "unknown"
    if badge.connection_id:
        return badge.connection.name, _connection_word(badge.connection)
    return badge.team.name, _team_word(badge.team)


def _text_width(text: str) -> int:
    return 10 + round(6.5 * len(text))


def badge_svg(*, name: str, word: str) -> str:
    """A flat two-part badge (name | status), like shields.io's, with escaped text."""
    if len(name) > NAME_MAX:
        name = name[: NAME_MAX - 1] + "…"
    left, right = _text_width(name), _text_width(word)
    width = left + right
    colour = WORDS.get(word, WORDS["unknown"])
    name, word = escape(name), escape(word)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="20" role="img" '
        f'aria-label="{name}: {word}"><title>{name}: {word}</title>'
        f'<rect width="{left}" height="20" fill="#555"/>'
        f'<rect x="{left}" width="{right}" height="20" fill="{colour}"/>'
        f'<g fill="#fff" text-anchor="middle" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11">'
        f'<text x="{left / 2}" y="14">{name}</text><text x="{left + right / 2}" y="14">{word}</text></g></svg>'
    )


def badge_render(*, key: str) -> str | None:
    """The SVG of the badge with this key, or None when no badge has it."""
    if not KEY_PATTERN.match(key):
        return None
    badge = Badge.objects.select_related("team", "connection", "table__connection").filter(key=key).first()
    if badge is None:
        return None
    name, word = badge_status(badge)
    return badge_svg(name=name, word=word)
