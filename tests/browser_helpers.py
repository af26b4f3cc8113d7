"""What the browser tests share: Debian's Chromium under Playwright, numbered
screenshots, axe-core's WCAG 2.1 AA check, and the JupyterLab steps every
story takes (a launcher tile's form, a sidebar panel, a job card followed
until it ends).

A test module takes the fixture by importing it: ``from browser_helpers import chromium``.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest
import requests

playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[test]' (make setup)")

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic", "--disable-dev-shm-usage"]
AXE = REPO / "node_modules" / "axe-core" / "axe.min.js"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


@pytest.fixture(scope="module")
def chromium():
    if not Path(CHROMIUM).exists():
        message = "Debian's Chromium is missing: apt-get install -y chromium (tests/setup-services.sh does it in CI)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def new_page(browser, **context_options):
    """A page in a fresh context at the stories' size (1400 × 900), each step waiting 30 s at most: (context, page)."""
    context = browser.new_context(viewport={"width": 1400, "height": 900}, **context_options)
    page = context.new_page()
    page.set_default_timeout(30_000)
    return context, page


def open_lab(page, server) -> None:
    """``server``'s JupyterLab with a fresh layout, once its launcher shows the templates' tiles."""
    page.goto(f"{server.url}/lab?reset&token={server.token}")
    page.locator(".jp-LauncherCard[data-category='Accelerated AI']").first.wait_for(timeout=60_000)


class Steps:
    """Screenshots, numbered in the order the story takes them."""

    def __init__(self, page, folder: Path):
        self.page, self.folder, self.count = page, folder, 0
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)

    def shot(self, name: str) -> None:
        self.count += 1
        self.page.screenshot(path=self.folder / f"{self.count:02d}-{name}.png")


def axe_violations(page, include: list[str], exclude: list[str] = ()) -> list[str]:
    """axe-core's WCAG 2.1 AA rules over ``include`` less ``exclude`` (CSS selectors): one line per violation."""
    page.add_script_tag(path=str(AXE))
    return page.evaluate(
        """async ([include, exclude, tags]) => (await axe.run(
               {include: include.map(s => [s]), exclude: exclude.map(s => [s])},
               {runOnly: {type: 'tag', values: tags}})).violations.map(
             v => `${v.id} (${v.impact}): ${v.help}\\n  ` +
                  v.nodes.slice(0, 5).map(n => n.target.join(' ') + ': ' + n.failureSummary).join('\\n  '))""",
        [include, list(exclude), AXE_TAGS])


def check_accessibility(page, where: str, include: list[str], steps: Steps) -> None:
    """No violation of ours in ``include``; the report goes beside the screenshots."""
    report = "\n".join(axe_violations(page, include))
    (steps.folder / f"axe-{where}.txt").write_text(report or "no violations\n")
    assert not report, f"axe-core finds WCAG 2.1 AA violations on {where}:\n{report}"


def fits(locator) -> bool:
    """Nothing of it is cut or scrolls sideways."""
    return locator.evaluate("e => e.scrollWidth <= e.clientWidth + 1")


def show_sidebar_panel(page, panel_id: str, content: str) -> None:
    """A sidebar tab toggles its panel: click it only when ``content`` (a selector) is not showing."""
    if not page.locator(content).is_visible():
        page.locator(f".jp-SideBar [data-id={panel_id}]").click()
    page.locator(content).wait_for(state="visible")


def show_jobs_panel(page) -> None:
    show_sidebar_panel(page, "clusterlab-jobs", ".jp-clusterlab-jobs")


def job_card(page, job_id: str):
    return page.locator(f".jp-clusterlab-job[data-job-id='{job_id}']")


def watch_job(page, job_id: str, until: set[str], timeout: float = 240) -> list[tuple[str, int, str]]:
    """(status, percent, progress text) as the panel showed them, until a status in ``until``."""
    card = job_card(page, job_id)
    card.wait_for(timeout=30_000)
    seen: list[tuple[str, int, str]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = card.locator(".jp-clusterlab-status").get_attribute("data-status")
        bar = card.locator(".jp-clusterlab-progress")
        state = (status, int(bar.get_attribute("aria-valuenow")), bar.inner_text().strip())
        if not seen or seen[-1] != state:
            seen.append(state)
        if status in until:
            return seen
        time.sleep(0.25)
    raise AssertionError(f"{job_id} did not reach {until}; the panel showed {seen}")


def field_errors(page, field: str) -> str:
    """The messages rjsf shows in the form group of parameter ``field``."""
    group = page.locator(".jp-clusterlab-params .form-group").filter(has=page.locator(f"#root_{field}"))
    return " ".join(group.locator(".validationErrors").all_inner_texts())


def open_form(page, template_name: str) -> None:
    page.locator(".jp-LauncherCard[data-category='Accelerated AI']").filter(has_text=template_name).click()
    page.locator(".jp-clusterlab-form").last.wait_for()


def refresh_every_second(server) -> None:
    """The lab extension's panels of this JupyterLab poll every second (its setting), so tests wait less."""
    settings = f"{server.url}/lab/api/settings/@clusterlab/labextension:plugin"
    answer = requests.put(settings, headers=server.headers, json={"raw": '{"refreshInterval": 1}'}, timeout=30)
    assert answer.status_code == 204, answer.text


def folder_item(page, listing, name: str):
    """A folder's row in a file browser's listing."""
    return listing.locator(".jp-DirListing-item[data-isdir=true]").filter(
        has=page.locator(".jp-DirListing-itemText", has_text=re.compile(rf"^{re.escape(name)}$")))
