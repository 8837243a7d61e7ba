"""Profile the failing path of the 100,000-table rehearsal: passes over empty tables whose freshness fails.

Usage: PULSE_BENCH_DB=pulse_bench_failing .venv/bin/python benchmarks/failing_path_profile.py [--tables 2000]
           [--passes 4] [--channels 0] [--workers 1] [--profile] [--top 25]

Setup as `runchecks_profile.py` (a throwaway Pulse database named by PULSE_BENCH_DB, dropped at the end, and a
primary + hot-standby pair): --tables EMPTY tables, one connection with its query caps lifted, the team with
--channels active channels (webhooks, never sent: the outbox only writes their notifications). Then --passes
passes, each `CheckRunner(on_recorded=results_intake, workers=W).cycle(force=True)` in this process:

- pass 1, the first check of every table: schema capture, backfill, freshness fails (one failure: no alert yet);
- pass 2, the second failure: every table opens a freshness alert (the default failure threshold is 2);
- pass 3 and later: every table fails again with its alert open (seen again).

Printed per pass: wall and CPU time per table (CPU is the load-independent figure), the statements sent to Pulse's
own database per table grouped by their first words, and the alerts, events and notifications written. With
--profile, cProfile's top functions of each pass in CPU time.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("PULSE_BENCH_DB", "pulse_bench_failing")

import runchecks_throughput as bench  # noqa: E402
from runchecks_profile import steady_pass  # noqa: E402

from pulse_project.pgcluster import ReplicaPair  # noqa: E402

PASS_NAMES = {1: "first check, first failure", 2: "second failure: alerts open"}


def counts() -> dict:
    from alerts.models import Alert, AlertEvent, Notification

    return {
        "alerts": Alert.objects.count(),
        "events": AlertEvent.objects.count(),
        "notifications": Notification.objects.count(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", type=int, default=2000)
    parser.add_argument("--passes", type=int, default=4)
    parser.add_argument("--channels", type=int, default=0, help="active channels of the connection's team")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="print cProfile's top functions of each pass")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    bench.ROWS_PER_TABLE = 0
    bench.say(
        f"command: PULSE_BENCH_DB={bench.BENCH_DB} .venv/bin/python benchmarks/failing_path_profile.py "
        + " ".join(sys.argv[1:])
        + f"; code {bench.code_version()}"
    )
    pair = None
    try:
        bench.setup_django(False)
        from django.contrib.auth.models import Group

        from alerts.models import Channel

        pair = ReplicaPair.create()
        bench.create_source_data(pair, tables=args.tables, big_rows=1000)
        team = Group.objects.create(name="bench")
        for number in range(args.channels):
            channel = Channel(team=team, name=f"hook {number}", kind=Channel.Kind.WEBHOOK)
            channel.set_target(f"https://hooks.example.invalid/{number}")
            channel.save()
        bench.register(pair, name="failing", team=team, workers=args.workers, tables=bench.table_names(args.tables))
        expected = args.tables
        before = counts()
        for number in range(1, args.passes + 1):
            profiler = cProfile.Profile(time.process_time) if args.profile else None
            r = steady_pass(tables=expected, profiler=profiler, workers=args.workers)
            after = counts()
            written = {key: after[key] - before[key] for key in after}
            before = after
            name = PASS_NAMES.get(number, "failing again, alerts open")
            per_table = r["statements"].total / expected
            bench.say(
                f"pass {number} ({name}): {expected / r['wall']:,.0f} tables/s, wall {r['wall'] / expected * 1e3:.3f}"
                f" ms/table, CPU {r['cpu'] / expected * 1e3:.3f} ms/table; Pulse statements {r['statements'].total:,}"
                f" ({per_table:.2f}/table); written: {written}"
            )
            bench.say(f"    {r['line']}")
            for text, count in r["statements"].texts.most_common(12):
                bench.say(f"    {count:6,}  {text}")
            if profiler:
                bench.profile_print(profiler, top=args.top)
        bench.say(f"load average (1, 5, 15 min): {bench.load_average()}")
        return 0
    finally:
        if pair is not None:
            pair.stop()
        bench.drop_bench_db()


if __name__ == "__main__":
    sys.exit(main())
