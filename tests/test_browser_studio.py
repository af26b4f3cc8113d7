"""The AI Studio page and the labelling panel, in a real browser.

Debian's Chromium driven by Playwright against a real JupyterLab (a ``jupyter server`` with the
clusterlab extension, tests/jupyter_server_process.py, local backend) and the user's real Label
Studio (its own virtual environment, started by the server when a labelling is opened), on generated
shape pictures in no class folders:

"Open AI Studio" in the launcher -> the empty page -> "New labelling…": a folder that is not there is
refused beside the Images box, then the labelling is made and its card shows six steps, Label first ->
"Open labelling": a "Label: <name>" panel whose frame shows Label Studio's own editor (the classes
to choose from, its Submit button) -> pictures labelled as the editor's Submit does (Label Studio's API): the
card counts them, Label is done and "Export labels…" is offered -> the export dialog makes a dataset
version (its link on the card) -> "Train a grid" starts an experiment, Train runs, then is done ->
"Validate…" offers the trials, the best first -> the validation's "Report" opens report.md in
JupyterLab -> "Register…" makes model version 1 -> "Publish…" refuses a repository that is no git
URL beside its box, then pushes to a local bare repository: every step done. The page also reads in a
narrow main area (the steps one under the other).

axe-core checks the page, the new-labelling dialog and the validate dialog against WCAG 2.1 AA.
Screenshots: test-artifacts/browser/studio/ (git-ignored).
"""

from __future__ import annotations

import re
import subprocess

import pytest
from browser_helpers import (  # noqa: F401 (chromium: a fixture)
    REPO, Steps, check_accessibility, chromium, fits, folder_item, new_page, open_lab, refresh_every_second,
)
from jupyter_server_process import JupyterServer
from label_studio_helpers import annotate, need_label_studio
from studio_helpers import label_studio_of, unlabelled_shapes

pytestmark = [pytest.mark.browser]

SHOTS = REPO / "test-artifacts" / "browser" / "studio"
NAME = "shapes_studio"
CLASSES = ["circle", "square", "triangle"]
STEPS = ["label", "export", "train", "validate", "register", "publish"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab (refreshing every second) with unlabelled shape pictures in its workspace: (server, truth)."""
    need_label_studio()
    server = JupyterServer(tmp_path_factory.mktemp("browser-studio"), poll_interval=0.5)
    # the workspace is the home, as under the hub: the jobs' folders (a validation's report) are in it
    server.workspace = server.root
    server.start()
    try:
        truth = unlabelled_shapes(server.workspace, per_class=4)
        refresh_every_second(server)
        yield server, truth
    finally:
        server.close()


def chain_card(page):
    return page.locator(f".jp-clusterlab-studio-chain[data-labelling-name='{NAME}']")


def states(card) -> list[str]:
    return card.locator(".jp-clusterlab-step").evaluate_all("s => s.map(e => e.dataset.state)")


def wait_state(page, step: str, state: str, timeout: float = 60_000) -> None:
    page.locator(f".jp-clusterlab-studio-chain[data-labelling-name='{NAME}'] "
                 f".jp-clusterlab-step[data-step={step}][data-state={state}]").wait_for(timeout=timeout)


def dialog(page, form: str):
    """The studio dialog of ``form`` ("labelling", "export", ...), once it shows."""
    found = page.locator(f".jp-clusterlab-studio-dialog[data-form={form}]")
    found.wait_for()
    # the dialog puts the focus on its first box once drawn: typing before that could land there
    page.wait_for_function("!!document.activeElement?.closest('.jp-Dialog-body')")
    return found


def box(page, form: str, field: str):
    return page.locator(f"#clusterlab-studio-{form}-{field}")


def accept(found) -> None:
    found.locator(".jp-Dialog-footer .jp-mod-accept").click()


def field_error(found, field: str) -> str:
    error = found.locator(f".jp-clusterlab-error[data-field={field}]")
    error.wait_for()
    return error.inner_text()


def test_the_studio_page_and_the_labelling_panel(lab, chromium):
    server, truth = lab
    context, page = new_page(chromium)
    steps = Steps(page, SHOTS)
    try:
        open_lab(page, server)
        tile = page.locator(".jp-LauncherCard[data-category='Accelerated AI']").filter(has_text="Open AI Studio")
        tile.scroll_into_view_if_needed()
        steps.shot("launcher")
        tile.click()
        studio = page.locator(".jp-clusterlab-studio-page")
        studio.locator(".jp-clusterlab-empty").wait_for()
        assert "No labellings yet" in studio.inner_text()
        steps.shot("studio-empty")

        # ----- "New labelling…": a refusal beside its box, then the card ------------------------------
        studio.locator("[data-action=new-labelling]").click()
        found = dialog(page, "labelling")
        box(page, "labelling", "name").fill(NAME)
        box(page, "labelling", "classes").fill(", ".join(CLASSES))
        box(page, "labelling", "images").fill("no_such_folder")
        accept(found)
        assert "no_such_folder" in field_error(found, "images")
        assert box(page, "labelling", "images").get_attribute("aria-invalid") == "true"
        check_accessibility(page, "new-labelling-dialog", [".jp-clusterlab-studio-dialog"], steps)
        steps.shot("new-labelling-refused")
        box(page, "labelling", "images").fill("unlabelled")
        assert found.locator(".jp-clusterlab-error[data-field=images]").count() == 0  # typing clears it
        found.locator(".jp-mod-reject").click()
        found.wait_for(state="detached")
        # the same dialog from the file browser: a folder's context menu fills in its pictures
        listing = page.locator(".jp-FileBrowser .jp-DirListing-content").first
        folder_item(page, listing, "unlabelled").click(button="right")
        page.locator(".lm-Menu-item").filter(has_text="Label the pictures in this folder").click()
        found = dialog(page, "labelling")
        assert box(page, "labelling", "images").input_value() == "unlabelled"
        box(page, "labelling", "name").fill(NAME)
        box(page, "labelling", "classes").fill(", ".join(CLASSES))
        accept(found)
        found.wait_for(state="detached", timeout=60_000)
        card = chain_card(page)
        card.wait_for()
        assert [s.get_attribute("data-step") for s in card.locator(".jp-clusterlab-step").all()] == STEPS
        assert states(card) == ["todo"] * 6
        assert f"0 of {len(truth)} pictures labelled" in card.locator("[data-step=label]").inner_text()
        assert card.locator(".jp-clusterlab-studio-actions .jp-mod-accept").inner_text() == "Open labelling"
        assert fits(card)
        steps.shot("labelling-card")

        # ----- "Open labelling": Label Studio's page in a panel -------------------------------------
        card.locator("[data-action=open-labelling]").click()
        tab = page.locator(".jp-MainAreaWidget.jp-clusterlab-labelling-panel")
        tab.wait_for()
        assert page.locator(".lm-TabBar-tab", has_text=f"Label: {NAME}").is_visible()
        frame = page.frame_locator(".jp-clusterlab-labelling-frame iframe")
        # Label Studio's editor: the picture's classes to choose from, and its Submit
        frame.get_by_role("button", name="Submit").first.wait_for(timeout=180_000)
        steps.shot("label-studio-panel")
        for name in CLASSES:  # "circle" and its key, "[1]"
            assert frame.get_by_text(re.compile(rf"^{name}")).first.is_visible(), name

        # pictures labelled as the editor's Submit does; the card counts them
        labelling = server.call("GET", "studio/labellings").json()["labellings"][0]
        prefix = f"{labelling['id']}/images/"
        paths = sorted(truth)
        ls = label_studio_of(server.root / "jobs")
        annotate(ls, labelling["label_studio_project"], {prefix + p: truth[p] for p in paths[:5]})
        page.locator(".lm-TabBar-tab", has_text="AI Studio").click()
        wait_state(page, "label", "running")
        assert f"5 of {len(truth)}" in card.locator("[data-step=label]").inner_text()
        steps.shot("labelling-under-way")
        annotate(ls, labelling["label_studio_project"], {prefix + p: truth[p] for p in paths[5:]})
        wait_state(page, "label", "done")
        primary = card.locator(".jp-clusterlab-studio-actions .jp-mod-accept")
        assert primary.inner_text() == "Export labels…"

        # ----- export, train -------------------------------------------------------------------------
        primary.click()
        found = dialog(page, "export")
        assert box(page, "export", "dataset").input_value() == NAME
        assert box(page, "export", "val_fraction").input_value() == "0.2"
        box(page, "export", "val_fraction").fill("0.25")
        box(page, "export", "seed").fill("7")
        steps.shot("export-dialog")
        accept(found)
        found.wait_for(state="detached", timeout=60_000)
        wait_state(page, "export", "done")
        link = card.locator("[data-step=export] [data-action=open-dataset]")
        assert link.inner_text() == f"{NAME}:1"
        assert primary.inner_text() == "Train a grid"
        primary.click()
        wait_state(page, "train", "running")
        assert card.locator("[data-step=train] [data-action=open-experiment]").is_visible()
        steps.shot("training")
        wait_state(page, "train", "done", timeout=420_000)
        assert re.search(r"\d+ trials, best \S+ [\d.]+", card.locator("[data-step=train]").inner_text())

        # ----- validate: the trials offered, the best first; its report in JupyterLab ------------------
        assert primary.inner_text() == "Validate…"
        primary.click()
        found = dialog(page, "validate")
        trial = box(page, "validate", "job")
        options = trial.locator("option").all_inner_texts()
        assert len(options) == 2 and "(best)" in options[0], options
        assert trial.input_value() == trial.locator("option").first.get_attribute("value")
        check_accessibility(page, "validate-dialog", [".jp-clusterlab-studio-dialog"], steps)
        steps.shot("validate-dialog")
        accept(found)
        found.wait_for(state="detached", timeout=60_000)
        wait_state(page, "validate", "done", timeout=300_000)
        assert "accuracy" in card.locator("[data-step=validate]").inner_text()
        report = card.locator("[data-step=validate] [data-action=open-report]")
        report.wait_for()
        steps.shot("validated")
        report.click()
        page.locator(".lm-TabBar-tab", has_text="report.md").first.wait_for()
        # rendered, with its pictures (the confusion matrix, the samples)
        rendered = page.locator(".jp-MarkdownViewer .jp-RenderedMarkdown")
        rendered.get_by_text("Confusion matrix").first.wait_for()
        page.wait_for_function("[...document.querySelectorAll('.jp-MarkdownViewer img')].some("
                               "i => i.complete && i.naturalWidth > 0)")
        steps.shot("report-opened")
        page.locator(".lm-TabBar-tab", has_text="AI Studio").click()

        # ----- register, publish -----------------------------------------------------------------------
        assert primary.inner_text() == "Register…"
        primary.click()
        found = dialog(page, "register")
        box(page, "register", "name").fill(f"{NAME}_model")
        accept(found)
        found.wait_for(state="detached", timeout=60_000)
        wait_state(page, "register", "done")
        assert f"{NAME}_model version 1" in card.locator("[data-step=register]").inner_text()
        assert primary.inner_text() == "Publish…"
        primary.click()
        found = dialog(page, "publish")
        assert box(page, "publish", "branch").input_value() == "main"
        box(page, "publish", "repository").fill("ftp://example.org/models")
        accept(found)
        assert field_error(found, "repository")
        steps.shot("publish-refused")
        bare = server.workspace / "models.git"
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
        box(page, "publish", "repository").fill(f"file://{bare}")
        accept(found)
        found.wait_for(state="detached", timeout=120_000)
        wait_state(page, "publish", "done")
        assert states(card) == ["done"] * 6
        assert "Every step is done." in card.inner_text()
        log = subprocess.run(["git", "-C", str(bare), "log", "--oneline", "main"], capture_output=True, text=True)
        assert log.returncode == 0 and log.stdout.strip(), log.stderr
        assert fits(studio)
        check_accessibility(page, "studio-page", [".jp-clusterlab-studio-panel"], steps)
        steps.shot("every-step-done")

        # ----- a narrow main area: the steps one under the other ----------------------------------------
        page.set_viewport_size({"width": 900, "height": 900})
        page.wait_for_function("(() => { const s = document.querySelectorAll('.jp-clusterlab-step'); "
                               "return s.length > 1 && s[1].getBoundingClientRect().top > "
                               "s[0].getBoundingClientRect().bottom - 1; })()")
        assert fits(studio) and fits(card)
        steps.shot("narrow")
    finally:
        context.close()
