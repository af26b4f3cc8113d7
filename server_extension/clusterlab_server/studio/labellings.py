"""Labellings: a frozen set of pictures to label, a kind (classification or detection) and its classes.

Each is a folder ``<studio root>/labellings/<id>/`` (0700): ``labelling.json`` (the record)
and ``images/`` (the pictures at their paths inside the folder or dataset version they came from: copies of a
folder's, hard links to a dataset version's read-only files). Freezing them means labels always name the
pictures they were given for, whatever happens to the source later; a hard link to a file of the user's
folder would change with it. The labels themselves live in the user's Label Studio (its project is named
in the record) until they are exported; each export is recorded here too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from ..datasets.store import replace_file
from ..service import JobError, new_id

KINDS = ("classification", "detection")
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")  # what Label Studio shows and the templates read
MAX_PICTURES = 20000
MAX_CLASSES = 200
CLASS_RULE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.+-]{0,63}$")  # a folder name in ImageFolder: no "/"
ID_RULE = re.compile(r"^[0-9]{8}-[0-9]{6}-[0-9a-f]{6}$")
RECORD = "labelling.json"


def check_kind(value: Any) -> str:
    if value not in KINDS:
        raise JobError(400, f"kind must be one of {', '.join(KINDS)}", "kind")
    return value


def check_classes(value: Any, kind: str) -> list[str]:
    """Distinct class names; classification needs two or more (one class is nothing to tell apart)."""
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        raise JobError(400, "classes must be a list of class names", "classes")
    least = 2 if kind == "classification" else 1
    if len(value) < least:
        why = "a classification tells two or more classes apart" if least == 2 else "a detector finds one or more"
        raise JobError(400, f"classes: {len(value)} given, {why}", "classes")
    if len(value) > MAX_CLASSES:
        raise JobError(400, f"classes: at most {MAX_CLASSES}", "classes")
    for name in value:
        if not CLASS_RULE.match(name):
            raise JobError(400, f"classes: {name!r} is not a class name (1-64 letters, digits, spaces and _ . + -, "
                           "starting with a letter or digit)", "classes")
    if len(set(value)) != len(value):
        twice = next(c for c in value if value.count(c) > 1)
        raise JobError(400, f"classes: {twice!r} is named twice", "classes")
    return list(value)


def pictures_in(folder: Path) -> list[str]:
    """Every picture under ``folder``, by its path inside it (hidden folders and files left out), sorted."""
    found = []
    for top, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if not name.startswith(".") and name.lower().endswith(PICTURE_SUFFIXES):
                found.append(Path(top, name).relative_to(folder).as_posix())
                if len(found) > MAX_PICTURES:
                    raise JobError(413, f"images: more than {MAX_PICTURES} pictures; label a part of them", "images")
    return sorted(found)


class LabellingStore:
    def __init__(self, root: Path):
        self.root = root  # <studio root>/labellings: also Label Studio's document root

    def folder(self, labelling_id: str) -> Path:
        return self.root / labelling_id

    def images(self, labelling_id: str) -> Path:
        return self.folder(labelling_id) / "images"

    def create(self, record: dict, source: Path, pictures: list[str], link: bool) -> dict:
        """A new labelling of ``pictures`` (paths inside ``source``), frozen (``link``: ``source`` is frozen
        already, a dataset version), then the record."""
        labelling_id = new_id()
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        staging = self.root / f".{labelling_id}.new"
        staging.mkdir(mode=0o700)
        try:
            for path in pictures:
                target = staging / "images" / path
                target.parent.mkdir(parents=True, exist_ok=True)
                if link:
                    try:
                        os.link(source / path, target)
                        continue
                    except OSError:  # another file system
                        pass
                shutil.copyfile(source / path, target)
            record = {"id": labelling_id, **record, "pictures": pictures, "label_studio_project": None,
                      "labelled": 0, "exports": []}
            (staging / RECORD).write_text(json.dumps(record, indent=1) + "\n")
            os.rename(staging, self.folder(labelling_id))
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return record

    def get(self, labelling_id: Any) -> dict:
        if not isinstance(labelling_id, str) or not ID_RULE.match(labelling_id):
            raise JobError(404, f"no labelling {labelling_id!r}", "labelling")
        try:
            return json.loads((self.folder(labelling_id) / RECORD).read_text())
        except FileNotFoundError:
            raise JobError(404, f"no labelling {labelling_id}", "labelling") from None

    def list(self) -> list[dict]:
        """Every labelling, newest first."""
        if not self.root.is_dir():
            return []
        found = []
        for entry in sorted(os.listdir(self.root), reverse=True):
            if ID_RULE.match(entry):
                try:
                    found.append(json.loads((self.root / entry / RECORD).read_text()))
                except (OSError, ValueError):
                    continue  # being removed
        return found

    def update(self, labelling_id: str, **changes) -> dict:
        record = {**self.get(labelling_id), **changes}
        replace_file(self.folder(labelling_id) / RECORD, json.dumps(record, indent=1) + "\n", 0o600)
        return record

    def delete(self, labelling_id: str) -> None:
        self.get(labelling_id)
        shutil.rmtree(self.folder(labelling_id), ignore_errors=True)
