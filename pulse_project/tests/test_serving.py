"""Production serving: gunicorn with deploy/gunicorn.conf.py, static files by WhiteNoise with debug off, the
reverse-proxy headers, and /api/health as a load balancer probes it (by address, over plain HTTP)."""

import os
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from cryptography.fernet import Fernet
from django.utils import timezone

from monitors.models import SchedulerHeartbeat
from pulse_project.testing.daemons import pulse_test_database_url

ROOT = Path(__file__).resolve().parents[2]
HOST = "pulse.example.com"
HTTPS = {"X-Forwarded-Proto": "https"}  # what the TLS-terminating proxy adds


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def production_env(static_root: Path, **overrides) -> dict:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_")}
    return {
        **base,
        "PULSE_DEBUG": "off",
        "PULSE_SECRET_KEY": "k" * 20 + "Zq8#vY2!pL" * 5,
        "PULSE_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "PULSE_ALLOWED_HOSTS": HOST,
        "PULSE_DATABASE_URL": pulse_test_database_url(),
        "PULSE_STATIC_ROOT": str(static_root),
        **overrides,
    }


class Gunicorn:
    def __init__(self, env: dict):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py"],
            cwd=ROOT,
            env={**env, "PULSE_BIND": f"127.0.0.1:{self.port}", "PULSE_WEB_WORKERS": "1"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60  # start-up on a loaded machine, not a measured figure
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(self.process.stderr.read().decode())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        raise AssertionError("gunicorn did not start")

    def get(self, path: str, *, host: str = HOST, **headers) -> requests.Response:
        return requests.get(self.url + path, headers={"Host": host, **headers}, allow_redirects=False, timeout=30)

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)
        self.process.stderr.close()


@pytest.fixture(scope="module")
def static_root(tmp_path_factory, django_db_setup, django_db_blocker):
    root = tmp_path_factory.mktemp("static")
    env = production_env(root)
    result = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return root


@pytest.fixture(scope="module")
def web(static_root):
    server = Gunicorn(production_env(static_root))
    yield server
    server.stop()


def test_static_files_are_served_by_whitenoise_hashed_compressed_and_cached(web):
    login = web.get("/admin/login/", **HTTPS)
    assert login.status_code == 200
    css = next(part.split('"')[0] for part in login.text.split('href="')[1:] if "admin/css/base." in part)
    assert css.startswith("/static/admin/css/base.") and css.count(".") == 2  # the hashed name of the manifest
    plain = web.get(css, **HTTPS, **{"Accept-Encoding": "identity"})
    assert plain.status_code == 200 and "text/css" in plain.headers["Content-Type"]
    assert "immutable" in plain.headers["Cache-Control"]
    assert b"body" in plain.content
    gzipped = web.get(css, **HTTPS, **{"Accept-Encoding": "gzip"})
    assert gzipped.headers["Content-Encoding"] == "gzip"
    assert gzipped.content == plain.content  # requests decodes it: the same file
    assert web.get("/static/admin/css/missing.css", **HTTPS).status_code == 404


def test_without_the_proxys_https_header_a_page_redirects_to_https(web):
    response = web.get("/admin/login/")
    assert response.status_code == 301
    assert response.headers["Location"] == f"https://{HOST}/admin/login/"


def test_the_forwarded_host_is_used_and_still_checked_against_allowed_hosts(web):
    forwarded = web.get("/admin/login/", host="10.0.0.5:8000", **HTTPS, **{"X-Forwarded-Host": HOST})
    assert forwarded.status_code == 200
    assert 'action="/admin/login/' in forwarded.text
    evil = web.get("/admin/login/", **HTTPS, **{"X-Forwarded-Host": "evil.example"})
    assert evil.status_code == 400


def test_a_load_balancer_probe_by_address_over_plain_http_gets_the_health(web):
    response = web.get("/api/health", host="10.0.0.5:8000")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert response.json()["database"] == "ok"
    assert web.get("/api/health/", host="10.0.0.5").status_code == 200
    assert web.get("/api/connections", host="10.0.0.5").status_code == 400  # only the probe skips the host check


def test_without_a_proxy_the_forwarded_headers_are_not_trusted(static_root):
    server = Gunicorn(production_env(static_root, PULSE_BEHIND_PROXY="off"))
    try:
        response = server.get("/admin/login/", **HTTPS)
        assert response.status_code == 301 and response.headers["Location"].startswith("https://")
        spoofed = server.get("/admin/login/", host="10.0.0.5", **{"X-Forwarded-Host": HOST})
        assert spoofed.status_code == 400
    finally:
        server.stop()


@pytest.mark.django_db
def test_a_stale_scheduler_answers_503_only_when_the_scheduler_is_required(client):
    now = timezone.now()
    SchedulerHeartbeat.objects.create(worker="host:1", beat_at=now - timedelta(hours=1), started_at=now)
    assert client.get("/api/health").status_code == 200
    required = client.get("/api/health?require=scheduler")
    assert required.status_code == 503
    assert required.json()["scheduler"]["status"] == "stale"
    SchedulerHeartbeat.objects.update(beat_at=now)
    assert client.get("/api/health?require=scheduler").status_code == 200


@pytest.mark.django_db
def test_a_scheduler_that_never_ran_fails_the_required_probe(client):
    response = client.get("/api/health?require=scheduler")
    assert response.status_code == 503 and response.json()["scheduler"]["status"] == "never"
