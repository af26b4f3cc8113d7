"""One Label Studio per user, behind their own JupyterLab, for labelling a folder of pictures.

Label Studio runs in a virtual environment of its own (``.venv-label-studio``, made by ``make setup``):
its pinned Django, DRF and friends are not ours. This module imports nothing of it; it starts
:mod:`.label_studio_launch` with that environment's python and talks HTTP to it. A first start copies the
migrated, empty database that ``make setup`` left beside that environment (seconds, not its migrations).

Only the owner reaches it, as with TensorBoard (:mod:`..tensorboard`): it listens on 127.0.0.1 and
serves everything under a random secret path prefix that only the owner's API answers give out; the
browser gets it through jupyter-server-proxy's ``<base_url>proxy/absolute/<port>/`` route of the
user's own server, which applies that server's authentication. The ``absolute`` route passes the whole
path on (Label Studio makes its links under it) and leaves Label Studio's redirects alone (the plain
``proxy/<port>/`` route would put its own prefix before them a second time). Label Studio's own login
is replaced by that gate: each browser request is the single local Label Studio user's.

The server and the ``clusterlab`` CLI of the same user share one Label Studio: a state file in
``home`` (0600) records its pid, port, prefix and API token, and a lock file makes starting it a
one-at-a-time affair. It stops by itself after ``idle_timeout`` seconds without a request.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import logging
import os
import re
import secrets
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

import psutil

from ..tensorboard import TensorBoardManager, free_port

REPO = Path(__file__).resolve().parents[3]
PYTHON = REPO / ".venv-label-studio" / "bin" / "python"  # CLUSTERLAB_LABEL_STUDIO_PYTHON elsewhere
LAUNCH = Path(__file__).resolve().with_name("label_studio_launch.py")
STOP_SECONDS = 5
KINDS = ("classification", "detection")
MARK = "ClusterLab labelling "  # a project's description: which labelling it is, should the state file go
PAGE = 100


# straight to 127.0.0.1, whatever HTTP(S)_PROXY a user's terminal sets
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class LabelStudioError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def label_config(kind: str, classes: list[str]) -> str:
    """Label Studio's labelling interface: one choice per picture, or boxes with a class each."""
    if kind == "classification":
        choices = "".join(f"\n    <Choice value={quoteattr(c)}/>" for c in classes)
        return ('<View>\n  <Image name="image" value="$image" zoom="true"/>\n'
                f'  <Choices name="class" toName="image" choice="single" showInLine="true">{choices}\n'
                '  </Choices>\n</View>')
    labels = "".join(f"\n    <Label value={quoteattr(c)}/>" for c in classes)
    return ('<View>\n  <Image name="image" value="$image" zoom="true"/>\n'
            f'  <RectangleLabels name="box" toName="image">{labels}\n  </RectangleLabels>\n</View>')


def _check_labelling(labelling: dict) -> None:
    for key, kind in (("id", str), ("name", str), ("kind", str), ("classes", list), ("images", list)):
        if not isinstance(labelling.get(key), kind):
            raise ValueError(f"labelling[{key!r}] must be a {kind.__name__}")
    if labelling["kind"] not in KINDS:
        raise ValueError(f"labelling['kind'] must be one of {', '.join(KINDS)}")
    classes = labelling["classes"]
    if not classes or not all(isinstance(c, str) and c.strip() for c in classes) or len(set(classes)) < len(classes):
        raise ValueError("labelling['classes'] must be distinct, non-empty names")
    for image in labelling["images"]:
        path = PurePosixPath(image) if isinstance(image, str) else None
        if path is None or path.is_absolute() or ".." in path.parts or len(path.parts) < 2:
            raise ValueError(f"an image must be a path in a folder under the document root, not {image!r}")


def pixel_box(value: dict, width: float, height: float) -> list[float]:
    """A rectangle of Label Studio's (percent of the picture, top left corner) in the picture's pixels."""
    x0, y0 = value["x"] * width / 100, value["y"] * height / 100
    return [x0, y0, x0 + value["width"] * width / 100, y0 + value["height"] * height / 100]


def answer(kind: str, annotation: dict) -> Any:
    """What one annotation says: the class (classification), or the boxes (detection)."""
    results = annotation.get("result") or []
    if kind == "classification":
        for result in results:
            if result.get("type") == "choices" and result["value"].get("choices"):
                return result["value"]["choices"][0]
        return None
    boxes = []
    for result in results:
        if result.get("type") == "rectanglelabels" and result["value"].get("rectanglelabels"):
            boxes.append({"class": result["value"]["rectanglelabels"][0],
                          "box": pixel_box(result["value"], result["original_width"], result["original_height"])})
    return boxes


def latest(annotations: list[dict]) -> dict | None:
    kept = [a for a in annotations if not a.get("was_cancelled")]
    return max(kept, key=lambda a: (a.get("updated_at") or a.get("created_at") or "", a.get("id", 0)), default=None)


class LabelStudio:
    """One user's Label Studio: started on demand, shared by their jupyter server and their CLI."""

    def __init__(self, home: Path, document_root: Path, base_url: str = "/", idle_timeout: float = 900,
                 start_timeout: float = 120, log: logging.Logger | None = None, python: str | Path | None = None):
        self.home, self.document_root = Path(home), Path(document_root).resolve()
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.idle_timeout, self.start_timeout = idle_timeout, start_timeout
        self.log = log or logging.getLogger(__name__)
        self.python = Path(python or os.environ.get("CLUSTERLAB_LABEL_STUDIO_PYTHON") or PYTHON)
        self.state_path, self.log_path = self.home / "state.json", self.home / "label-studio.log"
        self._lock = threading.RLock()
        self._depth = 0  # this object's holds of the file lock (re-entered by its own calls)
        self._lock_file = None
        self._child: subprocess.Popen | None = None  # when this process started it: reaped here

    # ----- the state shared with other processes of the same user ----------------------------

    @contextlib.contextmanager
    def _locked(self):
        with self._lock:
            if self._depth == 0:
                self.home.mkdir(parents=True, exist_ok=True)
                os.chmod(self.home, 0o700)
                self._lock_file = open(os.open(self.home / "lock", os.O_RDWR | os.O_CREAT, 0o600), "r+")
                fcntl.flock(self._lock_file, fcntl.LOCK_EX)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self._lock_file.close()  # which unlocks
                    self._lock_file = None

    def _state(self) -> dict:
        try:
            return json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return {}

    def _save(self, state: dict) -> None:
        temporary = self.state_path.with_name(f".state-{os.getpid()}-{threading.get_ident()}")
        with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            json.dump(state, f, indent=1)
        os.replace(temporary, self.state_path)

    def _alive(self, state: dict) -> bool:
        pid = state.get("pid")
        if not pid:
            return False
        if self._child is not None and self._child.pid == pid and self._child.poll() is not None:
            return False  # ours, ended (and now reaped)
        try:
            process = psutil.Process(pid)
            return process.status() != psutil.STATUS_ZOMBIE and str(LAUNCH) in process.cmdline()
        except psutil.Error:
            return False

    # ----- starting and stopping -----------------------------------------------------------

    def ensure_running(self) -> None:
        """Start Label Studio unless the one in the state file runs (under this base URL)."""
        with self._locked():
            state = self._state()
            if self._alive(state):
                if state.get("base_url") == self.base_url:
                    return
                self.log.info("ClusterLab: Label Studio runs under %s, restarting it under %s",
                              state.get("base_url"), self.base_url)
                self._end(state["pid"])
            if not self.python.exists():
                raise LabelStudioError(502, f"Label Studio is not installed ({self.python} is missing): make setup")
            for attempt in range(2):  # a second go if another program took the port meanwhile
                try:
                    return self._start(state, fresh_port=bool(attempt))
                except _Exited as e:
                    if attempt:
                        raise LabelStudioError(502, f"Label Studio did not start: {e}") from None

    def _start(self, state: dict, fresh_port: bool) -> None:
        state.setdefault("token", secrets.token_hex(20))
        state.setdefault("prefix", secrets.token_hex(16))
        port = state.get("port")  # the same port as before when free: the tasks' picture URLs hold it
        if fresh_port or not port or not _port_free(port):
            port = free_port()
        mount = f"{self.base_url}proxy/absolute/{port}/{state['prefix']}"
        config = {"home": str(self.home), "document_root": str(self.document_root), "port": port, "mount": mount,
                  "token": state["token"], "idle_timeout": self.idle_timeout, "email": _email(),
                  "old_mount": state.get("mount")}
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("JUPYTERHUB_", "JPY_", "JUPYTER_TOKEN", "LABEL_STUDIO_", "PYTHON", "VIRTUAL_ENV"))}
        started = time.monotonic()
        with open(os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as log:
            # detached, in a session of its own: it outlives the CLI that started it, and stops when idle
            proc = subprocess.Popen([str(self.python), str(LAUNCH)], cwd=self.home, env=env, stdin=subprocess.PIPE,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            with proc.stdin:
                proc.stdin.write((json.dumps(config) + "\n").encode())
        except BrokenPipeError:
            pass  # it died at once: the wait below reports its log
        self._child = proc
        state.update(pid=proc.pid, port=port, mount=mount, base_url=self.base_url)
        self._save(state)
        self.log.info("ClusterLab: Label Studio (pid %d) on port %d", proc.pid, port)
        deadline = started + self.start_timeout
        while True:
            if proc.poll() is not None:
                raise _Exited(TensorBoardManager._log_tail(self.log_path) or f"exit status {proc.returncode}")
            try:
                self._request(state, "GET", "/api/projects/?page_size=1", timeout=5)
                break
            except (OSError, LabelStudioError):
                pass
            if time.monotonic() > deadline:
                self._end(proc.pid)
                raise LabelStudioError(502, f"Label Studio did not answer in {self.start_timeout:g} s: "
                                            f"{TensorBoardManager._log_tail(self.log_path)}")
            time.sleep(0.25)
        self.log.info("ClusterLab: Label Studio answered after %.1f s", time.monotonic() - started)

    def stop(self) -> None:
        with self._locked():
            state = self._state()
            if self._alive(state):
                self.log.info("ClusterLab: stopping Label Studio (pid %d)", state["pid"])
                self._end(state["pid"])
            if state.pop("pid", None) is not None:
                self._save(state)

    def _end(self, pid: int) -> None:
        try:
            os.killpg(pid, signal.SIGTERM)  # its own session: its group is its pid
        except ProcessLookupError:
            return
        deadline = time.monotonic() + STOP_SECONDS
        while self._alive({"pid": pid}) and time.monotonic() < deadline:
            time.sleep(0.05)
        if self._alive({"pid": pid}):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        if self._child is not None and self._child.pid == pid:
            self._child.wait()

    def status(self) -> dict[str, Any]:
        state = self._state()
        running = self._alive(state)
        return {"running": running, "port": state.get("port") if running else None,
                "url": f"{state['mount']}/" if running else None}

    # ----- its REST API ----------------------------------------------------------------------

    def _request(self, state: dict, method: str, path: str, body: Any = None, timeout: float = 60) -> Any:
        url = f"http://127.0.0.1:{state['port']}{state['mount']}{path if path.startswith('/') else '/' + path}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method, headers={
            "Authorization": f"Token {state['token']}", "Content-Type": "application/json",
            "Accept": "application/json"})
        try:
            with _DIRECT.open(request, timeout=timeout) as response:
                content = response.read()
        except urllib.error.HTTPError as e:
            raise LabelStudioError(e.code, f"Label Studio: {method} {path}: {e.code} "
                                           f"{e.read()[:1000].decode(errors='replace')}") from None
        return json.loads(content) if content.strip() else None

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """An authenticated JSON call of Label Studio's REST API (``path`` under its root: ``/api/projects/``)."""
        for attempt in range(2):
            self.ensure_running()
            try:
                return self._request(self._state(), method, path, body)
            except urllib.error.URLError:  # it stopped (idle) between the look and the call
                if attempt:
                    raise

    def _all(self, path: str, key: str) -> list:
        items, page = [], 1
        separator = "&" if "?" in path else "?"
        while True:
            answered = self.api("GET", f"{path}{separator}page={page}&page_size={PAGE}")
            batch = answered.get(key, []) if isinstance(answered, dict) else answered
            items += batch
            total = answered.get("total", answered.get("count")) if isinstance(answered, dict) else None
            if len(batch) < PAGE or total is None or len(items) >= total:
                return items
            page += 1

    # ----- projects ----------------------------------------------------------------------------

    def ensure_project(self, labelling: dict) -> int:
        """The Label Studio project for this labelling, made the first time; new images become new tasks."""
        _check_labelling(labelling)
        config = label_config(labelling["kind"], labelling["classes"])
        with self._locked():
            state = self._state()
            project_id = self._find_project(state.get("projects", {}).get(labelling["id"]), labelling["id"])
            if project_id is None:
                project_id = self.api("POST", "/api/projects/", {
                    "title": labelling["name"][:50] or labelling["id"][:50], "label_config": config,
                    "description": f"{MARK}{labelling['id']}"})["id"]
            elif self.api("GET", f"/api/projects/{project_id}/")["label_config"] != config:
                self.api("PATCH", f"/api/projects/{project_id}/", {"label_config": config})
            state = self._state()
            state.setdefault("projects", {})[labelling["id"]] = project_id
            self._save(state)
            self._ensure_storages(project_id, labelling["images"])
            self._add_tasks(project_id, labelling["images"])
            return project_id

    def _find_project(self, remembered: int | None, labelling_id: str) -> int | None:
        if remembered is not None:
            try:
                self.api("GET", f"/api/projects/{remembered}/")
                return remembered
            except LabelStudioError as e:
                if e.status != 404:
                    raise
        for project in self._all("/api/projects/", "results"):
            if project.get("description") == f"{MARK}{labelling_id}":
                return project["id"]
        return None

    def _ensure_storages(self, project_id: int, images: list[str]) -> None:
        """Label Studio serves a local file only under a local-files storage of its project."""
        folders = {str(self.document_root / PurePosixPath(image).parts[0]) for image in images}
        answered = self.api("GET", f"/api/storages/localfiles/?project={project_id}")
        have = {storage["path"].rstrip("/") for storage in answered}
        for folder in sorted(folders - have):
            self.api("POST", "/api/storages/localfiles/", {
                "project": project_id, "path": folder, "title": Path(folder).name, "use_blob_urls": True})

    def _add_tasks(self, project_id: int, images: list[str]) -> None:
        have = {task["data"].get("path") for task in self.tasks(project_id)}
        mount = self._state()["mount"]
        new = [{"data": {"image": f"{mount}/data/local-files/?d={quote(image)}", "path": image}}
               for image in dict.fromkeys(images) if image not in have]
        for start in range(0, len(new), 1000):
            self.api("POST", f"/api/projects/{project_id}/import", new[start:start + 1000])

    def tasks(self, project_id: int) -> list[dict]:
        """The project's tasks as Label Studio's API gives them (``data``: ``image``, its URL, and ``path``)."""
        return self._all(f"/api/tasks/?project={project_id}&fields=all", "tasks")

    def page_url(self, project_id: int) -> str:
        """The project's page for the browser, through the server's proxy: its editor on the next unlabelled
        picture (Submit goes on to the next; the project's list of pictures is a click away)."""
        self.ensure_running()
        return f"{self._state()['mount']}/projects/{int(project_id)}/data?labeling=1"

    def annotations(self, project_id: int) -> dict[str, Any]:
        """Image path -> its class (classification) or boxes (detection), by each task's latest annotation."""
        project = self.api("GET", f"/api/projects/{int(project_id)}/")
        kind = "detection" if "<RectangleLabels" in project["label_config"] else "classification"
        labels = {}
        for task in self.api("GET", f"/api/projects/{int(project_id)}/export?exportType=JSON"):
            annotation = latest(task.get("annotations") or [])
            path = task.get("data", {}).get("path")
            if annotation is None or path is None:
                continue
            said = answer(kind, annotation)
            if said is not None:
                labels[path] = said
        return labels


def _port_free(port: int) -> bool:
    """Whether Label Studio could listen on ``port`` (as it binds: closed connections in TIME_WAIT are no bar)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _email() -> str:
    """The single local Label Studio user, named after the account that runs it."""
    return f"{re.sub(r'[^a-z0-9._-]', '_', getpass.getuser().lower()) or 'user'}@localhost"


class _Exited(Exception):
    """Label Studio ended before it answered."""
