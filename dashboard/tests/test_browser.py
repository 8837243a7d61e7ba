"""The dashboard in a real browser (Chromium from Debian's `chromium` package, driven by pytest-playwright).

Log in, see the failing table coloured as failing, find the band and the anomalies in its chart, acknowledge
its alert, watch the overview change without a reload, and be refused another team's page. Each page is saved
as a screenshot: into docs/screenshots/ (shown in the README) when PULSE_SAVE_SCREENSHOTS=1, else into the
session's temporary directory, so a test run leaves the checkout unchanged.
"""

import os
import shutil
from pathlib import Path

import pytest
from django.conf import settings
from playwright.sync_api import expect, sync_playwright

from monitors.models import MonitoredTable

SCREENSHOTS = Path(settings.BASE_DIR) / "docs" / "screenshots"
SAVE_SCREENSHOTS = os.environ.get("PULSE_SAVE_SCREENSHOTS") == "1"
FAILING_RED = "rgb(200, 34, 26)"
HEALTHY_GREEN = "rgb(26, 127, 55)"

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module", autouse=True)
def sync_orm_beside_playwright():
    """Playwright's sync API keeps an event loop running in this thread while it is started, where Django
    refuses synchronous ORM calls; the test's own calls are still synchronous, so the guard is lifted for this
    module only (Playwright is started and stopped per module below)."""
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    yield
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


# pytest-playwright keeps Playwright (and its event loop) running to the end of the session; started per module
# here, so the tests collected after this module run with no event loop in their thread, as everywhere else.
@pytest.fixture(scope="module")
def playwright(sync_orm_beside_playwright, _pw_api_request_contexts):
    started = sync_playwright().start()
    if _pw_api_request_contexts:
        _pw_api_request_contexts.instrument(started)
    yield started
    started.stop()


@pytest.fixture(scope="module")
def browser_type(playwright, browser_name):
    return getattr(playwright, browser_name)


@pytest.fixture(scope="module")
def launch_browser(browser_type_launch_args, browser_type):
    def launch(**kwargs):
        return browser_type.launch(**{**browser_type_launch_args, **kwargs})

    return launch


@pytest.fixture(scope="module")
def browser(launch_browser):
    launched = launch_browser()
    yield launched
    launched.close()


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing: scripts/test installs it (apt-get install -y chromium)"
    return {**browser_type_launch_args, "executable_path": chromium}


@pytest.fixture(scope="module")
def browser_context_args():
    return {"viewport": {"width": 1280, "height": 860}, "timezone_id": "Europe/Berlin"}


def log_in(page, live_server, username="owner", password="pw-owner"):  # noqa: S107 - the fixture's test password
    page.goto(f"{live_server.url}/")
    expect(page).to_have_url(f"{live_server.url}/accounts/login/?next=/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{live_server.url}/")


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory):
    return SCREENSHOTS if SAVE_SCREENSHOTS else tmp_path_factory.mktemp("screenshots")


def shoot(page, name, folder):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000  # a rendered page, not a blank one


def test_a_user_sees_reads_and_acknowledges_a_failing_table(live_server, page, scene, owner, screenshots):
    table, alert = scene["table"], scene["alert"]
    log_in(page, live_server)

    row = page.locator(f'tr[data-table="{table.pk}"]')
    expect(row).to_have_class("row state-failing")
    expect(row.locator(".pill")).to_have_css("background-color", FAILING_RED)
    expect(page).to_have_title("1 failing · Pulse")
    page.wait_for_function("document.cookie.includes('pulse_tz=')")
    page.reload()  # now in the browser's time zone
    shoot(page, "overview", screenshots)

    row.get_by_role("link", name="orders").click()
    expect(page).to_have_url(f"{live_server.url}/tables/{table.pk}/")
    chart = page.locator("svg.volume-chart")
    expect(chart.locator("path.band")).to_have_count(1)
    expect(chart.locator("circle.anomaly")).to_have_count(2)
    assert "anomaly" in chart.locator("circle.anomaly").first.locator("title").text_content()
    expect(page.locator("svg.limit-chart")).to_be_visible()
    shoot(page, "table", screenshots)

    page.goto(f"{live_server.url}/connections/{scene['connection'].pk}/")
    expect(page.get_by_text("Sessions in use")).to_be_visible()
    shoot(page, "connection", screenshots)

    watcher = page.context.new_page()
    watcher.goto(f"{live_server.url}/")
    watcher.evaluate("window.notReloaded = true")
    watched = watcher.locator(f'tr[data-table="{table.pk}"]')
    expect(watched.locator(".alerts-count")).to_have_text("1 open")

    page.goto(f"{live_server.url}/alerts/")
    shoot(page, "alerts", screenshots)
    card = page.locator(f'[data-alert="{alert.pk}"]')
    card.get_by_role("button", name="Acknowledge").click()
    expect(page.locator(".messages")).to_contain_text(f"Alert {alert.pk}")
    expect(page.locator(f'[data-alert="{alert.pk}"] .pill')).to_have_text("Acknowledged")
    alert.refresh_from_db()
    assert alert.status == "acknowledged"

    watcher.bring_to_front()
    expect(watched.locator(".alerts-count")).to_have_text("1 acknowledged", timeout=20_000)
    MonitoredTable.objects.filter(pk=table.pk).update(status="healthy")
    expect(watched).to_have_class("row state-healthy", timeout=20_000)
    expect(watched.locator(".pill")).to_have_css("background-color", HEALTHY_GREEN)
    expect(watcher.locator(".summary")).to_have_text("2 healthy")
    expect(watcher).to_have_title("Pulse")
    assert watcher.evaluate("window.notReloaded") is True


def test_another_teams_pages_are_refused(live_server, page, scene, owner):
    log_in(page, live_server)
    for path in (f"/tables/{scene['foreign_table'].pk}/", f"/connections/{scene['foreign_connection'].pk}/"):
        response = page.goto(f"{live_server.url}{path}")
        assert response.status == 404
    page.goto(f"{live_server.url}/alerts/")
    expect(page.locator(f'[data-alert="{scene["foreign_alert"].pk}"]')).to_have_count(0)
    expect(page.get_by_text("secret_orders")).to_have_count(0)


def test_pages_read_with_javascript_off(live_server, browser, scene, owner):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    log_in(page, live_server)
    expect(page.locator(f'tr[data-table="{scene["table"].pk}"]')).to_have_class("row state-failing")
    expect(page.locator("img.spark")).to_have_count(2)
    page.goto(f"{live_server.url}/tables/{scene['table'].pk}/")
    expect(page.locator("svg.volume-chart circle.anomaly")).to_have_count(2)
    page.goto(f"{live_server.url}/alerts/")
    card = page.locator(f'[data-alert="{scene["alert"].pk}"]')
    card.locator("select[name=duration]").select_option("60")
    card.get_by_role("button", name="Snooze").click()
    expect(page.locator(f'[data-alert="{scene["alert"].pk}"] .pill')).to_have_text("Snoozed")
    context.close()
