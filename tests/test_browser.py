"""The used-by flow in a real browser: Debian's Chromium driven by Playwright
against a real hub on `make run`'s configuration, once on the embedded default
(local processes) and once on the real Slurm.

log in -> pick a size on the spawn form -> JupyterLab -> `clusterlab demo-data
~/demo` typed in a terminal, as the README says -> launcher tile -> form with
defaults -> a bad value shows its message (the browser's check and the server's)
-> submit image-classification-train on the demo data -> the jobs panel shows it
progress and complete, with its charts -> its log -> cancel a second job -> rerun
pre-filled -> the output folder, in a browser of its own (new launchers still
start where the user was) -> an inference job, with a long name, whose card
fits the sidebar and offers no TensorBoard -> TensorBoard with the job's scalars.
And a second user can neither open the first one's TensorBoard nor their jobs.

axe-core checks ClusterLab's own screens (login, sign-up, spawn form, template
form, Jobs panel) against WCAG 2.1 AA on the way; JupyterLab's own violations
are out of scope, and written to axe-jupyterlab.txt beside the screenshots.

Screenshots of each step: test-artifacts/browser/<backend>/ (git-ignored).
"""

from __future__ import annotations

import pwd
import re
import time

import pytest
import requests
from browser_helpers import (  # noqa: F401 (chromium: a fixture)
    Steps, axe_violations, check_accessibility, chromium, field_errors, job_card, open_form, show_jobs_panel, watch_job,
)
from hub import REPO, Hub

pytestmark = [pytest.mark.hub, pytest.mark.browser]

PASSWORD = "a-long-test-password"
USER, OTHER = "erin", "frank"
SLURM_PROFILES = REPO / "tests" / "data" / "slurm-profiles.yaml"
# the size picked on the spawn form, and the one the jobs ask for
SIZE = {"local": "cpu-small", "slurm": "cpu-1"}
# what the form picks first for image-classification-train: its default (gpu-1), unless
# that cannot run (the local server got no GPU), then the first size that can
FORM_DEFAULT_SIZE = {"local": "cpu-small", "slurm": "gpu-1"}
SHOTS = REPO / "test-artifacts" / "browser"
EPOCHS = 8
# a default-style name that is long: template, date, time and a note
LONG_NAME = "image_classification_infer_20261201_195851_on_validation_images"


@pytest.fixture(scope="module", params=["local", "slurm"])
def lab_hub(request, tmp_path_factory):
    """A hub on `make run`'s configuration (the Slurm one: `make slurm`'s), with two users."""
    backend = request.param
    env = {"CLUSTERLAB_POLL_INTERVAL": "1"}
    if backend == "slurm":
        request.getfixturevalue("slurm")
        env.update(CLUSTERLAB_BACKEND="slurm", CLUSTERLAB_PROFILES=str(SLURM_PROFILES),
                   CLUSTERLAB_CREATE_UNIX_USERS="1")
    hub = Hub(tmp_path_factory.mktemp(f"browser-hub-{backend}"), env=env)
    hub.backend = backend
    hub.start()
    hub.tokens = {name: hub.add_user(name, PASSWORD) for name in (USER, OTHER)}
    yield hub
    for name, token in hub.tokens.items():
        cancel_unfinished_jobs(hub, name, token)
    for user in hub.admin_api.get(hub.url + "/hub/api/users").json():
        for server in user["servers"]:
            hub.stop_server(hub.admin_api, user["name"], server)
    hub.stop()


def cancel_unfinished_jobs(hub: Hub, user: str, token: str) -> None:
    jobs = f"{hub.url}/user/{user}/clusterlab/api/jobs"
    try:
        for job in hub.api(token).get(jobs, timeout=10).json()["jobs"]:
            if job["status"] in ("queued", "running"):
                hub.api(token).delete(f"{jobs}/{job['id']}", timeout=30)
    except (requests.RequestException, ValueError, KeyError):
        pass  # the server is not running: its jobs were never started


def log_in(page, hub: Hub, user: str) -> None:
    page.goto(f"{hub.url}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", PASSWORD)
    page.click("#login_submit")


def demo_data_from_a_terminal(page, hub: Hub, user: str) -> None:
    """The README's first step, typed into a JupyterLab terminal: `clusterlab demo-data ~/demo`."""
    done = hub.home_of(user) / "demo" / ".typed-in-a-terminal"
    done.unlink(missing_ok=True)  # from the other backend's run
    page.locator(".jp-LauncherCard[data-category='Other']").filter(has_text="Terminal").click()
    terminal = page.locator(".jp-Terminal").last
    terminal.wait_for()
    page.wait_for_function("document.querySelector('.jp-Terminal .xterm-helper-textarea') !== null")
    time.sleep(1)  # the shell's prompt
    terminal.click()
    page.keyboard.type("clusterlab demo-data ~/demo && touch ~/demo/.typed-in-a-terminal\n")
    deadline = time.monotonic() + 120
    while not done.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert done.exists(), "`clusterlab demo-data ~/demo` did not finish in a JupyterLab terminal"
    assert (hub.home_of(user) / "demo" / "shapes" / "train").is_dir()
    if hub.maps_accounts:  # the terminal runs as the user's own account
        assert done.stat().st_uid == pwd.getpwnam(user).pw_uid


def new_launcher(page):
    """A new Launcher tab, as the "+" button opens it; its folder is where new notebooks and terminals start."""
    page.keyboard.press("Escape")
    page.locator(".lm-DockPanel-tabBar .lm-TabBar-addButton").first.click()
    launcher = page.locator(".jp-Launcher").last
    launcher.wait_for()
    return launcher


def list_jupyterlab_violations(page, steps: "Steps") -> None:
    """JupyterLab's own violations (out of scope), listed for the record beside the screenshots."""
    report = "\n".join(axe_violations(page, ["body"], exclude=[".jp-clusterlab-jobs-panel", ".jp-clusterlab-form"]))
    (steps.folder / "axe-jupyterlab.txt").write_text(report or "no violations\n")


def submit(page, name: str, epochs: int) -> str:
    """Fill in name and epochs, submit, and return the new job's id from the form's answer."""
    form = page.locator(".jp-clusterlab-form").last
    form.locator("#clusterlab-job-name").fill(name)
    form.locator("#root_epochs").fill(str(epochs))
    form.locator(".jp-clusterlab-submit").click()
    done = form.locator(".jp-clusterlab-submitted")
    done.wait_for(timeout=30_000)
    answer = re.fullmatch(rf"Submitted job {name} \((\S+)\): see the Jobs panel\.", done.inner_text())
    assert answer, done.inner_text()
    return answer.group(1)


def test_the_used_by_flow_in_a_browser(lab_hub, chromium):
    hub = lab_hub
    size = SIZE[hub.backend]
    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    steps = Steps(page, SHOTS / hub.backend)
    try:
        # ----- the hub's pages as we ship them: named, and accessible ---------------------
        for where in ("signup", "login"):
            page.goto(f"{hub.url}/hub/{where}")
            assert page.locator("#clusterlab-name").inner_text() == "ClusterLab"
            assert page.title() == "ClusterLab"
            check_accessibility(page, where, ["body"], steps)
        eye = page.locator("#eye")
        assert eye.get_attribute("aria-label") and eye.bounding_box()["width"] >= 24  # not an empty box
        steps.shot("login")

        # ----- log in, choose a size, land in JupyterLab ---------------------------------
        log_in(page, hub, USER)
        page.wait_for_selector("#clusterlab-sizes")
        check_accessibility(page, "spawn-form", ["body"], steps)
        steps.shot("spawn-form")
        page.check(f"#clusterlab-sizes input[name=profile][value={size}]")
        page.locator("#spawn_form [type=submit]").click()
        page.wait_for_url(f"**/user/{USER}/lab**", timeout=180_000)
        # the jobs panel refreshes every second (the setting is read at page load)
        settings = f"{hub.url}/user/{USER}/lab/api/settings/@clusterlab/labextension:plugin"
        answer = hub.api(hub.tokens[USER]).put(settings, json={"raw": '{"refreshInterval": 1}'})
        assert answer.status_code == 204, answer.text
        # a fresh layout: the user's home (and so JupyterLab's saved tabs) outlives the other backend's run
        page.goto(f"{hub.url}/user/{USER}/lab?reset")
        tiles = page.locator(".jp-LauncherCard[data-category='Accelerated AI']")
        tiles.first.wait_for()
        # the tiles say what the templates' ids say: train and infer
        assert {"Image classification (train)", "Image classification (infer)",
                "Object detection (infer)"} <= set(tiles.all_inner_texts())
        assert "no GPU granted" in page.locator(".jp-clusterlab-gpu-status").inner_text()
        steps.shot("launcher")
        demo_data_from_a_terminal(page, hub, USER)
        steps.shot("terminal")
        new_launcher(page)

        # ----- the form: defaults, a bad value, the server's word on a path ------------
        open_form(page, "Image classification (train)")
        form = page.locator(".jp-clusterlab-form").last
        assert form.locator("#root_epochs").input_value() == "10"
        assert form.locator("#root_dataset").input_value() == "demo/shapes"
        assert "Passes over the training images" in form.inner_text()  # help text
        assert "letters, digits and underscores" in form.inner_text()  # the name rule
        assert form.locator(f"[data-profile={FORM_DEFAULT_SIZE[hub.backend]}] input").is_checked()
        name_box = form.locator("#clusterlab-job-name")
        assert name_box.input_value().startswith("image_classification_train_")
        assert name_box.evaluate("e => e.scrollWidth <= e.clientWidth"), "the default job name does not fit its box"
        # our boxes look like the parameters' boxes (a grey one reads as disabled)
        background = "e => getComputedStyle(e).backgroundColor"
        hours, epochs = (form.locator(box).evaluate(background) for box in ("#clusterlab-hours", "#root_epochs"))
        assert hours == epochs, (hours, epochs)
        check_accessibility(page, "template-form", [".jp-clusterlab-form"], steps)
        steps.shot("form-defaults")
        form.locator(f"[data-profile={size}] input").check()
        form.locator("#root_epochs").fill("0")
        page.wait_for_function("document.querySelector('#root_epochs').closest('.form-group')"
                               ".querySelector('.validationErrors').innerText.includes('>= 1')")
        assert "must be >= 1" in field_errors(page, "epochs")
        form.locator(".jp-clusterlab-submit").click()
        assert "Correct the fields" in form.locator(".jp-clusterlab-form-error").inner_text()
        steps.shot("form-bad-value")
        form.locator("#root_epochs").fill(str(EPOCHS))
        form.locator("#root_dataset").fill("demo/no_such_folder")
        form.locator(".jp-clusterlab-submit").click()
        form.locator(".jp-clusterlab-form-error").wait_for()
        assert "does not exist in your workspace" in field_errors(page, "dataset")
        steps.shot("form-server-error")
        form.locator("#root_dataset").fill("demo/shapes")

        # ----- submit, and watch it in the jobs panel -----------------------------------
        train = submit(page, "browser_train", EPOCHS)
        seen = watch_job(page, train, {"completed", "failed", "cancelled"})
        steps.shot("job-completed")
        assert seen[-1] == ("completed", 100, f"epoch {EPOCHS}/{EPOCHS}"), seen
        midway = [s for s in seen if s[0] == "running" and 0 < s[1] < 100]
        assert midway, f"the panel never showed the job part-way: {seen}"
        card = job_card(page, train)
        assert {"loss", "accuracy"} <= set(card.locator("polyline").evaluate_all(
            "lines => lines.map(l => l.dataset.metric)")), "no metrics chart"
        # loss and accuracy on charts of their own, each with ticks on both axes
        for chart, metric in (("loss", "loss"), ("accuracy", "accuracy")):
            plot = card.locator(f"svg[data-chart={chart}]")
            assert plot.locator(f"[data-metric={metric}]").count() == 1
            assert plot.locator("[data-axis=x] text").all_text_contents()[-1] == str(EPOCHS)
            assert len(plot.locator("[data-axis=y] text").all_text_contents()) >= 2
        assert card.locator(".jp-clusterlab-elapsed").inner_text().endswith("s")
        # the size it asked for, as the card says it: name, cores, memory, GPUs
        assert card.locator(".jp-clusterlab-job-size").inner_text().startswith(
            {"local": "CPU small: 1 core · 2 GB · no GPU", "slurm": "One core: 1 core · 1 GB · no GPU"}[hub.backend])

        # ----- the log --------------------------------------------------------------------
        card.locator("[data-action=log]").click()
        log = page.locator(".jp-clusterlab-log").last
        log.locator(".jp-clusterlab-log-status[data-status=completed]").wait_for()
        text = log.locator("pre").inner_text()
        assert "ClusterLab job" in text and "image-classification-train" in text
        assert f"epoch {EPOCHS}" in text.lower(), text[-2000:]
        steps.shot("log")

        # ----- cancel a second job ------------------------------------------------------
        page.locator(".lm-TabBar-tab").filter(has_text="Image classification (train)").click()
        doomed = submit(page, "browser_cancel", 500)
        watch_job(page, doomed, {"queued", "running"})
        job_card(page, doomed).locator("[data-action=cancel]").click()
        seen = watch_job(page, doomed, {"cancelled", "completed", "failed"}, timeout=60)
        assert seen[-1][0] == "cancelled", seen
        assert job_card(page, doomed).locator("[data-action=cancel]").count() == 0
        steps.shot("cancelled")

        # ----- rerun with changed parameters: the form comes pre-filled --------------------
        card.locator("[data-action=rerun]").click()
        rerun = page.locator(".jp-clusterlab-form[data-rerun-of]")
        rerun.wait_for()
        assert "Run again" in rerun.locator(".jp-clusterlab-form-title").inner_text()
        assert rerun.locator("#root_epochs").input_value() == str(EPOCHS)
        assert rerun.locator("#clusterlab-job-name").input_value() == "browser_train_rerun"
        steps.shot("rerun-form")
        again = submit(page, "browser_train_rerun", 1)
        rerun_job = hub.api(hub.tokens[USER]).get(f"{hub.url}/user/{USER}/clusterlab/api/jobs/{again}").json()
        assert rerun_job["rerun_of"] == train and rerun_job["params"]["epochs"] == 1

        # ----- the output folder, in a browser of its own ----------------------------
        card.locator("[data-action=output]").click()
        output = page.locator(".jp-clusterlab-output").last
        output.wait_for()
        page.wait_for_function("[...document.querySelectorAll('.jp-clusterlab-output .jp-DirListing-itemName')]"
                               ".some(e => e.innerText.includes('metrics.jsonl'))")
        assert "model.pt" in output.locator(".jp-DirListing-content").inner_text()
        assert f".clusterlab/jobs/{train}/output" in output.locator(".jp-clusterlab-output-where").inner_text()
        steps.shot("output-folder")
        # ... and the user's own folder is where it was: a new launcher (its notebooks and terminals) starts there
        assert new_launcher(page).locator(".jp-Launcher-cwd").inner_text().strip() in ("", "/")

        # ----- an inference job with a long name: a card that fits, and no TensorBoard -----
        model_file = hub.api(hub.tokens[USER]).get(
            f"{hub.url}/user/{USER}/clusterlab/api/jobs/{train}").json()["output_path"] + "/model.pt"
        answer = hub.api(hub.tokens[USER]).post(f"{hub.url}/user/{USER}/clusterlab/api/jobs", json={
            "template": "image-classification-infer", "name": LONG_NAME, "profile": size,
            "params": {"model": model_file, "input": "demo/shapes/val"}})
        assert answer.status_code == 201, answer.text
        infer = answer.json()["id"]
        show_jobs_panel(page)
        assert watch_job(page, infer, {"completed", "failed", "cancelled"})[-1][0] == "completed"
        infer_card = job_card(page, infer)
        assert infer_card.locator(".jp-clusterlab-job-name").inner_text().replace("\n", "") == LONG_NAME
        assert infer_card.locator(".jp-clusterlab-job-name").evaluate("e => e.scrollWidth <= e.clientWidth")
        assert infer_card.locator("[data-action=tensorboard]").count() == 0  # it wrote no events
        assert card.locator("[data-action=tensorboard]").count() == 1
        panel = page.locator(".jp-clusterlab-jobs-panel").bounding_box()
        assert panel["width"] < 320, f"the sidebar is not at its default width: {panel}"
        for job_id in (infer, train):
            actions = job_card(page, job_id).locator(".jp-clusterlab-job-actions button")
            boxes = [actions.nth(i).bounding_box() for i in range(actions.count())]
            assert len({round(b["y"]) for b in boxes}) == 1, f"the actions of {job_id} wrap: {boxes}"
            assert max(b["x"] + b["width"] for b in boxes) <= panel["x"] + panel["width"]
        for action in ("log", "output", "rerun"):  # icon buttons: each says what it does
            assert infer_card.locator(f"[data-action={action}]").get_attribute("aria-label")
        check_accessibility(page, "jobs-panel", [".jp-clusterlab-jobs-panel"], steps)
        list_jupyterlab_violations(page, steps)
        steps.shot("inference-job")

        # ----- TensorBoard ------------------------------------------------------------------
        show_jobs_panel(page)
        card.locator("[data-action=tensorboard]").click()
        frame = page.locator(".jp-clusterlab-tensorboard iframe").last
        frame.wait_for()
        url = frame.get_attribute("src")
        assert url.startswith(f"/user/{USER}/proxy/"), url
        run = f"browser_train-{train}"
        tags = {}
        deadline = time.monotonic() + 60
        while run not in tags and time.monotonic() < deadline:
            answer = page.request.get(f"{hub.url}{url}data/plugin/scalars/tags")
            assert answer.status == 200, answer.text()
            tags = answer.json()
            time.sleep(0.5)
        assert run in tags, tags
        assert any(tag.startswith("loss") for tag in tags[run]), tags[run]
        # the charts themselves, drawn by TensorBoard in the panel
        board = page.frame_locator(".jp-clusterlab-tensorboard iframe").last
        board.locator("text=/loss/").first.wait_for(timeout=60_000)
        time.sleep(2)  # let the charts draw
        steps.shot("tensorboard")
        hub.tensorboard_url = url  # for the next test: another user tries it

        # ----- several jobs side by side: one TensorBoard over the chosen runs ----------
        show_jobs_panel(page)
        watch_job(page, again, {"completed", "failed", "cancelled"})
        for job_id in (train, again):
            job_card(page, job_id).locator("input[type=checkbox]").check()
        page.locator(".jp-clusterlab-jobs [data-action=compare]").click()
        page.locator(".lm-TabBar-tab").filter(has_text="TensorBoard: browser_train, browser_train_rerun").wait_for()
        url = page.locator(".jp-clusterlab-tensorboard iframe").last.get_attribute("src")
        runs = {f"browser_train-{train}", f"browser_train_rerun-{again}"}
        deadline = time.monotonic() + 60
        while not runs <= set(tags) and time.monotonic() < deadline:
            tags = page.request.get(f"{hub.url}{url}data/plugin/scalars/tags").json()
            time.sleep(0.5)
        assert runs <= set(tags), tags
        hub.tensorboard_url = url

        # ----- the Jobs entry of the command palette ------------------------------------
        page.locator(".jp-SideBar [data-id=filebrowser]").click()
        page.keyboard.press("Control+Shift+C")
        page.locator(".lm-CommandPalette-input").fill("Jobs")
        page.locator(".lm-CommandPalette-item").filter(has_text="Jobs").first.click()
        page.locator(".jp-clusterlab-jobs").wait_for(state="visible")
        steps.shot("jobs-from-palette")
    finally:
        steps.shot("last")
        context.close()


def test_another_user_cannot_open_the_first_users_tensorboard_or_jobs(lab_hub, chromium):
    hub = lab_hub
    owner = hub.api(hub.tokens[USER])
    base = f"{hub.url}/user/{USER}"
    url = getattr(hub, "tensorboard_url", None)
    if url is None:  # the flow test did not get there: start it by the API
        assert owner.post(f"{hub.url}/hub/api/users/{USER}/server", json={"profile": SIZE[hub.backend]}).ok
        hub.wait_ready(USER, timeout=180)
        url = owner.post(f"{base}/clusterlab/api/tensorboard", json={}).json()["url"]
    assert owner.get(f"{hub.url}{url}data/plugin/scalars/tags").status_code == 200

    # frank's token, and frank's browser cookie
    other = hub.api(hub.tokens[OTHER])
    for path in (f"{url}data/plugin/scalars/tags", f"/user/{USER}/clusterlab/api/jobs",
                 f"/user/{USER}/clusterlab/api/tensorboard"):
        answer = other.get(hub.url + path, allow_redirects=False)
        assert answer.status_code in (403, 404), (path, answer.status_code)
        assert "loss" not in answer.text

    context = chromium.new_context(viewport={"width": 1200, "height": 800})
    page = context.new_page()
    try:
        log_in(page, hub, OTHER)
        page.wait_for_selector("#clusterlab-sizes")
        # frank takes a GPU size: his status bar names the GPU his server was granted
        page.check("#clusterlab-sizes input[name=profile][value=gpu-1]")
        page.locator("#spawn_form [type=submit]").click()
        page.wait_for_url(f"**/user/{OTHER}/lab**", timeout=180_000)
        status = page.locator(".jp-clusterlab-gpu-status [data-granted]")
        status.wait_for()
        granted = status.get_attribute("data-granted")
        assert granted in ("0", "1"), granted
        assert f"GPU {granted}" in status.inner_text()
        page.wait_for_selector(".jp-LauncherCard[data-category='Accelerated AI']")
        page.screenshot(path=SHOTS / hub.backend / "98-gpu-status.png")
        for path in (f"{url}data/plugin/scalars/tags", f"/user/{USER}/clusterlab/api/jobs"):
            answer = page.goto(hub.url + path)
            assert answer.status in (403, 404), (path, answer.status, page.url)
            assert "browser_train" not in page.content() and '"loss' not in page.content()
        page.screenshot(path=SHOTS / hub.backend / "99-other-user-refused.png")
    finally:
        context.close()
