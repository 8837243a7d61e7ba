"""MaintenanceWindow now belongs to connections (see connections 0003): alerts forgets it, the table stays."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("alerts", "0002_events_channels_notifications"),
        ("connections", "0003_maintenancewindow"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="MaintenanceWindow")],
            database_operations=[],
        ),
    ]
