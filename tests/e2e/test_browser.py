"""A staff user drives the dashboard in headless Chromium while real workers run."""

import shutil
from pathlib import Path

import pytest
from django.contrib.auth.models import User

from tests import data
from tests.e2e.readable import raw_figures

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
ROWS = 60_000
# Roles a person acts on or reads a value from: each must have a name.
CONTROL_ROLES = {
    "button",
    "link",
    "textbox",
    "spinbutton",
    "combobox",
    "checkbox",
    "radio",
    "slider",
    "switch",
    "searchbox",
    "listbox",
    "progressbar",
    "DisclosureTriangle",
}
# Every figure a person reads: the page's visible text and the charts' labels.
VISIBLE_TEXT = """() => document.body.innerText + "\\n" +
    [...document.querySelectorAll("svg text")].map(t => t.textContent).join("\\n")"""


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


def unnamed_controls(page) -> list[str]:
    """Controls shown on the page with no accessible name, as Chromium computes it."""
    cdp = page.context.new_cdp_session(page)
    try:
        nodes = cdp.send("Accessibility.getFullAXTree")["nodes"]
    finally:
        cdp.detach()
    return [
        f"{node['role']['value']} (node {node.get('backendDOMNodeId')})"
        for node in nodes
        if not node.get("ignored")
        and node.get("role", {}).get("value") in CONTROL_ROLES
        and not str(node.get("name", {}).get("value") or "").strip()
    ]


def assert_readable(page) -> None:
    """The page's figures have separators, its controls names, its charts labels."""
    assert raw_figures(page.evaluate(VISIBLE_TEXT)) == []
    assert unnamed_controls(page) == []
    labels = page.eval_on_selector_all(
        "svg.chart", "charts => charts.map(c => c.querySelectorAll('text').length)"
    )
    assert all(count >= 4 for count in labels), labels


def progress_of(page, selector: str) -> int:
    return int(page.locator(selector).first.get_attribute("aria-valuenow") or 0)


def test_staff_user_starts_watches_pauses_resumes_and_sees_success(
    browser, live_server, start_worker, output_dir, request
):
    data.seed(ROWS)
    User.objects.create_superuser("admin", password="admin-pass-123")
    start_worker()
    start_worker()
    page = browser.new_page(viewport={"width": 1200, "height": 1400})

    page.goto(f"{live_server.url}/backfill/")
    assert "/accounts/login/" in page.url
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "admin-pass-123")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/backfill/")

    # Folded: the defaults in words, at most 4 inputs until the options open.
    start = page.locator("form[action='/backfill/start/admin_groups/']")
    assert "2 workers" in start.inner_text()
    assert start.locator("input:visible, select:visible, textarea:visible").count() <= 4
    assert_readable(page)
    start.locator("summary").click()
    start.get_by_label("Batch size").fill("200")
    start.get_by_label("Concurrency").fill("2")
    # Slow enough that the pause lands with most rows left, and the job still
    # runs through the refresh checks after the resume.
    start.get_by_label("Pause (ms)").fill("800")
    assert_readable(page)
    start.get_by_role("button", name="Start admin_groups").click()
    page.wait_for_url("**/backfill/jobs/*/")

    page.wait_for_function(
        "() => Number(document.querySelector('.answers [role=progressbar]').getAttribute('aria-valuenow')) >= 5",
        timeout=60_000,
    )
    first = progress_of(page, ".answers [role=progressbar]")
    assert f"of about {ROWS:,} rows" in page.inner_text(".answers") or f"of {ROWS:,} rows" in (
        page.inner_text(".answers")
    )
    assert_readable(page)
    page.screenshot(path=str(output_dir / "running.png"), full_page=True)

    # A reader can stop the page moving under them, and start it again.
    page.get_by_role("button", name="Pause updates").click()
    assert page.inner_text("#live-note") == "Updates paused."
    page.get_by_role("button", name="Resume updates").click()
    assert "Updated every second" in page.inner_text("#live-note")

    # Paused early, with most rows left: the whole job takes seconds.
    page.locator("button.pause").click()
    page.wait_for_selector("#job-status:text('paused')", timeout=30_000)
    assert progress_of(page, ".answers [role=progressbar]") < 100, "the job ended before the pause"
    page.screenshot(path=str(output_dir / "paused.png"), full_page=True)
    page.locator("button.resume").click()
    page.wait_for_selector("#job-status:text('running')", timeout=30_000)

    # Nothing is swapped under the pointer while the page refreshes: a swap
    # between press and release swallows the click. The buttons' part changes
    # only by its CSRF tokens while the job runs, so it stays the same node;
    # the progress, held down by a pressed pointer, is kept until released.
    mark = "part => document.querySelector(`[data-part=${part}]`).keptAcrossRefreshes = true"
    kept = "part => document.querySelector(`[data-part=${part}]`).keptAcrossRefreshes === true"
    token = "() => document.querySelector('[data-part=actions] [name=csrfmiddlewaretoken]').value"
    first_token = page.evaluate(token)
    page.evaluate(mark, "actions")
    page.evaluate(mark, "answers")
    box = page.locator(".answers [role=progressbar]").bounding_box()
    page.mouse.move(box["x"] + 2, box["y"] + 2)
    page.mouse.down()
    page.wait_for_timeout(2500)
    assert page.evaluate(kept, "answers")
    page.mouse.up()
    page.wait_for_timeout(2500)
    assert page.evaluate(kept, "actions")
    assert not page.evaluate(kept, "answers")
    # ... yet its forms carry the latest answer's token: signing in again
    # elsewhere changes the secret behind them.
    assert page.evaluate(token) != first_token

    # While the job runs, the list refreshes: a value typed into another
    # definition's start form, focus gone elsewhere, survives the refreshes.
    listing = browser.new_page(viewport={"width": 1200, "height": 1400})
    listing.context.add_cookies(page.context.cookies())
    listing.goto(f"{live_server.url}/backfill/")
    other = listing.locator("form[action='/backfill/start/search_names/']")
    other.locator("summary").click()
    other.get_by_label("Batch size").fill("321")
    listing.locator("h2").first.click()
    assert "Updated every second" in listing.inner_text("#live-note")
    before = listing.inner_html("table.jobs")
    listing.wait_for_function(
        "before => document.querySelector('table.jobs').innerHTML !== before",
        arg=before,
        timeout=30_000,
    )
    listing.wait_for_timeout(1500)
    assert other.get_by_label("Batch size").input_value() == "321"
    assert other.locator("details").get_attribute("open") is not None
    assert_readable(listing)
    listing.screenshot(path=str(output_dir / "list.png"), full_page=True)
    listing.close()

    page.wait_for_selector("#job-status:text('succeeded')", timeout=180_000)
    assert progress_of(page, ".answers [role=progressbar]") == 100 > first
    assert page.locator("svg.chart polyline").count() >= 3
    # Nothing runs any more: the page says so and stops asking.
    page.wait_for_selector("#live-note:text('Nothing is running')", timeout=10_000)
    assert f"{ROWS:,} of {ROWS:,} rows" in page.inner_text(".answers")
    assert_readable(page)
    page.screenshot(path=str(output_dir / "succeeded.png"), full_page=True)
    if request.config.getoption("--update-docs-screenshot", default=False):
        page.screenshot(path=str(DOCS_SCREENSHOT), full_page=True)
