"""`manage.py demo`: the quick-start demo replica pair, registered in Pulse, with live traffic."""

import signal
import subprocess
import threading
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from pulse_project import demo


class Command(BaseCommand):
    help = (
        "Start a throwaway PostgreSQL primary + hot standby under var/demo-pg/ (recreated on every start) with a "
        "demo 'shop' database, register the standby as connection 'demo-replica' of team 'demo' and discover its four "
        "tables, then write shop traffic to the primary until SIGINT/SIGTERM and stop the pair. "
        "inventory_snapshots gets no traffic: it is the table going stale. While running, the ready line is in "
        "var/demo.ready."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--no-traffic", action="store_true", help="Keep the pair running without traffic (every table goes stale)."
        )
        parser.add_argument(
            "--setup-only", action="store_true", help="Set up and register, then stop the pair and exit (for tests)."
        )

    def handle(self, *args, no_traffic, setup_only, **options):
        stop = threading.Event()

        def graceful(signum, frame):
            self.stdout.write(f"received signal {signum}: stopping the demo")
            stop.set()

        signal.signal(signal.SIGTERM, graceful)
        signal.signal(signal.SIGINT, graceful)
        var = Path(settings.BASE_DIR) / "var"
        try:
            demo.demo_run(
                base_dir=var / "demo-pg",
                ready_file=var / "demo.ready",
                stop=stop,
                traffic=not no_traffic,
                setup_only=setup_only,
                report=self.stdout.write,
            )
        except subprocess.CalledProcessError as exc:
            command, output = " ".join(map(str, exc.cmd)), (exc.stderr or "").strip()
            raise CommandError(f"the demo pair did not start: `{command}` failed: {output}") from exc
