"""scripts/run's settings for the processes it starts: the port it serves on and the links notifications carry."""

import os
import subprocess

import pytest

from pulse_project.testing.daemons import ROOT


def settings_seen_by_pulse(**env) -> str:
    """PULSE_BASE_URL as Django sees it in a process started after scripts/lib.sh's `serve_settings`, as
    scripts/run starts the server, runchecks and the demo."""
    base = {k: v for k, v in os.environ.items() if k not in ("PULSE_PORT", "PULSE_BASE_URL")}
    show = "from django.conf import settings; print(settings.PULSE_BASE_URL)"
    script = f'source scripts/lib.sh && serve_settings && exec .venv/bin/python manage.py shell -v 0 -c "{show}"'
    done = subprocess.run(
        ["bash", "-c", script], cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize(
    ("env", "base_url"),
    [
        ({}, "http://127.0.0.1:8000"),
        ({"PULSE_PORT": "8123"}, "http://127.0.0.1:8123"),
        ({"PULSE_PORT": "8123", "PULSE_BASE_URL": "https://pulse.example.com"}, "https://pulse.example.com"),
    ],
)
def test_links_follow_the_port_pulse_serves_on_unless_the_base_url_is_set(env, base_url):
    assert settings_seen_by_pulse(**env) == base_url


def test_scripts_run_derives_the_base_url_before_starting_anything():
    run = (ROOT / "scripts" / "run").read_text()
    starts = [run.index(f"\n.venv/bin/python {command}") for command in ("-u manage.py demo", "manage.py runserver")]
    assert run.index("\nserve_settings") < min(starts)


def test_a_base_url_set_in_dot_env_is_left_to_django(tmp_path):
    """.env is read by Django only for variables the environment lacks, so serve_settings must not export one."""
    (tmp_path / ".env").write_text("PULSE_BASE_URL=https://pulse.example.com\n")
    base = {k: v for k, v in os.environ.items() if k not in ("PULSE_PORT", "PULSE_BASE_URL")}
    script = f'source {ROOT}/scripts/lib.sh && serve_settings && echo "$PORT ${{PULSE_BASE_URL-unset}}"'
    done = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, env={**base, "PULSE_PORT": "8123"}, capture_output=True, text=True
    )
    assert done.stdout.strip() == "8123 unset", done.stderr
