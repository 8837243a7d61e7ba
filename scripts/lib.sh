# Shared by scripts/run and scripts/test.
PYTHON=${PYTHON:-python3}

ensure_venv() {
  if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
  fi
  if [ ! -f .venv/.installed ] || [ requirements.txt -nt .venv/.installed ]; then
    .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
    touch .venv/.installed
  fi
}

ensure_pulse_database() {
  # Creates the database named in PULSE_DATABASE_URL (default: pulse on 127.0.0.1:5432) if missing.
  .venv/bin/python - <<'PY'
import environ, psycopg
from psycopg import sql
url = environ.Env.db_url_config(environ.Env().str("PULSE_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/pulse"))
admin = dict(host=url["HOST"] or None, port=url["PORT"] or None, user=url["USER"] or None,
             password=url["PASSWORD"] or None, dbname="postgres", autocommit=True)
with psycopg.connect(**{k: v for k, v in admin.items() if v is not None}) as conn:
    if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (url["NAME"],)).fetchone():
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(url["NAME"])))
        print(f"created database {url['NAME']}")
PY
}

serve_settings() {
  # The port Pulse serves on (PULSE_PORT, default 8000) and, unless set in the environment or in .env, its
  # public address for links in notifications (PULSE_BASE_URL), exported so the server, runchecks and the
  # demo all link to this server.
  PORT=${PULSE_PORT:-8000}
  if [ -z "${PULSE_BASE_URL:-}" ] && ! grep -qs '^PULSE_BASE_URL=' .env; then
    export PULSE_BASE_URL="http://127.0.0.1:$PORT"
  fi
}

ensure_chromium() {
  # The dashboard's browser tests drive Debian's chromium (pytest-playwright, no browser download).
  if command -v chromium >/dev/null 2>&1; then
    return
  fi
  if [ "$(id -u)" = 0 ]; then
    echo "installing chromium (apt) for the browser tests"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  elif command -v sudo >/dev/null 2>&1; then
    sudo apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "chromium is missing: install it (apt-get install -y chromium) to run the browser tests" >&2
  fi
}
