"""An experiment, from the template form to its view, in a real browser.

Debian's Chromium driven by Playwright against a real JupyterLab (a ``jupyter
server`` with the clusterlab extension, tests/jupyter_server_process.py, local
backend) on `clusterlab demo-data`'s images:

the image-classification-train form -> Search… -> learning_rate searched over
three values (a grid), tiny trials (16-pixel images, 2 epochs) -> a value the
form refuses, and one the server refuses, each beside its field -> start -> the
Experiments panel follows it to the end -> the trials' cards in the Jobs panel
say which experiment they belong to -> the experiment's view: its best trial,
a table that sorts by any column, one learning curve per trial, the learning
rate against the metric -> the trials as CSV -> rerun the best with more
epochs -> every trial in one TensorBoard -> delete the experiment.

axe-core checks the search form, the Experiments panel, the Jobs panel with
trials and the view against WCAG 2.1 AA. Screenshots: test-artifacts/browser/experiments/ (git-ignored).
"""

from __future__ import annotations

import csv
import io
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from browser_helpers import (  # noqa: F401 (chromium: a fixture)
    REPO, Steps, check_accessibility, chromium, job_card, open_form, show_jobs_panel, show_sidebar_panel,
)
from jupyter_server_process import JupyterServer

pytestmark = [pytest.mark.browser]

SHOTS = REPO / "test-artifacts" / "browser" / "experiments"
CLUSTERLAB = Path(sys.executable).parent / "clusterlab"
RATES = ["0.001", "0.003", "0.01"]
NAME = "lr_grid"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab whose panels refresh every second, with the demo images in its workspace."""
    server = JupyterServer(tmp_path_factory.mktemp("browser-experiments"), poll_interval=0.5).start()
    subprocess.run([str(CLUSTERLAB), "demo-data", str(server.workspace / "demo")], check=True,
                   capture_output=True, timeout=120)
    settings = f"{server.url}/lab/api/settings/@clusterlab/labextension:plugin"
    answer = requests.put(settings, headers=server.headers, json={"raw": '{"refreshInterval": 1}'}, timeout=30)
    assert answer.status_code == 204, answer.text
    yield server
    try:
        for experiment in server.call("GET", "experiments").json()["experiments"]:
            if experiment["status"] == "running":
                server.call("POST", f"experiments/{experiment['id']}/cancel")
        server.cancel_unfinished()
    finally:
        server.stop()


def experiment_card(page, experiment_id: str):
    return page.locator(f".jp-clusterlab-experiment[data-experiment-id='{experiment_id}']")


def show_experiments_panel(page) -> None:
    show_sidebar_panel(page, "clusterlab-experiments", ".jp-clusterlab-experiments")


def wait_until_ended(page, experiment_id: str, timeout: float = 120) -> list[str]:
    """The statuses the card showed, until one that is final."""
    card = experiment_card(page, experiment_id)
    card.wait_for(timeout=30_000)
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = card.locator(".jp-clusterlab-status").get_attribute("data-status")
        counts = card.locator(".jp-clusterlab-counts").inner_text()
        if not seen or seen[-1] != f"{status}: {counts}":
            seen.append(f"{status}: {counts}")
        if status != "running":
            return seen
        time.sleep(0.25)
    raise AssertionError(f"{experiment_id} did not end in {timeout} s; the panel showed {seen}")


def column(page, name: str) -> list[str]:
    """The texts of one column of the trial table, top to bottom."""
    return page.locator(f".jp-clusterlab-trial-table tbody td[data-column='{name}']").all_inner_texts()


def sort_by(page, key: str, ascending: bool) -> None:
    header = page.locator(f".jp-clusterlab-trial-table th[data-sort-key='{key}']")
    want = "ascending" if ascending else "descending"
    for _ in range(2):
        if header.get_attribute("aria-sort") == want:
            return
        header.locator("button").click()
    assert header.get_attribute("aria-sort") == want


def fits(locator) -> bool:
    """Nothing of it is cut or scrolls sideways."""
    return locator.evaluate("e => e.scrollWidth <= e.clientWidth + 1")


def test_an_experiment_from_the_form_to_its_view(lab, chromium):
    started = time.monotonic()
    context = chromium.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(30_000)
    steps = Steps(page, SHOTS)
    try:
        page.goto(f"{lab.url}/lab?reset&token={lab.token}")
        page.locator(".jp-LauncherCard[data-category='Accelerated AI']").first.wait_for(timeout=60_000)

        # ----- the form's search mode ------------------------------------------------------
        open_form(page, "Image classification (train)")
        form = page.locator(".jp-clusterlab-form").last
        form.locator("[data-action=search]").click()
        assert form.get_attribute("data-mode") == "search"
        assert form.locator(".jp-clusterlab-form-title").inner_text() == "Search: Image classification (train)"
        # numbers may be ranges; a choice (the optimizer) only values
        modes = form.locator("#clusterlab-search-learning_rate-mode option").all_inner_texts()
        assert modes == ["fixed", "values", "range"], modes
        assert form.locator("#clusterlab-search-optimizer-mode option").all_inner_texts() == ["fixed", "values"]
        # the metric is one the template declares, and its goal sets maximize
        metric = form.locator("#clusterlab-metric")
        assert "val_accuracy" in metric.locator("option").evaluate_all("o => o.map(e => e.value)")
        metric.select_option("val_loss")
        assert not form.locator("#clusterlab-maximize").is_checked()
        metric.select_option("val_accuracy")
        assert form.locator("#clusterlab-maximize").is_checked()

        form.locator("#clusterlab-job-name").fill(NAME)
        form.locator("#root_epochs").fill("2")
        form.locator("#root_image_size").fill("16")
        form.locator("#clusterlab-search-learning_rate-mode").select_option("range")
        form.locator("#clusterlab-search-learning_rate-min").fill("0.0001")
        form.locator("#clusterlab-search-learning_rate-max").fill("0.1")
        form.locator("#clusterlab-search-learning_rate-log").check()
        form.locator("#clusterlab-early-stopping").select_option("asha")
        assert form.locator("#clusterlab-divisor").input_value() == "4"
        form.locator(".jp-clusterlab-search-row[data-search-param=learning_rate]").scroll_into_view_if_needed()
        check_accessibility(page, "search-form", [".jp-clusterlab-form"], steps)
        steps.shot("search-form-range")

        # a value the form refuses at once, beside its row
        form.locator("#clusterlab-early-stopping").select_option("none")
        form.locator("#clusterlab-searcher").select_option("grid")
        form.locator("#clusterlab-search-learning_rate-mode").select_option("values")
        row = form.locator(".jp-clusterlab-search-row[data-search-param=learning_rate]")
        form.locator("#clusterlab-search-learning_rate-values").fill("0.001, fast")
        form.locator(".jp-clusterlab-submit").click()
        assert '"fast" is not a number' in row.locator(".jp-clusterlab-error").inner_text()
        # ... and ones the server refuses, beside their fields: a searched path that is not there,
        form.locator("#clusterlab-search-learning_rate-values").fill(", ".join(RATES))
        assert row.locator(".jp-clusterlab-error").count() == 0
        form.locator("#clusterlab-search-dataset-mode").select_option("values")
        form.locator("#clusterlab-search-dataset-values").fill("demo/shapes, demo/no_such_folder")
        form.locator(".jp-clusterlab-submit").click()
        refusal = form.locator(".jp-clusterlab-search-row[data-search-param=dataset] .jp-clusterlab-error")
        refusal.wait_for()
        assert "no_such_folder" in refusal.inner_text(), refusal.inner_text()
        form.locator("#clusterlab-search-dataset-mode").select_option("fixed")
        # and more trials at once than the quota
        assert "3 points" in form.locator("[data-field=max_trials]").inner_text()
        form.locator("#clusterlab-max-concurrent").fill("999")
        form.locator(".jp-clusterlab-submit").click()
        refusal = form.locator("[data-field=max_concurrent_trials] .jp-clusterlab-error")
        refusal.wait_for()
        assert "quota" in refusal.inner_text(), refusal.inner_text()
        steps.shot("search-form-refused")
        form.locator("#clusterlab-max-concurrent").fill("3")

        # ----- start it: the Experiments panel follows it -----------------------------------
        form.locator(".jp-clusterlab-submit").click()
        done = form.locator(".jp-clusterlab-submitted[data-experiment-id]")
        done.wait_for()
        experiment_id = done.get_attribute("data-experiment-id")
        assert re.match(rf"Started experiment {NAME} \(", done.inner_text()), done.inner_text()
        page.locator(".jp-clusterlab-experiments").wait_for(state="visible")  # the form showed the panel
        card = experiment_card(page, experiment_id)
        card.wait_for()
        assert card.locator(".jp-clusterlab-experiment-name").inner_text().replace("\n", "") == NAME
        steps.shot("experiments-panel-running")
        seen = wait_until_ended(page, experiment_id)
        assert seen[-1] == "completed: 3 done · 0 running · 0 pruned · 0 failed", seen
        assert re.fullmatch(r"best val_accuracy [\d.]+ \(trial \d\)", card.locator(".jp-clusterlab-best").inner_text())
        assert card.locator("[data-action=delete]").count() == 1 and card.locator("[data-action=cancel]").count() == 0
        # the card reads at the sidebar's default width
        panel = page.locator(".jp-clusterlab-experiments-panel").bounding_box()
        assert panel["width"] < 320, f"the sidebar is not at its default width: {panel}"
        assert fits(card) and fits(page.locator(".jp-clusterlab-experiments-panel"))
        check_accessibility(page, "experiments-panel", [".jp-clusterlab-experiments-panel"], steps)
        steps.shot("experiments-panel-completed")

        # ----- the trials are jobs too, marked with their experiment ---------------------------
        show_jobs_panel(page)
        trials = lab.call("GET", f"experiments/{experiment_id}").json()["trials"]
        assert len(trials) == 3
        for trial in trials:
            label = job_card(page, trial["job_id"]).locator(".jp-clusterlab-trial-label")
            assert label.inner_text().replace("\n", "") == f"trial {trial['trial']} of {NAME}"
        first = job_card(page, trials[0]["job_id"])
        assert fits(first)
        check_accessibility(page, "jobs-panel-trials", [".jp-clusterlab-jobs-panel"], steps)
        steps.shot("jobs-panel-trials")
        first.locator(".jp-clusterlab-trial-label").click()  # opens the experiment's view

        # ----- the experiment's view -----------------------------------------------------------
        view = page.locator(f".jp-clusterlab-experiment-page[data-experiment-id='{experiment_id}']")
        view.wait_for()
        facts = view.locator(".jp-clusterlab-experiment-facts")
        assert facts.locator("[data-fact=searcher]").inner_text() == "grid"
        assert "val_accuracy, maximized" in facts.locator("[data-fact=metric]").inner_text()
        best = lab.call("GET", f"experiments/{experiment_id}").json()["best"]
        best_text = facts.locator("[data-fact=best]").inner_text()
        assert f"trial {best['trial']}: val_accuracy" in best_text and "learning_rate =" in best_text
        # its model, when it is in the workspace (here the jobs' folders are outside it)
        assert ("model: " in best_text) == bool(best["model_path"])
        # one learning curve per trial, 2 epochs each; the best one drawn thick
        curves = view.locator("svg[data-chart=curves] [data-trial]")
        assert curves.count() == 3
        assert view.locator("svg[data-chart=curves] .jp-mod-best").count() == 1
        assert view.locator("svg[data-chart=curves] [data-axis=x] text").all_text_contents()[-1] == "2"
        assert view.locator("svg[data-chart='param-learning_rate'] [data-trial]").count() == 3
        # the table sorts by any column; it starts best first
        assert column(page, "value") == sorted(column(page, "value"), key=float, reverse=True)
        sort_by(page, "trial", ascending=True)
        assert column(page, "trial") == sorted(column(page, "trial"), key=lambda t: int(t.split()[0]))
        sort_by(page, "trial", ascending=False)
        assert [t.split()[0] for t in column(page, "trial")] == ["2", "1", "0"]
        sort_by(page, "param:learning_rate", ascending=True)
        assert column(page, "param:learning_rate") == RATES
        sort_by(page, "value", ascending=True)
        assert column(page, "value") == sorted(column(page, "value"), key=float)
        assert fits(page.locator(".jp-clusterlab-trial-table-wrap"))
        check_accessibility(page, "experiment-view", [".jp-clusterlab-experiment-panel"], steps)
        steps.shot("experiment-view")

        # ----- the trials as CSV ------------------------------------------------------------------
        with page.expect_download() as download:
            view.locator("[data-action=csv]").click()
        rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
        assert len(rows) == 3 and {"learning_rate", "status"} <= set(rows[0]), rows

        # ----- rerun the best with more epochs -----------------------------------------------------
        view.locator("[data-action=rerun-best]").click()
        dialog = page.locator(".jp-Dialog")
        dialog.locator("input").fill("3")
        dialog.locator(".jp-mod-accept").click()
        # the new job, not a trial, shows in the Jobs panel
        page.locator(".jp-clusterlab-jobs .jp-clusterlab-job").filter(
            has_not=page.locator(".jp-clusterlab-trial-label")).wait_for()
        rerun = next(job for job in lab.call("GET", "jobs").json()["jobs"] if not job.get("experiment_id"))
        lab.call("DELETE", f"jobs/{rerun['id']}")
        assert rerun["params"]["epochs"] == 3
        assert rerun["params"]["learning_rate"] == best["params"]["learning_rate"]

        # ----- every trial in one TensorBoard ------------------------------------------------------
        view.locator("[data-action=tensorboard]").click()
        page.locator(".lm-TabBar-tab").filter(has_text=f"TensorBoard: experiment {NAME}").wait_for()
        assert page.locator(".jp-clusterlab-tensorboard iframe").last.get_attribute("src")
        assert set(lab.call("GET", "tensorboard").json()["jobs"]) == {trial["job_id"] for trial in trials}
        lab.call("DELETE", "tensorboard")

        # ----- delete it, once ended --------------------------------------------------------------
        show_experiments_panel(page)
        card.locator("[data-action=delete]").click()
        dialog = page.locator(".jp-Dialog")
        assert "3 trials go too" in dialog.inner_text()
        dialog.locator(".jp-mod-warn").click()
        card.wait_for(state="detached")
        assert page.locator(".jp-clusterlab-experiment-page").count() == 0  # its view closed with it
        assert lab.call("GET", f"experiments/{experiment_id}").status_code == 404
        steps.shot("deleted")
        print(f"\nthe experiments browser test took {time.monotonic() - started:.0f} s")
    finally:
        steps.shot("last")
        context.close()
