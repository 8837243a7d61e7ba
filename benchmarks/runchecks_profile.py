"""Profile one `runchecks` process's steady pass: CPU per table, Pulse statements per table, cProfile's top functions.

Usage: PULSE_BENCH_DB=pulse_bench_profile .venv/bin/python benchmarks/runchecks_profile.py [--tables 1000]
           [--passes 3] [--history] [--profile] [--top 30]

Setup as `runchecks_throughput.py` (a throwaway Pulse database named by PULSE_BENCH_DB, dropped at the end, and a
primary + hot-standby pair): --tables small tables of 300 rows, one connection with its limits lifted, then a
first `runchecks --once --all --workers 1` (cost-guard EXPLAINs, backfill) that is not measured. With --history,
14 days of hourly volume results are seeded per table (then VACUUM ANALYZE, as autovacuum would have run on them),
so every volume verdict comes from the baseline.

Then --passes steady passes, each `CheckRunner(on_recorded=results_intake, workers=1).cycle(force=True)` in this
process, alternating the two steady cases: a pass that is the first of its hour (every bucket judged afresh: its
earlier verdicts are deleted, untimed) and a pass that repeats the hour's verdicts. Printed per pass: wall and CPU
time per table (CPU is the load-independent figure), tables/s, and the statements sent to Pulse's own database per
table (counted at psycopg's cursor, so Django's and the raw binary cursors alike), grouped by their first words.
With --profile, cProfile's top functions of the last pass of each case, by cumulative and by own time, in CPU time
(`time.process_time`: waiting on a database costs nothing there).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("PULSE_BENCH_DB", "pulse_bench_profile")

import psycopg  # noqa: E402
import runchecks_throughput as bench  # noqa: E402

from pulse_project.pgcluster import ReplicaPair  # noqa: E402


class PulseStatements:
    """Counts the statements psycopg sends to Pulse's database (not the replica's) while installed."""

    def __init__(self) -> None:
        self.texts: Counter = Counter()

    def __enter__(self):
        self.real_execute = psycopg.Cursor.execute
        counter = self

        def execute(cursor, query, params=None, **kwargs):
            if cursor.connection.info.dbname == bench.BENCH_DB:
                text = query.as_string(cursor) if not isinstance(query, str | bytes) else query
                text = text.decode() if isinstance(text, bytes) else text
                counter.texts[" ".join(text.split()[:5])[:60]] += 1
            return counter.real_execute(cursor, query, params, **kwargs)

        psycopg.Cursor.execute = execute
        return self

    def __exit__(self, *exc) -> None:
        psycopg.Cursor.execute = self.real_execute

    @property
    def total(self) -> int:
        return sum(self.texts.values())


def steady_pass(*, tables: int, profiler: cProfile.Profile | None, workers: int = 1) -> dict:
    from alerts.intake import results_intake
    from monitors.runner import CheckRunner

    runner = CheckRunner(on_recorded=results_intake, workers=workers)
    with PulseStatements() as statements:
        cpu, wall = time.process_time(), time.perf_counter()
        summary = profiler.runcall(runner.cycle, force=True) if profiler else runner.cycle(force=True)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    runner.stop()
    if summary.tables != tables:
        raise bench.BenchmarkAborted(f"the pass checked {summary.tables} tables, expected {tables}")
    return {"cpu": cpu, "wall": wall, "statements": statements, "line": summary.line()}


def first_pass(args) -> int:
    """Measure (and with --profile, profile) the first pass of every table, in this process."""
    profiler = cProfile.Profile() if args.profile else None
    r = steady_pass(tables=args.tables, profiler=profiler, workers=args.workers)
    per_table = r["statements"].total / args.tables
    bench.say(f"first pass: {r['line']}")
    bench.say(
        f"first pass, {args.rows} rows/table, {args.workers} workers: {args.tables / r['wall']:,.0f} tables/s, "
        f"wall {r['wall'] / args.tables * 1e3:.3f} ms/table, CPU {r['cpu'] / args.tables * 1e3:.3f} ms/table; "
        f"Pulse statements {r['statements'].total:,} ({per_table:.2f}/table)"
    )
    for text, count in r["statements"].texts.most_common(20):
        bench.say(f"    {count:6,}  {text}")
    if profiler:
        profiler.dump_stats(f"{bench.BENCH_DB}.first.prof")
        bench.say(f"cProfile stats saved to {bench.BENCH_DB}.first.prof")
        bench.profile_print(profiler, top=args.top)
    bench.say(f"load average (1, 5, 15 min): {bench.load_average()}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", type=int, default=1000)
    parser.add_argument("--passes", type=int, default=3, help="steady passes of each case")
    parser.add_argument("--history", action="store_true", help="seed 14 days of hourly volume history per table")
    parser.add_argument("--profile", action="store_true", help="print cProfile's top functions")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument(
        "--first",
        action="store_true",
        help="measure the FIRST pass instead (every table new: schema capture, backfill, first results), in-process",
    )
    parser.add_argument("--rows", type=int, default=bench.ROWS_PER_TABLE, help="rows per small table (0: empty)")
    parser.add_argument("--workers", type=int, default=1, help="workers of the measured first pass (--first)")
    args = parser.parse_args()
    bench.ROWS_PER_TABLE = args.rows
    bench.say(
        f"command: PULSE_BENCH_DB={bench.BENCH_DB} .venv/bin/python benchmarks/runchecks_profile.py "
        + " ".join(sys.argv[1:])
    )
    pair = None
    try:
        bench.setup_django(False)
        from django.contrib.auth.models import Group

        pair = ReplicaPair.create()
        bench.create_source_data(pair, tables=args.tables, big_rows=1000)
        connection = bench.register(
            pair,
            name="profile",
            team=Group.objects.create(name="bench"),
            workers=args.workers,
            tables=bench.table_names(args.tables),
        )
        if args.first:
            return first_pass(args)
        first = bench.pulse_run(workers=1, expected_tables=args.tables)
        bench.say(f"first run (not measured): {first['line']}")
        if args.history:
            seeded = bench.seed_history(connection_id=connection.pk)
            with psycopg.connect(**bench.PULSE_SERVER, dbname=bench.BENCH_DB, autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE monitors_checkresult")  # as autovacuum will have done on older rows
            bench.say(f"seeded {seeded:,} hourly volume results (then VACUUM ANALYZE)")
        cases = {"first of its hour": [], "repeat of the hour": []}
        profiles = {}
        for index in range(args.passes):
            for case, figures in cases.items():
                if case == "first of its hour":
                    bench.forget_current_verdicts(connection_id=connection.pk)
                profiler = cProfile.Profile(time.process_time) if args.profile and index == args.passes - 1 else None
                r = steady_pass(tables=args.tables, profiler=profiler)
                if profiler:
                    profiles[case] = profiler
                figures.append(r)
                per_table = r["statements"].total / args.tables
                bench.say(
                    f"  pass {index + 1}, {case}: {args.tables / r['wall']:,.0f} tables/s, wall "
                    f"{r['wall'] / args.tables * 1e3:.3f} ms/table, CPU {r['cpu'] / args.tables * 1e3:.3f} "
                    f"ms/table; Pulse statements {r['statements'].total:,} ({per_table:.2f}/table)"
                )
        for case, figures in cases.items():
            cpu = sorted(r["cpu"] / args.tables * 1e3 for r in figures)[len(figures) // 2]
            rate = sorted(args.tables / r["wall"] for r in figures)[len(figures) // 2]
            bench.say(f"{case}: median {rate:,.0f} tables/s, CPU {cpu:.3f} ms/table; statements of the last pass:")
            for text, count in figures[-1]["statements"].texts.most_common(15):
                bench.say(f"    {count:6,}  {text}")
        for case, profiler in profiles.items():
            bench.say(f"--- cProfile, {case}")
            bench.profile_print(profiler, top=args.top)
        bench.say(f"load average (1, 5, 15 min): {bench.load_average()}")
        return 0
    finally:
        if pair is not None:
            pair.stop()
        bench.drop_bench_db()


if __name__ == "__main__":
    sys.exit(main())
