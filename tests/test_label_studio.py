"""Label Studio per user: the real Label Studio (its own virtual environment), started by LabelStudio, labelled
through its REST API as the browser's clicks do, and its page through a real ``jupyter server``'s proxy.

One Label Studio serves the whole module: its first start copies the template database that ``make setup``
made (about 3 s; without one it runs its migrations, 30-70 s). The last tests restart it (a few seconds)
with a short idle timeout and on another port.
"""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import stat
import time
from pathlib import Path

import psutil
import pytest
import requests
from browser_helpers import chromium, new_page  # noqa: F401 (a fixture)
from jupyter_server_process import JupyterServer
from label_studio_helpers import TEMPLATE, ConnectionRecorder, annotate, make_images, need_label_studio, need_template

from clusterlab_server.studio.label_studio import LabelStudio, LabelStudioError, label_config, pixel_box
from clusterlab_server.studio.label_studio_launch import TEMPLATE_ROWS, seed_database, template_refusal

TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def outside():
    """Every request Label Studio's Python tries towards the internet comes here (see ConnectionRecorder)."""
    recorder = ConnectionRecorder()
    yield recorder
    recorder.close()


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("label-studio")


@pytest.fixture(scope="module")
def studio(root, outside):
    need_label_studio()
    ls = LabelStudio(root / "home", root / "documents", base_url="/", idle_timeout=600, start_timeout=240)
    (root / "documents").mkdir()
    started = time.monotonic()
    with outside.watching():
        ls.ensure_running()
    TIMINGS["first start"] = time.monotonic() - started
    print(f"\nLabel Studio's first start: {TIMINGS['first start']:.1f} s")
    yield ls
    ls.stop()


@pytest.fixture(scope="module")
def server(root):
    """A real jupyter server (with jupyter-server-proxy) at base URL /, as the studio fixture's."""
    (root / "jupyter").mkdir()
    jupyter = JupyterServer(root / "jupyter").start()
    yield jupyter
    jupyter.stop()


def classification(studio: LabelStudio, labelling_id: str = "cls1", count: int = 3) -> dict:
    images = make_images(studio.document_root, labelling_id, count)
    return {"id": labelling_id, "name": "Cats and dogs", "kind": "classification", "classes": ["cat", "dog"],
            "images": images}


def detection(studio: LabelStudio, labelling_id: str = "det1", count: int = 3) -> dict:
    images = make_images(studio.document_root, labelling_id, count, size=(80, 50))
    return {"id": labelling_id, "name": "Boxes", "kind": "detection", "classes": ["car", "person"], "images": images}


# ----- plain logic -------------------------------------------------------------------------------------------


def test_label_configs_and_boxes():
    assert '<Choice value="a &amp; b"/>' in label_config("classification", ["a & b", "c"])
    assert '<RectangleLabels name="box" toName="image">' in label_config("detection", ["car"])
    assert pixel_box({"x": 10, "y": 20, "width": 50, "height": 25}, 200, 100) == [20, 20, 120, 45]


def test_a_labelling_is_checked(tmp_path):
    ls = LabelStudio(tmp_path / "home", tmp_path)
    good = {"id": "x", "name": "x", "kind": "classification", "classes": ["a"], "images": ["x/1.png"]}
    for bad in ({"kind": "segmentation"}, {"classes": []}, {"classes": ["a", "a"]}, {"images": ["../x.png"]},
                {"images": ["/etc/x.png"]}, {"images": ["top-level.png"]}):
        with pytest.raises(ValueError):
            ls.ensure_project({**good, **bad})


def test_a_first_start_copies_the_template_only_when_it_fits(tmp_path):
    """Without a template of this Label Studio version Label Studio migrates (the launcher's decision)."""
    template, database = tmp_path / "template.sqlite3", tmp_path / "home" / "data" / "label_studio.sqlite3"
    assert "no template" in template_refusal(template, "1.23.2")
    template.write_bytes(b"migrated")
    assert "no template.sqlite3.version" in template_refusal(template, "1.23.2")
    (tmp_path / "template.sqlite3.version").write_text("1.22.0\n")
    assert "1.22.0" in template_refusal(template, "1.23.2")
    assert not seed_database(database, template, "1.23.2") and not database.parent.exists()
    (tmp_path / "template.sqlite3.version").write_text("1.23.2\n")
    assert template_refusal(template, "1.23.2") is None
    old = os.umask(0)
    try:
        assert seed_database(database, template, "1.23.2")
    finally:
        os.umask(old)
    assert database.read_bytes() == b"migrated" and stat.S_IMODE(database.stat().st_mode) == 0o600
    assert not database.with_name("label_studio.sqlite3.part").exists()
    database.write_bytes(b"the user's own")
    assert not seed_database(database, template, "1.23.2") and database.read_bytes() == b"the user's own"


# ----- the real Label Studio ---------------------------------------------------------------------------------


def test_its_state_is_private_and_its_secrets_are_not_on_its_command_line(studio):
    state = studio._state()
    assert stat.S_IMODE(studio.home.stat().st_mode) == 0o700
    assert stat.S_IMODE(studio.state_path.stat().st_mode) == 0o600
    process = psutil.Process(state["pid"])
    command_line = " ".join(process.cmdline())
    assert state["token"] not in command_line and state["prefix"] not in command_line
    assert all(state["token"] not in v and state["prefix"] not in v for v in process.environ().values())
    database = studio.home / "data" / "label_studio.sqlite3"
    assert stat.S_IMODE(database.stat().st_mode) & 0o077 == 0


def test_its_first_start_got_a_private_copy_of_the_template_which_holds_no_one(studio):
    need_template()
    assert f"its database copied from {TEMPLATE}" in studio.log_path.read_text()
    database = studio.home / "data" / "label_studio.sqlite3"
    own, shared = database.lstat(), TEMPLATE.stat()
    assert stat.S_ISREG(own.st_mode) and own.st_nlink == 1 and own.st_ino != shared.st_ino  # a copy, not a link
    assert own.st_uid == os.getuid() and stat.S_IMODE(own.st_mode) == 0o600
    assert studio.ensure_project(classification(studio, "from-template", count=1))
    assert stat.S_IMODE(shared.st_mode) == 0o444
    assert TEMPLATE.with_name(TEMPLATE.name + ".version").read_text().strip() == "1.23.2"
    template = sqlite3.connect(f"file:{TEMPLATE}?mode=ro", uri=True)
    try:
        tables = [t for (t,) in template.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        filled = {t for t in tables if template.execute(f'SELECT 1 FROM "{t}" LIMIT 1').fetchone()}
    finally:
        template.close()
    assert filled <= TEMPLATE_ROWS and "django_migrations" in filled  # migrated; no user, token, project


def test_classification(studio):
    labelling = classification(studio)
    project_id = studio.ensure_project(labelling)
    assert studio.ensure_project(labelling) == project_id  # once
    assert len(studio.tasks(project_id)) == 3
    assert studio.annotations(project_id) == {}
    first, second, third = labelling["images"]
    annotate(studio, project_id, {first: "cat", second: "dog", third: None})  # the third skipped
    assert studio.annotations(project_id) == {first: "cat", second: "dog"}
    time.sleep(0.01)
    annotate(studio, project_id, {second: "cat"})  # changed its mind: the latest counts
    assert studio.annotations(project_id) == {first: "cat", second: "cat"}
    # new pictures in the labelling become new tasks of the same project
    labelling = classification(studio, count=4)
    assert studio.ensure_project(labelling) == project_id
    assert sorted(t["data"]["path"] for t in studio.tasks(project_id)) == labelling["images"]


def test_detection_boxes_in_pixels(studio):
    labelling = detection(studio)
    project_id = studio.ensure_project(labelling)
    project = studio.api("GET", f"/api/projects/{project_id}/")
    assert "<RectangleLabels" in project["label_config"] and '<Label value="person"/>' in project["label_config"]
    first, second, _ = labelling["images"]
    boxes = [{"class": "car", "box": [8.0, 5.0, 40.0, 30.0]}, {"class": "person", "box": [50.5, 10.0, 79.0, 49.0]}]
    annotate(studio, project_id, {first: boxes, second: []})  # the second: labelled, nothing in it
    labels = studio.annotations(project_id)
    assert set(labels) == {first, second} and labels[second] == []
    assert [b["class"] for b in labels[first]] == ["car", "person"]
    for got, want in zip(labels[first], boxes):
        assert got["box"] == pytest.approx(want["box"])


def test_its_pictures_are_served_from_the_document_root_only(studio):
    labelling = classification(studio)
    project_id = studio.ensure_project(labelling)
    task = studio.tasks(project_id)[0]
    state = studio._state()
    url = f"http://127.0.0.1:{state['port']}{task['data']['image']}"
    headers = {"Authorization": f"Token {state['token']}"}
    picture = requests.get(url, headers=headers, timeout=10)
    assert picture.status_code == 200 and picture.content == (studio.document_root / task["data"]["path"]).read_bytes()
    (studio.document_root.parent / "outside.png").write_bytes(picture.content)
    outside = requests.get(re.sub(r"\?d=.*", "?d=../outside.png", url), headers=headers, timeout=10)
    assert outside.status_code >= 400 and outside.content != picture.content  # (Django's safe_join refuses it)


def test_a_second_object_on_the_same_home_shares_the_process(studio):
    pid = studio._state()["pid"]
    cli = LabelStudio(studio.home, studio.document_root, base_url="/")
    assert cli.status()["running"] and cli.status()["port"] == studio.status()["port"]
    cli.ensure_running()
    assert cli._state()["pid"] == pid
    assert cli.ensure_project(classification(studio)) == studio.ensure_project(classification(studio))


def test_the_page_through_the_jupyter_server_proxy(studio, server):
    project_id = studio.ensure_project(classification(studio))
    path = studio.page_url(project_id)
    port, prefix = studio._state()["port"], studio._state()["prefix"]
    assert path == f"/proxy/absolute/{port}/{prefix}/projects/{project_id}/data?labeling=1"
    browser = requests.Session()
    browser.headers.update(server.headers)
    page = browser.get(f"{server.url}{path}", timeout=30)
    assert page.status_code == 200, page.text[:500]
    # Label Studio's app, logged in, not its login page
    assert "react-app/main.js" in page.text and 'name="password"' not in page.text
    assert "/user/login" not in page.url
    # every asset of the page is Label Studio's own, under the prefix, through the proxy: nothing from outside
    assert not re.findall(r"(?:src|href)=\"(?:https?:)?//", page.text)
    assets = re.findall(r"(?:src|href)=\"([^\"]+)\"", page.text)
    assert assets and all(a.startswith(f"/proxy/absolute/{port}/{prefix}/") for a in assets)
    for asset in assets:
        assert browser.get(f"{server.url}{asset}", timeout=30).status_code == 200, asset
    # the page's own API calls (its session, not a token) and its pictures
    who = browser.get(f"{server.url}/proxy/absolute/{port}/{prefix}/api/current-user/whoami", timeout=30)
    assert who.status_code == 200 and who.json()["email"].endswith("@localhost")
    task = studio.tasks(project_id)[0]
    assert browser.get(f"{server.url}{task['data']['image']}", timeout=30).status_code == 200
    # without the prefix, or with another: 404; without the server's token: no entry
    for wrong in (f"/proxy/absolute/{port}/projects/{project_id}/data", f"/proxy/absolute/{port}/",
                  f"/proxy/absolute/{port}/{'0' * 32}/projects/", f"/proxy/{port}/{prefix}/projects/"):
        assert requests.get(f"{server.url}{wrong}", headers=server.headers, timeout=30).status_code == 404, wrong
    stranger = requests.get(f"{server.url}{path}", timeout=30, allow_redirects=False)
    assert stranger.status_code in (302, 403), stranger.status_code


def test_labelling_in_the_browser_through_the_proxy(studio, server, chromium):
    """Debian's Chromium on the page the panel opens: Label Studio's editor on the first picture; a click on a
    class and on Submit label it. Every request of the page goes to the jupyter server, and none fails."""
    labelling = classification(studio, "browser1", count=2)
    project_id = studio.ensure_project(labelling)
    context, page = new_page(chromium, extra_http_headers=server.headers)
    requested, failed = [], []
    page.on("request", lambda request: requested.append(request.url))
    page.on("response", lambda response: response.status >= 400 and failed.append((response.status, response.url)))
    try:
        page.goto(f"{server.url}{studio.page_url(project_id)}")
        page.locator(".lsf-choice__checkbox input[name='dog']").check()  # the editor's class of this picture
        page.get_by_role("button", name="Submit current annotation").click()
        deadline = time.monotonic() + 20
        while not (labels := studio.annotations(project_id)) and time.monotonic() < deadline:
            time.sleep(0.25)
        assert list(labels.values()) == ["dog"] and set(labels) <= set(labelling["images"])
        page.screenshot(path=str(studio.home.parent / "label-studio-browser.png"))
    finally:
        context.close()
    here = (server.url + "/", "blob:" + server.url + "/", "data:")  # (its picture, once fetched, is a blob)
    assert [url for url in requested if not url.startswith(here)] == []
    assert failed == []
    assert any("/data/local-files/?d=browser1" in url for url in requested)  # its picture, through the proxy


def test_no_request_left_for_the_internet(studio, outside):
    """Everything so far (its start, migrations, pages, API) asked nothing of the outside world."""
    studio.api("GET", "/api/version")
    assert outside.seen == []


def test_a_restart_on_another_port_moves_the_pictures_urls_and_it_stops_when_idle(studio, outside):
    project_id = studio.ensure_project(classification(studio))
    old = studio._state()
    studio.stop()
    assert not studio.status()["running"] and not psutil.pid_exists(old["pid"])
    with socket.socket() as taken:  # another program on its port meanwhile
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past its connections in TIME_WAIT
        taken.bind(("127.0.0.1", old["port"]))
        taken.listen()
        idle = LabelStudio(studio.home, studio.document_root, base_url="/", idle_timeout=4)
        started = time.monotonic()
        with outside.watching():
            idle.ensure_running()
        TIMINGS["later start"] = time.monotonic() - started
        print(f"\nLabel Studio's later start: {TIMINGS['later start']:.1f} s")
    new = idle._state()
    assert new["port"] != old["port"] and new["prefix"] == old["prefix"] and new["token"] == old["token"]
    task = idle.tasks(project_id)[0]
    assert task["data"]["image"].startswith(f"{new['mount']}/data/local-files/?d=")
    assert requests.get(f"http://127.0.0.1:{new['port']}{task['data']['image']}", timeout=10,
                        headers={"Authorization": f"Token {new['token']}"}).status_code == 200
    assert idle.annotations(project_id)  # what was labelled before is still there
    # no request for 4 s: it ends by itself
    deadline = time.monotonic() + 30
    while idle.status()["running"] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not idle.status()["running"], "Label Studio did not stop when idle"
    assert "no request for 4 s" in idle.log_path.read_text()
    # a call starts it again, on its port of before
    with outside.watching():
        assert idle.annotations(project_id) and idle._state()["port"] == new["port"]
    idle.stop()
    assert outside.seen == []


def test_a_missing_label_studio_says_how_to_get_it(tmp_path):
    ls = LabelStudio(tmp_path / "home", tmp_path, python=tmp_path / "no-python")
    with pytest.raises(LabelStudioError, match="make setup"):
        ls.ensure_running()
