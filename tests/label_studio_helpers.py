"""What the Label Studio tests share: its virtual environment and template database (or a skip that says how
to get them), small pictures to label, and labelling through Label Studio's own REST API as the browser's clicks do.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
from datetime import datetime, timezone
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from PIL import Image

from clusterlab_server.studio.label_studio import PYTHON, LabelStudio


def need_label_studio() -> None:
    """Skip (fail under CI) without the Label Studio virtual environment."""
    if not PYTHON.exists():
        message = f"Label Studio's virtual environment is missing ({PYTHON}): make setup"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


# made by make setup beside Label Studio's virtual environment (label_studio_launch.TEMPLATE, from its python)
TEMPLATE = PYTHON.parents[1] / "clusterlab-template.sqlite3"


def need_template() -> None:
    """Skip (fail under CI) without the template database that a first start copies."""
    need_label_studio()
    if not TEMPLATE.exists():
        message = f"Label Studio's template database is missing ({TEMPLATE}): make setup"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def make_images(document_root: Path, labelling_id: str, count: int, size=(60, 40)) -> list[str]:
    """``count`` small PNGs in ``<labelling_id>/images/a/``: their paths relative to ``document_root``."""
    folder = document_root / labelling_id / "images" / "a"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        pixels = np.zeros((size[1], size[0], 3), np.uint8)
        pixels[:, :, i % 3] = 40 + 50 * i % 200
        Image.fromarray(pixels).save(folder / f"{i:03}.png")
        paths.append(f"{labelling_id}/images/a/{i:03}.png")
    return paths


def _result(value: dict, kind: str, width: int, height: int) -> dict:
    from_name = {"choices": "class", "rectanglelabels": "box"}[kind]
    return {"original_width": width, "original_height": height, "image_rotation": 0, "value": value,
            "id": secrets.token_urlsafe(7)[:10], "from_name": from_name, "to_name": "image", "type": kind,
            "origin": "manual"}


def annotate(ls: LabelStudio, project_id: int, labels: dict) -> dict[str, int]:
    """Label pictures as the editor's Submit (and Skip) buttons do: ``POST /api/tasks/<id>/annotations/``.

    ``labels``: image path -> a class name (classification), a list of ``{"class", "box": [x0, y0, x1, y1]}``
    in the picture's pixels (detection; ``[]``: no objects), or None (Skip: a cancelled annotation).
    Returns image path -> the new annotation's id.
    """
    tasks = {t["data"]["path"]: t for t in ls.tasks(project_id)}
    made = {}
    for path, label in labels.items():
        task = tasks[path]
        with Image.open(ls.document_root / path) as picture:
            width, height = picture.size
        if label is None:
            result = []
        elif isinstance(label, str):
            result = [_result({"choices": [label]}, "choices", width, height)]
        else:  # the editor's rectangle: its top left corner and size in percent of the picture
            result = [_result({"x": 100 * x0 / width, "y": 100 * y0 / height, "width": 100 * (x1 - x0) / width,
                               "height": 100 * (y1 - y0) / height, "rotation": 0, "rectanglelabels": [box["class"]]},
                              "rectanglelabels", width, height)
                      for box in label for x0, y0, x1, y1 in [box["box"]]]
        body = {"lead_time": 2.5, "result": result, "draft_id": 0, "parent_prediction": None,
                "parent_annotation": None, "started_at": datetime.now(timezone.utc).isoformat(),
                "project": str(project_id)}
        if label is None:
            body["was_cancelled"] = True
        made[path] = ls.api("POST", f"/api/tasks/{task['id']}/annotations/?project={project_id}", body)["id"]
    return made


class ConnectionRecorder:
    """A stand-in HTTP(S) proxy that answers nothing and notes what asked it: set as HTTP(S)_PROXY, it sees
    every request Label Studio's Python would make to the internet (requests, urllib and sentry honour it).
    Only Label Studio's: the tests start it :meth:`watching`, and the browser (whose own updater calls home)
    outside that."""

    def __init__(self):
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(16)
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.seen: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            with connection:
                connection.settimeout(2)
                try:
                    self.seen.append(connection.recv(1000).decode(errors="replace").split("\r\n")[0])
                except OSError:
                    self.seen.append("(a connection)")

    def watching(self):
        """While in it, processes started take this recorder as their proxy to the internet (local: direct)."""
        return mock.patch.dict(os.environ, {
            "HTTP_PROXY": self.url, "HTTPS_PROXY": self.url, "http_proxy": self.url, "https_proxy": self.url,
            "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"})

    def close(self) -> None:
        self.socket.close()
