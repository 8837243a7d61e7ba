"""Start-up of `manage.py runchecks --once` with nothing due: whole-process wall time, and what it imports.

Usage: .venv/bin/python benchmarks/runchecks_startup.py [--runs 15] [--database NAME]

A fresh, migrated Pulse database `pulse_guardrails_startup` on 127.0.0.1:5432 (dropped at the end) with no
table to check, production settings (PULSE_DEBUG=off). Bytecode is cached as after an install
(PYTHONDONTWRITEBYTECODE unset; one warm-up run writes it). Prints each run's wall time (and the process's
user+system CPU, less sensitive to other load on a shared machine), their medians, the load average, and the
slowest top-level imports from `python -X importtime`.

Then the same figures, their runs interleaved, for what surrounds it: `runchecks --once --all` (nothing
to check either, but never answered before Django starts: a pass's start-up through Django), the floor
`python -c "import django; django.setup()"` with the same settings, and a bare `python -c pass`.
"""

from __future__ import annotations

import argparse
import os
import resource
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
DB = "pulse_guardrails_startup"
SERVER = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
TARGET_SECONDS = 0.4


def environment(database: str) -> dict:
    from cryptography.fernet import Fernet

    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env.update(
        PULSE_DATABASE_URL="postgres://{user}@{host}:{port}/".format(**SERVER) + database,
        PULSE_DEBUG="off",
        PULSE_SECRET_KEY=secrets.token_urlsafe(50),
        PULSE_ENCRYPTION_KEY=Fernet.generate_key().decode(),
    )
    return env


RUNCHECKS_ONCE = [str(ROOT / "manage.py"), "runchecks", "--once"]
AROUND = {
    "runchecks --once --all (through Django)": [*RUNCHECKS_ONCE, "--all"],
    "floor: django.setup()": ["-c", "import django; django.setup()"],
    "floor: python -c pass": ["-c", "pass"],
}


def run_once(
    env: dict, extra: list[str] | None = None, command: list[str] = RUNCHECKS_ONCE
) -> tuple[float, float, subprocess.CompletedProcess]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *(extra or []), *command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--database", default=DB, help="throwaway database (created, then dropped)")
    args = parser.parse_args()
    database = args.database
    with psycopg.connect(**SERVER, dbname="postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {database}")
    env = environment(database)
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
        _, _, warm = run_once(env)
        print(f"output: {warm.stdout.strip()} (exit {warm.returncode})")
        walls, cpus = [], []
        for run in range(1, args.runs + 1):
            wall, cpu, _ = run_once(env)
            walls.append(wall)
            cpus.append(cpu)
            print(f"  run {run:2d}: {wall:.3f} s wall, {cpu:.3f} s CPU")
        print(
            f"median wall {statistics.median(walls):.3f} s (min {min(walls):.3f} s), "
            f"median CPU {statistics.median(cpus):.3f} s; target < {TARGET_SECONDS} s wall"
        )
        print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
        env_setup = {**env, "DJANGO_SETTINGS_MODULE": "pulse_project.settings"}
        around = {name: ([], []) for name in AROUND}
        for command in AROUND.values():
            run_once(env_setup, command=command)  # warm-up (bytecode)
        for _ in range(args.runs):
            for name, command in AROUND.items():
                wall, cpu, done = run_once(env_setup, command=command)
                if done.returncode != 0:
                    raise SystemExit(f"{name} failed: {done.stderr}")
                around[name][0].append(wall)
                around[name][1].append(cpu)
        for name, (walls, cpus) in around.items():
            print(
                f"{name}: median wall {statistics.median(walls):.3f} s (min {min(walls):.3f} s), "
                f"median CPU {statistics.median(cpus):.3f} s (min {min(cpus):.3f} s)"
            )
        print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
        _, _, timed = run_once(env, ["-X", "importtime"])
        top = []
        for line in timed.stderr.splitlines():
            parts = line.split("|")
            if len(parts) == 3 and parts[2].startswith(" ") and not parts[2].startswith("  "):
                try:
                    top.append((int(parts[1]), parts[2].strip()))
                except ValueError:
                    continue
        print("slowest top-level imports (cumulative, importtime):")
        for micros, name in sorted(top, reverse=True)[:10]:
            print(f"  {micros / 1000:7.1f} ms  {name}")
    finally:
        with psycopg.connect(**SERVER, dbname="postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
