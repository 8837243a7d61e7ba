"""The layering of docs/architecture.md holds: imports only point downward and no edge hides from "go to definition".

import-linter checks the imports (contracts in pyproject.toml). What it cannot see - signals, `apps.get_model`,
jobs named as text, `ready()` wiring, raw SQL into another app's tables, patching another app's class - is
found here by reading the source of the apps (not their tests or migrations, where `apps.get_model` is the norm).
"""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

PACKAGES = (
    "common",
    "connections",
    "monitors",
    "alerts",
    "observability",
    "monitors_as_code",
    "dashboard",
    "pulse_project",
)
JOB_PATH = re.compile(r"^[a-z_]+(\.[a-z_]+)+:[a-z_]+$")
FOREIGN_WRITE = re.compile(
    r"\b(?:UPDATE|INSERT\s+INTO|DELETE\s+FROM)\s+(connections|monitors|alerts|observability|dashboard)_", re.IGNORECASE
)


def test_imports_follow_the_layers():
    lint = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--no-cache", "--no-logo", "pyproject.toml"],
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "5 kept, 0 broken" in lint.stdout


def is_signals(module: str) -> bool:
    """Django's signal machinery or one of its signals (django.dispatch, django.db.models.signals, ...)."""
    parts = module.split(".")
    return parts[0] == "django" and ("dispatch" in parts or "signals" in parts)


def hidden_edges(source: str, *, package: str) -> list[str]:
    """What in `source` (a module of `package`) connects code in a way "go to definition" cannot follow."""
    tree = ast.parse(source)
    found = []
    from_other_apps = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = {f"{node.module}.{alias.name}" for alias in node.names}
            if any(is_signals(name) for name in names):
                found.append(f"line {node.lineno}: imports signals ({node.module})")
            root = node.module.split(".")[0]
            if root in PACKAGES and root != package:
                from_other_apps |= {alias.asname or alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if is_signals(alias.name):
                    found.append(f"line {node.lineno}: imports signals ({alias.name})")
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in ("get_model", "is_installed"):
                found.append(f"line {node.lineno}: apps.{node.func.attr}(...) loads a model by name")
            if node.func.attr == "add_job" and node.args and isinstance(node.args[0], ast.Constant):
                found.append(f"line {node.lineno}: a job scheduled by its name as text")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if JOB_PATH.match(node.value):
                found.append(f"line {node.lineno}: {node.value!r} names a function as text")
            for app in FOREIGN_WRITE.findall(node.value):
                if app != package:
                    found.append(f"line {node.lineno}: raw SQL writes the {app} app's tables")
        elif isinstance(node, ast.Assign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if (
                    isinstance(target, ast.Attribute)
                    and isinstance(target.value, ast.Name)
                    and target.value.id in from_other_apps
                ):
                    found.append(f"line {node.lineno}: changes {target.value.id}.{target.attr} of another app")
        elif isinstance(node, ast.FunctionDef) and node.name == "ready":
            body = [
                statement
                for statement in node.body
                if not (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant))
            ]
            only_super = all(
                isinstance(statement, ast.Expr)
                and isinstance(statement.value, ast.Call)
                and isinstance(statement.value.func, ast.Attribute)
                and statement.value.func.attr == "ready"
                for statement in body
            )
            if not only_super:
                found.append(f"line {node.lineno}: ready() wires behaviour at start-up")
    return found


def app_modules():
    for package in PACKAGES:
        for path in sorted((settings.BASE_DIR / package).rglob("*.py")):
            parts = path.relative_to(settings.BASE_DIR).parts
            if {"tests", "testing", "migrations"} & set(parts):
                continue
            yield package, path


def test_no_hidden_edges():
    modules = list(app_modules())
    assert len(modules) > 50  # the walk found the apps
    problems = [
        f"{path.relative_to(settings.BASE_DIR)} {problem}"
        for package, path in modules
        for problem in hidden_edges(path.read_text(), package=package)
    ]
    assert problems == []


@pytest.mark.parametrize(
    "source, expected",
    [
        ("from django.dispatch import Signal\nrecorded = Signal()", "imports signals"),
        ("from django.db.models.signals import post_save", "imports signals"),
        ("from django.db.models import signals", "imports signals"),
        ("import django.dispatch", "imports signals"),
        ("from django.contrib.auth.signals import user_logged_in", "imports signals"),
        ("from django.db import transaction", None),
        ("from django.apps import apps\nWindow = apps.get_model('alerts', 'MaintenanceWindow')", "apps.get_model"),
        ("if apps.is_installed('alerts'):\n    pass", "apps.is_installed"),
        ("scheduler.add_job(job_name, trigger)", None),
        ("scheduler.add_job('notify', trigger)", "job scheduled by its name as text"),
        ("JOB = 'alerts.jobs:notify'", "names a function as text"),
        ("SQL = 'UPDATE connections_connection SET error_streak = 0'", "writes the connections app's tables"),
        ("SQL = 'UPDATE alerts_alert SET status = %s'", None),
        ("SQL = 'SELECT 1 FROM connections_connection'", None),
        ("from connections.admin import ConnectionAdmin\nConnectionAdmin.inlines = []", "of another app"),
        ("from alerts.models import Alert\nalert = Alert()\nalert.status = 'open'", None),
        ("class Config(AppConfig):\n    def ready(self):\n        connect()", "ready() wires behaviour"),
        ("class Config(AppConfig):\n    def ready(self):\n        '''Nothing.'''\n        super().ready()", None),
    ],
)
def test_the_scan_finds_each_kind_of_hidden_edge(source, expected):
    found = hidden_edges(source, package="alerts")
    if expected is None:
        assert found == []
    else:
        assert len(found) == 1 and expected in found[0], found
