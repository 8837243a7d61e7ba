"""gunicorn settings for Pulse's web process: `gunicorn -c deploy/gunicorn.conf.py` (see README, Running in production).

Every value can be changed from the environment, so one systemd unit fits every host.
"""

import multiprocessing
import os

wsgi_app = "pulse_project.wsgi:application"
# Behind a reverse proxy on the same host; PULSE_BIND=0.0.0.0:8000 when the load balancer is elsewhere.
bind = os.environ.get("PULSE_BIND", "127.0.0.1:8000")
# Sync workers: the API's requests are short database reads. Two per core plus one.
workers = int(os.environ.get("PULSE_WEB_WORKERS", multiprocessing.cpu_count() * 2 + 1))
timeout = int(os.environ.get("PULSE_WEB_TIMEOUT", "30"))
graceful_timeout = 30
keepalive = 5
# Recycle a worker now and then: bounds memory growth without a restart of the service.
max_requests = 5000
max_requests_jitter = 500
# gunicorn never derives the scheme from X-Forwarded-Proto itself: Django alone decides, by PULSE_BEHIND_PROXY.
secure_scheme_headers = {}
accesslog = os.environ.get("PULSE_ACCESS_LOG", "-")
errorlog = "-"
