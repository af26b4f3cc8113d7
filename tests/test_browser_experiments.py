"""An experiment, from the template form to its view, in a real browser.

Debian's Chromium driven by Playwright against a real JupyterLab (a ``jupyter
server`` with the clusterlab extension, tests/jupyter_server_process.py, local
backend) on `clusterlab demo-data`'s images:

the image-classification-train form -> Search… -> learning_rate searched over
three values (a grid), tiny trials (16-pixel images, 2 epochs) on a dataset's
version, in a project -> a value the form refuses, and one the server refuses,
each beside its field -> start -> the Experiments panel follows it to the end
-> the trials' cards in the Jobs panel say which experiment they belong to ->
the experiment's view: its project and its input (a link to the version in
the Datasets panel), its best trial, a table that sorts by any column, one
learning curve per trial, the learning rate against the metric -> the trials
as CSV -> rerun the best with more epochs -> every trial in one TensorBoard ->
a second experiment (through the API) that reads a trial's output: its view
links to that job, its project's page lists both experiments with what they
read -> delete both.

axe-core checks the search form, the Experiments panel, the Jobs panel with
trials and the views against WCAG 2.1 AA. Screenshots: test-artifacts/browser/experiments/ (git-ignored).
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
from browser_helpers import (  # noqa: F401 (chromium: a fixture)
    REPO, Steps, check_accessibility, chromium, fits, job_card, new_page, open_form, open_lab, show_jobs_panel,
    refresh_every_second, show_sidebar_panel,
)
from jupyter_server_process import JupyterServer

pytestmark = [pytest.mark.browser]

SHOTS = REPO / "test-artifacts" / "browser" / "experiments"
CLUSTERLAB = Path(sys.executable).parent / "clusterlab"
RATES = ["0.001", "0.003", "0.01"]
NAME = "lr_grid"
PROJECT = "vision"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab whose panels refresh every second, with the demo images in its workspace and a dataset of them."""
    server = JupyterServer(tmp_path_factory.mktemp("browser-experiments"), poll_interval=0.5).start()
    subprocess.run([str(CLUSTERLAB), "demo-data", str(server.workspace / "demo")], check=True,
                   capture_output=True, timeout=120)
    answer = server.call("POST", "datasets", json={"name": "shapes", "folder": "demo/shapes"})
    assert answer.status_code == 201, answer.text
    refresh_every_second(server)
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


def test_an_experiment_from_the_form_to_its_view(lab, chromium):
    started = time.monotonic()
    context, page = new_page(chromium, accept_downloads=True)
    steps = Steps(page, SHOTS)
    try:
        open_lab(page, lab)

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
        # every trial reads the same dataset version, and belongs to a project
        form.locator("#root_dataset").fill("shapes:1")
        form.locator("#clusterlab-job-project").fill(PROJECT)
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
        # its project, and what every trial read: the version the form named, pinned, with its digest
        recorded = lab.call("GET", f"experiments/{experiment_id}").json()
        assert recorded["project"] == PROJECT and recorded["inputs"] == []
        assert [(u["dataset"], u["version"], u["as"], u["param"]) for u in recorded["uses"]] == [
            ("shapes", 1, "dataset", "dataset")]
        assert facts.locator("[data-fact=project]").inner_text() == PROJECT
        item = facts.locator("[data-fact=inputs] .jp-clusterlab-input")
        assert item.count() == 1 and item.get_attribute("data-input") == "shapes:1"
        digest = recorded["uses"][0]["digest"].removeprefix("sha256:")[:8]
        assert item.inner_text().replace("\n", "") == f"dataset ← shapes:1 {digest}", item.inner_text()
        check_accessibility(page, "experiment-view", [".jp-clusterlab-experiment-panel"], steps)
        steps.shot("experiment-view")
        # the input leads to its version in the Datasets panel, which says the trials used it
        item.locator("button").click()
        page.locator(".jp-clusterlab-datasets").wait_for(state="visible")
        detail = page.locator(".jp-clusterlab-dataset[data-dataset=shapes] .jp-clusterlab-version[data-version='1'] "
                              ".jp-clusterlab-version-detail")
        detail.locator(f".jp-clusterlab-used-by li[data-job-id='{trials[0]['job_id']}']").wait_for()
        assert fits(page.locator(".jp-clusterlab-datasets-panel")) and fits(detail)
        steps.shot("dataset-used-by-trials")

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

        # ----- an experiment that reads a trial's output: its view links to that job -----------------
        source = next(trial for trial in trials if trial["trial"] == best["trial"])
        answer = lab.call("POST", "experiments", json={
            "template": "image-classification-train", "name": "from_a_trial", "project": PROJECT,
            "params": {"dataset": "shapes:1", "epochs": 1, "image_size": 16}, "search": {"learning_rate": [0.01]},
            "searcher": "grid", "metric": "val_accuracy", "inputs": [{"job": source["job_id"], "as": "warm"}]})
        assert answer.status_code == 201, answer.text
        second = answer.json()
        assert second["inputs"] == [{"job": source["job_id"], "as": "warm"}]  # pinned as the request named it
        show_experiments_panel(page)
        experiment_card(page, second["id"]).locator("[data-action=open]").click()
        view2 = page.locator(f".jp-clusterlab-experiment-page[data-experiment-id='{second['id']}']")
        view2.wait_for()
        listed = view2.locator("[data-fact=inputs] .jp-clusterlab-input")
        listed.nth(1).wait_for()
        assert listed.evaluate_all("i => i.map(e => e.dataset.input)") == [f"job:{source['job_id']}", "shapes:1"]
        job_input = view2.locator(f".jp-clusterlab-input[data-input='job:{source['job_id']}']")
        text = job_input.inner_text().replace("\n", "")
        assert text.startswith(f"warm ← job {source['name']} "), text
        check_accessibility(page, "experiment-view-inputs", [".jp-clusterlab-experiment-panel"], steps)
        steps.shot("experiment-view-inputs")
        view2.locator(".jp-clusterlab-experiment-facts").screenshot(path=steps.folder / "experiment-facts-inputs.png")
        job_input.locator("button").click()  # leads to the trial's card in the Jobs panel
        page.wait_for_function(f"document.querySelector(\".jp-clusterlab-job[data-job-id='{source['job_id']}']\")"
                               "?.classList.contains('jp-mod-highlight')", timeout=5_000)
        # its project's page lists both experiments, each with what it read
        view2.locator("[data-fact=project] button").click()
        project_page = page.locator(f".jp-clusterlab-project-page[data-project={PROJECT}]")
        project_page.wait_for()
        on_page = project_page.locator(f".jp-clusterlab-project-experiments [data-experiment-id='{second['id']}']")
        on_page.wait_for()
        assert on_page.locator(f".jp-clusterlab-input[data-input='job:{source['job_id']}']").count() == 1
        assert project_page.locator(f".jp-clusterlab-project-experiments [data-experiment-id='{experiment_id}'] "
                                    ".jp-clusterlab-input[data-input='shapes:1']").count() == 1
        check_accessibility(page, "project-page", [".jp-clusterlab-project-panel"], steps)
        steps.shot("project-page-experiments")
        # ended, it goes from its view (which closes with it)
        show_experiments_panel(page)
        assert wait_until_ended(page, second["id"])[-1].startswith("completed"), lab.call(
            "GET", f"experiments/{second['id']}").text
        # (the server refuses to delete it until its controller job has ended too, a moment later)
        deadline = time.monotonic() + 30
        while lab.call("GET", f"experiments/{second['id']}").json()["controller"]["status"] not in {
                "completed", "failed", "cancelled"} and time.monotonic() < deadline:
            time.sleep(0.25)
        page.locator(".lm-TabBar-tab").filter(has_text="Experiment: from_a_trial").click()
        view2.locator("[data-action=delete]").click()
        page.locator(".jp-Dialog .jp-mod-warn").click()
        view2.wait_for(state="detached")
        assert lab.call("GET", f"experiments/{second['id']}").status_code == 404

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
