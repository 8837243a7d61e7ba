import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from monitors.models import SchedulerHeartbeat

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db


def test_it_is_public_and_reports_a_scheduler_that_never_ran(client):
    response = client.get("/api/health")
    assert response.status_code == 200
    body = response.json()
    assert body["database"] == "ok"
    assert body["scheduler"]["status"] == "never"
    assert body["status"] == "degraded"
    assert body["version"]
    assert set(body) == {"status", "database", "scheduler", "version"}


def test_it_reports_ok_with_a_fresh_heartbeat_and_stale_with_an_old_one(client):
    now = timezone.now()
    beat = SchedulerHeartbeat.objects.create(worker="host:1", beat_at=now, started_at=now)
    body = client.get("/api/health/").json()
    assert body["status"] == "ok" and body["scheduler"]["status"] == "ok"
    beat.beat_at = now - timedelta(hours=1)
    beat.save()
    body = client.get("/api/health").json()
    assert body["scheduler"]["status"] == "stale" and body["status"] == "degraded"


def test_it_answers_503_when_pulse_database_is_unreachable():
    script = (
        "import django; django.setup();"
        "from django.test import Client;"
        "r = Client().get('/api/health');"
        "print(r.status_code, r.json()['database'])"
    )
    env = {
        **os.environ,
        "PULSE_DATABASE_URL": "postgres://postgres@127.0.0.1:1/pulse",
        "DJANGO_SETTINGS_MODULE": "pulse_project.settings",
    }
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["503", "error"], out.stderr
