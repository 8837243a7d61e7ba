"""`manage.py runchecks`: the daemon that checks replicas on schedule (or once, with --once).

It lives in the project layer because it wires checking to alerting: the runner records results and hands
them to `alerts.intake.results_intake` (bound here, as `on_recorded`), and the scheduler runs the jobs of
`pulse_project.jobs` (functions, not names as text)."""

import signal
import sys
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from alerts.intake import results_intake
from connections.guardrails import SessionKeeper
from monitors.models import MonitoredTable
from monitors.runner import DEFAULT_BATCH_SIZE, DEFAULT_LEASE, CheckRunner, collector_tune, worker_name

# A refused command line exits 2, as argparse's own refusals do: nothing could run.
USAGE_ERROR = 2


class Command(BaseCommand):
    help = (
        "Run replica checks: a daemon on APScheduler, or a single pass with --once. "
        "Claimed tables are leased to this process for --lease seconds and the lease is renewed every "
        "lease/3 seconds while their batch runs, for at most the batch's time limit (statement timeout x "
        "planned queries + 30 s slot wait + connect timeout + PULSE_RECORD_RETRY_SECONDS); a process that "
        "dies stops renewing, so its tables are checked by another within --lease + --tick seconds. "
        "Results are recorded with retries for PULSE_RECORD_RETRY_SECONDS (default 60) while Pulse's "
        "database is unreachable, then spooled to PULSE_SPOOL_DIR and recorded when it is back. "
        "With --once or --table it exits 0 when every check passed, 1 when some check failed, and 2 when some "
        "check could not run (error, skipped) or the command line was refused."
    )
    # No system checks: they import every URLconf, serializer and the schema generator (about a second),
    # none of which checking uses; `manage.py check` and the web process run them.
    requires_system_checks = []
    exit_code = 0  # of the last --once/--table pass (CycleSummary.exit_code); the daemon exits 0

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="Run everything due, then exit.")
        parser.add_argument("--all", action="store_true", help="With --once: every active table now, due or not.")
        parser.add_argument(
            "--table",
            type=int,
            action="append",
            dest="tables",
            metavar="ID",
            help="Only this table (repeatable); runs it now.",
        )
        parser.add_argument("--workers", type=int, default=4, help="Threads checking in parallel (default 4).")
        parser.add_argument(
            "--tick",
            type=float,
            default=1.0,
            help="Seconds between claims of due work when the workers are idle (default 1): the most a due table "
            "waits for an idle daemon.",
        )
        parser.add_argument(
            "--lease",
            type=int,
            default=int(DEFAULT_LEASE.total_seconds()),
            help=(
                "Seconds a claimed table stays leased to this process without renewal (default 15, at least 10); "
                "renewed every lease/3 s while its batch runs, up to the batch's time limit."
            ),
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=DEFAULT_BATCH_SIZE,
            help=f"Tables checked in one replica session (default {DEFAULT_BATCH_SIZE}).",
        )

    def handle(self, *args, once, all, tables, workers, tick, lease, batch_size, verbosity, **options):
        if all and not once:
            raise CommandError("--all only goes with --once.", returncode=USAGE_ERROR)
        if workers < 1 or workers > 64:
            raise CommandError("--workers must be between 1 and 64.", returncode=USAGE_ERROR)
        if tick <= 0 or lease < 10 or batch_size < 1:
            raise CommandError(
                "--tick must be positive, --lease at least 10 seconds, --batch-size at least 1.", returncode=USAGE_ERROR
            )
        if tables:
            missing = set(tables) - set(MonitoredTable.objects.filter(id__in=tables).values_list("id", flat=True))
            if missing:
                raise CommandError(
                    f"No monitored table with id {', '.join(map(str, sorted(missing)))}.", returncode=USAGE_ERROR
                )
        collector_tune()
        runner = CheckRunner(
            workers=workers,
            lease=timedelta(seconds=lease),
            batch_size=batch_size,
            report=lambda line: self.stdout.write(line),
            verbosity=verbosity,
            on_recorded=results_intake,
            sessions=self._session_keeper(once=once or bool(tables)),
        )
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
        self._install_signal_handlers(runner)
        try:
            if once or tables:
                try:
                    self.exit_code = runner.cycle(force=all or bool(tables), table_ids=tables).exit_code
                finally:
                    runner.stop()
                return
            self._serve(runner, tick=tick)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    @staticmethod
    def _session_keeper(*, once: bool) -> SessionKeeper | None:
        """The daemon keeps its replica sessions warm between batches; a single pass keeps none."""
        idle = settings.PULSE_KEPT_SESSION_IDLE_SECONDS
        return None if once or idle <= 0 else SessionKeeper(idle_seconds=idle)

    def run_from_argv(self, argv):
        """From the shell, a --once/--table pass exits with its status (see `help`)."""
        super().run_from_argv(argv)
        if self.exit_code:
            sys.exit(self.exit_code)

    def _install_signal_handlers(self, runner, scheduler=None):
        def graceful(signum, frame):
            self.stdout.write(f"received signal {signum}: finishing in-flight checks, then stopping")
            runner.stopping.set()
            if scheduler is not None and scheduler.running:
                scheduler.shutdown(wait=False)

        signal.signal(signal.SIGTERM, graceful)
        signal.signal(signal.SIGINT, graceful)

    def _serve(self, runner, *, tick: float):
        # The scheduler and the jobs (notification delivery: HTTP clients, Apprise) load only for the
        # daemon, so `--once` starts fast.
        from apscheduler.executors.pool import ThreadPoolExecutor as SchedulerPool
        from apscheduler.schedulers.blocking import BlockingScheduler
        from apscheduler.triggers.interval import IntervalTrigger

        from pulse_project import jobs

        worker = worker_name()
        jobs.RUNTIME.update(runner=runner, worker=worker, started_at=timezone.now())
        # The default in-memory job store: each process schedules its own jobs and nothing is shared, so
        # N processes never collide on a job store (the claim in the database, not the scheduler, is what
        # keeps them from doubling work). Job executions are therefore not stored; SchedulerHeartbeat rows
        # (/api/health) and the daemon's log say what ran.
        scheduler = BlockingScheduler(
            timezone=settings.TIME_ZONE,
            executors={"default": SchedulerPool(4)},
            job_defaults={"coalesce": True, "max_instances": 1},
        )
        # coalesce: a late tick runs once, not once per missed interval; misfire grace of one tick.
        scheduler.add_job(
            jobs.tick, IntervalTrigger(seconds=tick), id="pulse.tick", misfire_grace_time=max(1, int(tick))
        )
        scheduler.add_job(
            jobs.heartbeat,
            IntervalTrigger(seconds=10),
            id="pulse.heartbeat",
            misfire_grace_time=10,
            next_run_time=timezone.now(),
        )
        # Notifications go out in their own job: a slow or failing channel never delays a check.
        scheduler.add_job(jobs.notify, IntervalTrigger(seconds=5), id="pulse.notify", misfire_grace_time=5)
        scheduler.add_job(jobs.discover, IntervalTrigger(seconds=60), id="pulse.discover", misfire_grace_time=60)
        # Housekeeping at start too: results partitions ahead of time before the first check is recorded.
        scheduler.add_job(
            jobs.housekeeping,
            IntervalTrigger(hours=6),
            id="pulse.housekeeping",
            misfire_grace_time=3600,
            next_run_time=timezone.now(),
        )
        self._install_signal_handlers(runner, scheduler)
        self.stdout.write(
            f"runchecks {worker}: ticking every {tick:g}s with {runner.workers} workers, "
            f"lease {runner.lease.total_seconds():g}s renewed every {runner.keeper.every:g}s"
        )
        try:
            scheduler.start()
        finally:
            runner.stop()
            self.stdout.write("runchecks stopped")
