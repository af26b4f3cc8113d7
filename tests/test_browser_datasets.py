"""Datasets, earlier jobs' outputs as inputs, and projects, in a real browser.

Debian's Chromium driven by Playwright against a real JupyterLab (a ``jupyter
server`` with the clusterlab extension, tests/jupyter_server_process.py, local
backend) on `clusterlab demo-data`'s files, with datasets made the three ways a
user makes them: `clusterlab data create` (one of the user's, and one of the
site's with --site), the API, and the file browser's context menu:

the Datasets panel (own and shared, versions with size, files, who and when)
-> a version's preview (its images; a shared table's first rows) -> "Make a
dataset from this folder" on a folder: the name comes from the folder's, a
refusal shows beside the field it names, the new dataset appears -> the
project filter -> the template form's dataset picker offers the versions
(and "latest"), the job it submits lists the input on its card -> a second
job takes the first one's output through the job-output picker -> a link from
an input leads to that job -> the version says which jobs used it, and delete
is refused (in words) while one of them runs -> the Jobs panel's project
filter and the project page, where the first job's output leads to the second
-> the search form's picker adds versions to the values.

axe-core checks the Datasets panel, the dialog, the form with its pickers and
the project page against WCAG 2.1 AA. Screenshots: test-artifacts/browser/datasets/
(git-ignored).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from browser_helpers import (  # noqa: F401 (chromium: a fixture)
    REPO, Steps, check_accessibility, chromium, fits, folder_item, job_card, new_page, open_form, open_lab,
    show_jobs_panel, refresh_every_second, show_sidebar_panel, watch_job,
)
from jupyter_server_process import JupyterServer

pytestmark = [pytest.mark.browser]

SHOTS = REPO / "test-artifacts" / "browser" / "datasets"
CLUSTERLAB = Path(sys.executable).parent / "clusterlab"
TRAIN = "Image classification (train)"
PROJECT = "vision"
FINAL = {"completed", "failed", "cancelled"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab (panels refreshing every second) with the demo files, a site store, and datasets in both."""
    root = tmp_path_factory.mktemp("browser-datasets")
    site = root / "site-datasets"
    site.mkdir(mode=0o755)
    # the server's own config file (its HOME is root): where the site's datasets are
    config = root / ".jupyter"
    config.mkdir()
    (config / "jupyter_server_config.json").write_text(json.dumps({"ClusterLabApp": {"site_datasets": str(site)}}))
    server = JupyterServer(root, poll_interval=0.5).start()
    demo = server.workspace / "demo"
    subprocess.run([str(CLUSTERLAB), "demo-data", str(demo)], check=True, capture_output=True, timeout=120)
    # as the user types them, with the server's places (the CLI reads them from the hub's environment)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CLUSTERLAB_")}, "HOME": str(root),
           "CLUSTERLAB_SITE_DATASETS": str(site)}
    cli = [str(CLUSTERLAB), "--jobs-root", str(root / "jobs"), "--workspace", str(server.workspace)]
    for args in (["data", "create", "shapes", "demo/shapes", "--description", "Circles, squares and triangles"],
                 ["data", "create", "houses", "demo/tabular", "--site", "--description", "House prices (the site's)"]):
        answer = subprocess.run([*cli, *args], cwd=server.workspace, env=env, capture_output=True, text=True,
                                timeout=120)
        assert answer.returncode == 0, answer.stderr
    # a second version through the API: one more image
    extra = demo / "shapes" / "train" / "circle" / "circle_extra.png"
    extra.write_bytes((demo / "shapes" / "train" / "circle" / "circle_0000.png").read_bytes())
    answer = server.call("POST", "datasets", json={"name": "shapes", "folder": "demo/shapes",
                                                   "description": "Circles, squares and triangles, one more circle"})
    assert answer.status_code == 201 and answer.json()["version"] == 2, answer.text
    # a folder the server must refuse: a link inside it leads out of it
    linked = demo / "linked"
    linked.mkdir()
    (linked / "notes.txt").write_text("a file of its own\n")
    (linked / "passwords").symlink_to("/etc/passwd")
    refresh_every_second(server)
    yield server
    server.close()


def show_datasets_panel(page) -> None:
    show_sidebar_panel(page, "clusterlab-datasets", ".jp-clusterlab-datasets")


def dataset_card(page, name: str):
    return page.locator(f".jp-clusterlab-dataset[data-dataset='{name}']")


def version_row(page, name: str, version: int):
    return dataset_card(page, name).locator(f".jp-clusterlab-version[data-version='{version}']")


def open_version(page, name: str, version: int):
    """Select a version (if it is not open yet); its detail."""
    row = version_row(page, name, version)
    button = row.locator(".jp-clusterlab-version-button")
    if button.get_attribute("aria-expanded") != "true":
        button.click()
    detail = row.locator(".jp-clusterlab-version-detail")
    detail.wait_for()
    return detail


def images_loaded(locator) -> int:
    """How many of the images under ``locator`` have been drawn (decoded, not broken)."""
    return locator.locator("img").evaluate_all("imgs => imgs.filter(i => i.complete && i.naturalWidth > 0).length")


def choices(select) -> list[str]:
    return select.locator("option").evaluate_all("o => o.map(e => e.value).filter(v => v)")


def submitted_job(form, name: str) -> str:
    done = form.locator(".jp-clusterlab-submitted")
    done.wait_for(timeout=30_000)
    answer = re.fullmatch(rf"Submitted job {name} \((\S+)\): see the Jobs panel\.", done.inner_text())
    assert answer, done.inner_text()
    return answer.group(1)


def fill_train_form(form, name: str, epochs: int) -> None:
    form.locator("#clusterlab-job-name").fill(name)
    form.locator("#clusterlab-job-project").fill(PROJECT)
    form.locator("#root_epochs").fill(str(epochs))
    form.locator("#root_image_size").fill("16")


def test_datasets_inputs_and_projects_in_a_browser(lab, chromium):
    started = time.monotonic()
    context, page = new_page(chromium)
    steps = Steps(page, SHOTS)
    try:
        open_lab(page, lab)

        # ----- the Datasets panel: own and shared, each version's facts --------------------------
        show_datasets_panel(page)
        shapes, houses = dataset_card(page, "shapes"), dataset_card(page, "houses")
        shapes.wait_for()
        assert shapes.get_attribute("data-shared") == "false" and houses.get_attribute("data-shared") == "true"
        assert houses.locator(".jp-clusterlab-shared").inner_text() == "shared"
        assert shapes.locator(".jp-clusterlab-shared").count() == 0
        versions = shapes.locator(".jp-clusterlab-version").evaluate_all("v => v.map(e => e.dataset.version)")
        assert versions == ["2", "1"], versions  # newest first
        v1, v2 = (lab.call("GET", f"datasets/shapes/{n}").json() for n in (1, 2))
        assert v2["files"] == v1["files"] + 1
        summary = version_row(page, "shapes", 2).locator(".jp-clusterlab-version-summary").inner_text()
        assert re.fullmatch(rf"v2 · [\d.]+ (kB|MB) · {v2['files']:,} files", summary), summary
        who = version_row(page, "shapes", 2).locator(".jp-clusterlab-version-who").inner_text()
        assert who.startswith(f"{v2['creator']} · 20") and who.endswith("latest"), who
        assert "Circles, squares and triangles" in shapes.inner_text()
        panel = page.locator(".jp-clusterlab-datasets-panel")
        assert panel.bounding_box()["width"] < 320, "the sidebar is not at its default width"
        assert fits(panel) and fits(shapes)
        steps.shot("datasets-panel")

        # ----- a version's preview: its images, fetched with the server's auth -----------------------
        detail = open_version(page, "shapes", 1)
        images = detail.locator(".jp-clusterlab-preview-images")
        images.wait_for()
        page.wait_for_function(
            "document.querySelectorAll('.jp-clusterlab-preview-images img').length === 6 && [...document"
            ".querySelectorAll('.jp-clusterlab-preview-images img')].every(i => i.complete && i.naturalWidth > 0)")
        assert images_loaded(images) == 6
        assert images.locator("img").first.get_attribute("src").startswith("blob:")
        assert detail.locator(".jp-clusterlab-used-by").inner_text() == "No job has used it yet."
        assert detail.locator("code").first.inner_text() == "shapes:1"
        assert detail.locator("[data-action=delete-version]").is_visible()
        assert fits(panel) and fits(detail)
        check_accessibility(page, "datasets-panel", [".jp-clusterlab-datasets-panel"], steps)
        steps.shot("dataset-preview-images")
        # a shared table: its first rows, and no delete
        detail = open_version(page, "houses", 1)
        table = detail.locator(".jp-clusterlab-preview-table")
        table.wait_for()
        assert "houses.csv" in table.locator("figcaption").inner_text()
        assert len(table.locator("thead th").all_inner_texts()) >= 3
        assert 1 <= table.locator("tbody tr").count() <= 5
        assert detail.locator("[data-action=delete-version]").count() == 0
        assert "read only" in detail.inner_text()
        assert version_row(page, "shapes", 1).locator(".jp-clusterlab-version-detail").count() == 0  # one at a time
        assert fits(panel)
        steps.shot("dataset-preview-table")

        # ----- "Make a dataset from this folder" in the file browser ------------------------------
        page.locator(".jp-SideBar [data-id=filebrowser]").click()
        listing = page.locator(".jp-FileBrowser .jp-DirListing-content").first
        folder_item(page, listing, "demo").dblclick()
        # a folder with a link out of it: the server's refusal goes beside the folder
        folder_item(page, listing, "linked").click(button="right")
        page.locator(".lm-Menu-item").filter(has_text="Make a dataset from this folder").click()
        dialog = page.locator(".jp-clusterlab-dataset-dialog")
        assert dialog.locator("#clusterlab-dataset-name").input_value() == "linked"
        dialog.locator(".jp-mod-accept").click()
        refusal = dialog.locator("[data-field=folder] .jp-clusterlab-error")
        refusal.wait_for()
        assert "passwords" in refusal.inner_text(), refusal.inner_text()
        steps.shot("dataset-dialog-folder-refused")
        dialog.locator(".jp-mod-reject").click()
        dialog.wait_for(state="detached")
        assert lab.call("GET", "datasets/linked").status_code == 404
        # the one to make: its name comes from the folder's, made to fit the rule
        folder = folder_item(page, listing, "shapes-detection")
        folder.wait_for()
        folder.click(button="right")
        page.locator(".lm-Menu-item").filter(has_text="Make a dataset from this folder").click()
        dialog = page.locator(".jp-clusterlab-dataset-dialog")
        dialog.wait_for()
        name = dialog.locator("#clusterlab-dataset-name")
        assert name.input_value() == "shapes_detection"  # the folder's name, made to fit the rule
        assert dialog.locator(".jp-clusterlab-dataset-folder").inner_text() == "demo/shapes-detection"
        # a name of the site's: the server refuses, beside the name
        name.fill("houses")
        dialog.locator(".jp-mod-accept").click()
        refusal = dialog.locator("[data-field=name] .jp-clusterlab-error")
        refusal.wait_for()
        assert "houses" in refusal.inner_text(), refusal.inner_text()
        assert name.get_attribute("aria-invalid") == "true"
        # ... and one that breaks the rule, before the server is asked
        name.fill("boxes and labels")
        dialog.locator(".jp-mod-accept").click()
        assert "letters, digits and underscores" in dialog.locator("[data-field=name] .jp-clusterlab-error").inner_text()
        name.fill("boxes")
        dialog.locator("#clusterlab-dataset-description").fill("Shapes with their boxes (YOLO labels)")
        dialog.locator("#clusterlab-dataset-project").fill(PROJECT)
        check_accessibility(page, "dataset-dialog", [".jp-clusterlab-dataset-dialog .jp-Dialog-content"], steps)
        steps.shot("dataset-dialog")
        dialog.locator(".jp-mod-accept").click()
        dialog.wait_for(state="detached")
        # it opens in the Datasets panel, selected
        boxes = dataset_card(page, "boxes")
        boxes.wait_for()
        assert version_row(page, "boxes", 1).locator(".jp-clusterlab-version-button").get_attribute(
            "aria-expanded") == "true"
        assert "project vision" in boxes.inner_text()
        made = lab.call("GET", "datasets/boxes/1").json()
        assert made["source"] == "demo/shapes-detection" and made["project"] == PROJECT
        page.locator(".jp-Notification-Toast-success").filter(has_text="Made dataset boxes version 1").wait_for()
        steps.shot("dataset-made")

        # ----- the project filter -------------------------------------------------------------------
        project = page.locator("#clusterlab-datasets-project")
        assert {"default", PROJECT} <= set(choices(project))
        project.select_option(PROJECT)
        shapes.wait_for(state="detached")
        assert page.locator(".jp-clusterlab-dataset").evaluate_all("d => d.map(e => e.dataset.dataset)") == ["boxes"]
        project.select_option("")
        shapes.wait_for()

        # ----- the dataset picker in the template form ------------------------------------------------
        open_form(page, TRAIN)
        form = page.locator(".jp-clusterlab-form").last
        picker = form.locator(".jp-clusterlab-picker[data-picker=dataset]")
        choice = picker.locator("#root_dataset-choice")
        page.wait_for_function("document.querySelectorAll('#root_dataset-choice option[value=\"shapes:1\"]').length")
        offered = choices(choice)
        assert {"shapes", "shapes:2", "shapes:1", "houses", "houses:1", "boxes:1"} <= set(offered), offered
        assert offered.index("shapes:2") < offered.index("shapes:1")
        # the default, a plain path, stays as it is
        assert form.locator("#root_dataset").input_value() == "demo/shapes"
        assert picker.locator(".jp-clusterlab-picker-meaning").inner_text() == "A path in your workspace."
        choice.select_option("shapes:1")
        assert form.locator("#root_dataset").input_value() == "shapes:1"
        assert f"{v1['files']:,} files" in picker.locator(".jp-clusterlab-picker-meaning").inner_text()
        fill_train_form(form, "browser_first", 1)
        picker.scroll_into_view_if_needed()
        check_accessibility(page, "template-form-pickers", [".jp-clusterlab-form"], steps)
        steps.shot("form-dataset-picker")
        form.locator(".jp-clusterlab-submit").click()
        first = submitted_job(form, "browser_first")

        # ----- its card lists the input -------------------------------------------------------------
        show_jobs_panel(page)
        assert watch_job(page, first, FINAL)[-1][0] == "completed", lab.call("GET", f"jobs/{first}/log").text[-3000:]
        card = job_card(page, first)
        item = card.locator(".jp-clusterlab-input")
        assert item.get_attribute("data-input") == "shapes:1"
        assert item.locator("button").inner_text().replace("\n", "") == "shapes:1"
        assert item.locator(".jp-clusterlab-digest").inner_text() == v1["digest"].removeprefix("sha256:")[:8]
        assert card.locator(".jp-clusterlab-job-project").inner_text().replace("\n", "") == f"project {PROJECT}"
        recorded = lab.call("GET", f"jobs/{first}").json()
        assert recorded["params"]["dataset"] == "shapes:1" and recorded["project"] == PROJECT
        assert [(i["dataset"], i["version"], i["as"]) for i in recorded["inputs"]] == [("shapes", 1, "dataset")]
        assert fits(card) and fits(page.locator(".jp-clusterlab-jobs-panel"))
        steps.shot("job-card-input")
        # the input leads to its version in the Datasets panel
        item.locator("button").click()
        page.locator(".jp-clusterlab-datasets").wait_for(state="visible")
        detail = version_row(page, "shapes", 1).locator(".jp-clusterlab-version-detail")
        detail.wait_for()
        used = detail.locator(".jp-clusterlab-used-by li")
        used.first.wait_for()
        assert used.get_attribute("data-job-id") == first
        assert "browser_first" in used.inner_text()

        # ----- a second job reads the first one's output, through the job-output picker ----------------
        page.locator(".lm-TabBar-tab").filter(has_text=TRAIN).click()
        weights = form.locator("#root_weights-choice")
        weights.focus()  # the picker asks again for the ended jobs
        page.wait_for_function(f"document.querySelectorAll('#root_weights-choice option[value=\"job:{first}\"]').length",
                               timeout=15_000)
        assert choices(weights)[0] == f"job:{first}"  # newest first
        weights.select_option(f"job:{first}")
        assert form.locator("#root_weights").input_value() == f"job:{first}"
        assert "The output of job browser_first (completed)" in form.locator(
            ".jp-clusterlab-picker[data-picker=job-output] .jp-clusterlab-picker-meaning").inner_text()
        form.locator("#root_dataset").fill("shapes")  # typed: the latest, pinned at submit
        assert "latest version of shapes (now v2)" in form.locator(
            ".jp-clusterlab-picker[data-picker=dataset] .jp-clusterlab-picker-meaning").inner_text()
        fill_train_form(form, "browser_second", 500)  # long: it still runs when its dataset is deleted
        form.locator(".jp-clusterlab-picker[data-picker=job-output]").scroll_into_view_if_needed()
        steps.shot("form-job-output-picker")
        form.locator(".jp-clusterlab-submit").click()
        second = submitted_job(form, "browser_second")
        show_jobs_panel(page)
        card2 = job_card(page, second)
        card2.wait_for()
        card2.locator(".jp-clusterlab-input").nth(1).wait_for()
        inputs = card2.locator(".jp-clusterlab-input").evaluate_all("i => i.map(e => e.dataset.input)")
        assert sorted(inputs) == sorted(["shapes:2", f"job:{first}"]), inputs
        job_input = card2.locator(f".jp-clusterlab-input[data-input='job:{first}']")
        assert job_input.inner_text().replace("\n", "").startswith("in: weights ← job browser_first")
        assert fits(card2)
        steps.shot("job-card-inputs")
        job_input.locator("button").click()  # leads to the first job's card
        page.wait_for_function(f"document.querySelector(\".jp-clusterlab-job[data-job-id='{first}']\")"
                               ".classList.contains('jp-mod-highlight')", timeout=5_000)

        # ----- delete: refused while a job reads it, in words; done once it ended ----------------------
        watch_job(page, second, {"running", *FINAL})
        show_datasets_panel(page)
        detail = open_version(page, "shapes", 2)
        detail.locator(f".jp-clusterlab-used-by li[data-job-id='{second}']").wait_for()
        detail.locator("[data-action=delete-version]").click()
        page.locator(".jp-Dialog .jp-mod-warn").click()
        refusal = detail.locator(".jp-clusterlab-delete-error")
        refusal.wait_for()
        assert second in refusal.inner_text(), refusal.inner_text()
        assert version_row(page, "shapes", 2).count() == 1
        assert fits(panel)
        steps.shot("delete-refused")
        lab.call("DELETE", f"jobs/{second}")
        show_jobs_panel(page)
        assert watch_job(page, second, FINAL, timeout=60)[-1][0] == "cancelled"

        # ----- the Jobs panel's project filter, and the project page --------------------------------
        filter_ = page.locator("#clusterlab-jobs-project")
        filter_.select_option("default")
        job_card(page, first).wait_for(state="detached")
        filter_.select_option(PROJECT)
        job_card(page, first).wait_for()
        listed = page.locator(".jp-clusterlab-jobs .jp-clusterlab-job").evaluate_all("j => j.map(e => e.dataset.jobId)")
        assert sorted(listed) == sorted([first, second]), listed
        steps.shot("jobs-project-filter")
        page.locator(".jp-clusterlab-jobs [data-action=open-project]").click()
        project_page = page.locator(f".jp-clusterlab-project-page[data-project={PROJECT}]")
        project_page.wait_for()
        row1 = project_page.locator(f".jp-clusterlab-project-job[data-job-id='{first}']")
        row2 = project_page.locator(f".jp-clusterlab-project-job[data-job-id='{second}']")
        row1.wait_for()
        # oldest first: the first job's output went to the second, which read it
        order = project_page.locator(".jp-clusterlab-project-job").evaluate_all("r => r.map(e => e.dataset.jobId)")
        assert order == [first, second], order
        assert row1.locator(".jp-clusterlab-project-used-by").get_attribute("data-used-by") == second
        assert "browser_second" in row1.locator(".jp-clusterlab-project-used-by").inner_text()
        assert row1.locator(".jp-clusterlab-input").get_attribute("data-input") == "shapes:1"
        assert row2.locator(f".jp-clusterlab-input[data-input='job:{first}']").count() == 1
        assert project_page.locator(".jp-clusterlab-project-datasets [data-dataset=boxes]").count() == 1
        row2.locator(f".jp-clusterlab-input[data-input='job:{first}'] button").click()  # to its row on the page
        page.wait_for_function(f"document.querySelector(\".jp-clusterlab-project-job[data-job-id='{first}']\")"
                               ".classList.contains('jp-mod-highlight')", timeout=5_000)
        check_accessibility(page, "project-page", [".jp-clusterlab-project-panel"], steps)
        steps.shot("project-page")

        # the Experiments panel has the filter too
        show_sidebar_panel(page, "clusterlab-experiments", ".jp-clusterlab-experiments")
        assert PROJECT in choices(page.locator("#clusterlab-experiments-project"))

        # ----- the search form: the picker adds versions to the searched values -----------------------
        page.locator(".lm-TabBar-tab").filter(has_text=TRAIN).click()
        form.locator("[data-action=search]").click()
        form.locator("#clusterlab-search-dataset-mode").select_option("values")
        add = form.locator("#clusterlab-search-dataset-add")
        add.select_option("shapes:1")
        add.select_option("shapes:2")
        assert form.locator("#clusterlab-search-dataset-values").input_value() == "shapes:1, shapes:2"
        assert "shapes:1" not in choices(add)  # each once
        form.locator(".jp-clusterlab-search-row[data-search-param=dataset]").scroll_into_view_if_needed()
        check_accessibility(page, "search-form-pickers", [".jp-clusterlab-form"], steps)
        steps.shot("search-form-picker")

        # ----- the version no job runs on any more goes -------------------------------------------------
        show_datasets_panel(page)
        detail = open_version(page, "shapes", 2)
        detail.locator("[data-action=delete-version]").click()
        page.locator(".jp-Dialog .jp-mod-warn").click()
        version_row(page, "shapes", 2).wait_for(state="detached")
        assert lab.call("GET", "datasets/shapes/2").status_code == 404
        steps.shot("version-deleted")
        print(f"\nthe datasets browser test took {time.monotonic() - started:.0f} s")
    finally:
        steps.shot("last")
        context.close()
