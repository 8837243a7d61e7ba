from django.contrib.auth.models import Group
from django.db import models
from django.db.models import Q

from connections.models import Connection
from monitors.models import MonitoredTable
from observability.keys import badge_key_new


class Badge(models.Model):
    """The unguessable key behind the public SVG badge of one team, connection or table (exactly one is set).

    The badge URL carries only this random key, never an id; rotating the key (observability.badges.badge_rotate)
    makes every earlier URL a 404.
    """

    team = models.OneToOneField(Group, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    connection = models.OneToOneField(Connection, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    table = models.OneToOneField(MonitoredTable, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    key = models.CharField(max_length=64, unique=True, default=badge_key_new, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    rotated_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(team__isnull=False, connection__isnull=True, table__isnull=True)
                | Q(team__isnull=True, connection__isnull=False, table__isnull=True)
                | Q(team__isnull=True, connection__isnull=True, table__isnull=False),
                name="badge_exactly_one_subject",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} badge of {self.subject}"

    @property
    def kind(self) -> str:
        if self.table_id:
            return "table"
        return "connection" if self.connection_id else "team"

    @property
    def subject(self):
        return self.table or self.connection or self.team
