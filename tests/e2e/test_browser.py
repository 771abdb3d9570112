"""A staff user drives the dashboard in headless Chromium while real workers run."""

import shutil
from pathlib import Path

import pytest
from django.contrib.auth.models import User

from tests import data

pytestmark = [pytest.mark.browser, pytest.mark.workers, pytest.mark.django_db(transaction=True)]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "dashboard-job.png"
# Playwright adds --headless and a fresh profile of its own.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def browser(monkeypatch):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (make browser installs it as root)")
    # Playwright's sync API runs an event loop in this thread; the ORM calls
    # in the test are still plain synchronous calls.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


def test_staff_user_starts_watches_pauses_resumes_and_sees_success(
    browser, live_server, start_worker, output_dir, request
):
    data.seed(40_000)
    User.objects.create_user("admin", password="admin-pass-123", is_staff=True)
    start_worker()
    start_worker()
    page = browser.new_page(viewport={"width": 1200, "height": 1400})

    page.goto(f"{live_server.url}/backfill/")
    assert "/accounts/login/" in page.url
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "admin-pass-123")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/backfill/")

    start = page.locator("form[action='/backfill/start/admin_groups/']")
    start.locator("input[name=batch_size]").fill("200")
    start.locator("input[name=concurrency]").fill("2")
    start.locator("input[name=pause_ms]").fill("150")
    start.locator("button").click()
    page.wait_for_url("**/backfill/jobs/*/")

    bar = page.locator(".summary [role=progressbar]")
    page.wait_for_function(
        "() => Number(document.querySelector('.summary [role=progressbar]').getAttribute('aria-valuenow')) >= 5",
        timeout=60_000,
    )
    first = int(bar.get_attribute("aria-valuenow") or 0)
    page.screenshot(path=str(output_dir / "running.png"), full_page=True)

    page.locator("button.pause").click()
    page.wait_for_selector("#job-status:text('paused')", timeout=30_000)
    page.screenshot(path=str(output_dir / "paused.png"), full_page=True)
    page.locator("button.resume").click()
    page.wait_for_selector("#job-status:text('running')", timeout=30_000)

    page.wait_for_selector("#job-status:text('succeeded')", timeout=180_000)
    assert int(bar.get_attribute("aria-valuenow") or 0) == 100 > first
    assert page.locator("svg.chart polyline").count() >= 1
    page.screenshot(path=str(output_dir / "succeeded.png"), full_page=True)
    if request.config.getoption("--update-docs-screenshot", default=False):
        page.screenshot(path=str(DOCS_SCREENSHOT), full_page=True)
