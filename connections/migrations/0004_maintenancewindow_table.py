"""alerts_maintenancewindow -> connections_maintenancewindow (a rename: rows, constraint and indexes stay)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("connections", "0003_maintenancewindow"),
        ("alerts", "0003_maintenancewindow_to_connections"),
    ]

    operations = [
        migrations.AlterModelTable(name="maintenancewindow", table=None),
    ]
