"""A job card's Slurm facts in a real browser: Debian's Chromium driven by Playwright against a real
JupyterLab (tests/jupyter_server_process.py) on the real Slurm of `make slurm`.

Both cores of the all-in-one node are held by jobs of a known time limit, so a job submitted then
waits; its card says, beside why it waits, when Slurm expects it to start, in the browser's own zone
(Europe/Berlin here, the machine's is UTC). A finished job that Slurm requeued once after a node
failure, on two nodes, says so ("restarted after node failure (1)", "on node1, node2"): those two
facts are written into the store directly, since a real node failure is the multi-node cluster's
test (tests/test_multinode_slurm.py). Both cards fit the sidebar at its default width, and the panel
passes axe-core's WCAG 2.1 AA check.

Screenshots: test-artifacts/browser/job-card/ (git-ignored).
"""

from __future__ import annotations

import datetime
import re
import subprocess
import time
import zoneinfo

import browser_helpers
import pytest
from browser_helpers import (
    REPO, Steps, check_accessibility, fits, job_card, new_page, open_lab, refresh_every_second, show_jobs_panel,
)
from clusterlab_server.store import JobStore
from jupyter_server_process import JupyterServer
from test_expected_start_slurm import others_in_queue

pytestmark = [pytest.mark.browser, pytest.mark.slurm]
chromium = browser_helpers.chromium  # the fixture

SHOTS = REPO / "test-artifacts" / "browser" / "job-card"
ZONE = "Europe/Berlin"
HOLD_MINUTES = 3
BACKFILL_WAIT = 75  # s: Slurm's default bf_interval is 30 s


@pytest.fixture(scope="module")
def lab(slurm, tmp_path_factory):
    """A JupyterLab on the Slurm backend (its panels refreshing every second)."""
    server = JupyterServer(tmp_path_factory.mktemp("browser-job-card"), backend="slurm", poll_interval=0.5).start()
    (server.workspace / "hello.py").write_text("print('hello', flush=True)\n")
    (server.workspace / "hold.py").write_text("import time\nprint('running', flush=True)\ntime.sleep(600)\n")
    refresh_every_second(server)
    yield server
    server.close()


def submit(server: JupyterServer, name: str, script: str) -> dict:
    answer = server.call("POST", "jobs", json={"template": "python-script", "name": name, "profile": "cpu-small",
                                               "hours": 0.5, "params": {"script": script}})
    assert answer.status_code == 201, answer.text
    return answer.json()


def wait_job(server: JupyterServer, job_id: str, done, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = server.call("GET", f"jobs/{job_id}").json()
        if done(job) or time.monotonic() > deadline:
            return job
        time.sleep(0.5)


def hold_cores() -> list[str]:
    """Both cores of the node taken by two jobs of HOLD_MINUTES (the cpu partition's jobs then wait): their ids."""
    ids = [subprocess.run(["sbatch", "--parsable", "--partition=cpu", "--cpus-per-task=1", "--mem=100M",
                           f"--time={HOLD_MINUTES}", "--job-name=hold-core", "--output=/dev/null", "--wrap=sleep 600"],
                          capture_output=True, text=True, check=True).stdout.strip() for _ in range(2)]
    deadline = time.monotonic() + 60  # other tests' jobs may hold the node a moment
    while sorted(subprocess.run(["squeue", "--noheader", "--states=running", "--format=%i", f"--jobs={','.join(ids)}"],
                                capture_output=True, text=True).stdout.split()) != sorted(ids):
        if time.monotonic() > deadline:
            subprocess.run(["scancel", *ids], check=False)
            raise AssertionError("the holding jobs did not start")
        time.sleep(0.3)
    return ids


def test_a_card_says_when_slurm_expects_a_job_to_start_and_that_slurm_requeued_one(lab, chromium):
    # a job that ran, then (as the multi-node cluster's node failure would leave it) requeued once, on two nodes
    ran = submit(lab, "requeued_on_two_nodes", "hello.py")
    assert wait_job(lab, ran["id"], lambda j: j["status"] == "completed", 90)["status"] == "completed"
    JobStore(lab.root / "jobs" / "jobs.sqlite").update(
        ran["id"], requeues=1, node="node1,node2",
        restart_history=[{"time": "2026-05-01T12:00:00+00:00",
                          "reason": "requeued by Slurm: node node1 failed; it continues from its checkpoint"}])

    context, page = new_page(chromium, timezone_id=ZONE)
    steps = Steps(page, SHOTS)
    holders = hold_cores()
    try:
        waiting = submit(lab, "waits_for_a_core", "hold.py")
        waiting = wait_job(lab, waiting["id"], lambda j: j["expected_start"] or j["status"] != "queued",
                           BACKFILL_WAIT)
        assert waiting["status"] == "queued" and waiting["expected_start"], waiting
        expected = datetime.datetime.fromisoformat(waiting["expected_start"]).astimezone(zoneinfo.ZoneInfo(ZONE))

        open_lab(page, lab)
        show_jobs_panel(page)
        card = job_card(page, waiting["id"])
        when = card.locator(".jp-clusterlab-expected-start")
        when.wait_for()
        # in the browser's zone, and how long from now (the holders' time limit at most, unless other tests'
        # jobs on this machine are planned ahead of it)
        soon = "under a minute|[1-3] min" if not others_in_queue([*holders, waiting["scheduler_id"]]) else "[^)]+"
        assert re.fullmatch(rf"expected to start {expected:%H:%M} \(in ({soon})\)", when.inner_text()), \
            when.inner_text()
        # on its own line, right under why it waits
        reason = card.locator(".jp-clusterlab-job-reason").inner_text().splitlines()
        assert len(reason) == 2 and reason[0] and reason[1] == when.inner_text(), reason
        assert card.locator(".jp-clusterlab-status").get_attribute("data-status") == "queued"

        requeued = job_card(page, ran["id"])
        mark = requeued.locator(".jp-clusterlab-requeues")
        assert mark.inner_text() == "restarted after node failure (1)"
        assert "node node1 failed" in mark.get_attribute("title")
        assert requeued.locator(".jp-clusterlab-job-nodes").inner_text() == "node1, node2"
        assert requeued.locator(".jp-clusterlab-job-meta").first.inner_text().endswith(" · on\xa0node1, node2")
        badge = mark.bounding_box()  # in one piece, on a line of its own
        assert badge["height"] < 2 * float(mark.evaluate("e => parseFloat(getComputedStyle(e).lineHeight) || 16"))
        assert requeued.locator(".jp-clusterlab-expected-start").count() == 0  # only a waiting job has one

        panel = page.locator(".jp-clusterlab-jobs-panel").bounding_box()
        assert panel["width"] < 320, f"the sidebar is not at its default width: {panel}"
        for each in (card, requeued):
            assert fits(each), "a card is wider than the sidebar"
            box = each.bounding_box()
            assert box["x"] + box["width"] <= panel["x"] + panel["width"]
        steps.shot("waiting-and-requeued-jobs")
        page.locator(".jp-clusterlab-jobs-panel").screenshot(path=SHOTS / "panel-close-up.png")
        check_accessibility(page, "jobs-panel", [".jp-clusterlab-jobs-panel"], steps)

        # once it runs, the card no longer has an expected start
        subprocess.run(["scancel", *holders], check=True)
        running = wait_job(lab, waiting["id"], lambda j: j["status"] != "queued", 60)
        assert running["status"] == "running" and running["expected_start"] is None, running
        card.locator(".jp-clusterlab-status[data-status=running]").wait_for()
        assert card.locator(".jp-clusterlab-expected-start").count() == 0
        steps.shot("waiting-job-running")
        page.locator(".jp-clusterlab-jobs-panel").screenshot(path=SHOTS / "panel-close-up-running.png")
    finally:
        subprocess.run(["scancel", *holders], check=False)
        steps.shot("last")
        context.close()
