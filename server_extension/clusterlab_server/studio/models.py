"""The model registry (Determined's): named models, each with versions 1, 2, ... of a trial's model.

``<studio root>/models/<name>/<version>/`` holds ``version.json`` (the record: the trial, its parameters,
its dataset version and labelling, its validation, its metrics, where it was published) and a frozen copy
of the trial's files: ``model.pt`` and, when it was validated, ``report/``. A version outlives the trial
it came from (an experiment may be deleted). Versions are numbered under an flock on the model's folder,
never reused; ``published`` is set only after a push has gone through (:mod:`.publish`).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from ..datasets.store import FolderLock, replace_file
from ..service import JobError, check_name


class ModelRegistry:
    def __init__(self, root: Path):
        self.root = root  # <studio root>/models

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(e for e in os.listdir(self.root) if not e.startswith(".") and self.versions(e))

    def versions(self, name: str) -> list[int]:
        folder = self.root / name
        if not folder.is_dir():
            return []
        return sorted(int(e) for e in os.listdir(folder) if e.isdigit() and (folder / e / "version.json").exists())

    def folder(self, name: str, version: int) -> Path:
        return self.root / name / str(version)

    def get(self, name: Any, version: Any) -> dict:
        name = check_name(name, "model")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise JobError(400, "version must be a whole number from 1", "version")
        try:
            return json.loads((self.folder(name, version) / "version.json").read_text())
        except FileNotFoundError:
            known = self.versions(name)
            if not known:
                raise JobError(404, f"no model {name}", "model") from None
            raise JobError(404, f"no version {version} of model {name} (its versions: {', '.join(map(str, known))})",
                           "version") from None

    def model(self, name: Any) -> dict:
        name = check_name(name, "model")
        versions = [self.get(name, v) for v in reversed(self.versions(name))]
        if not versions:
            raise JobError(404, f"no model {name}", "model")
        return {"name": name, "versions": versions}

    def add(self, name: str, record: dict, files: dict[str, Path]) -> dict:
        """A new version of ``name``: ``files`` (its name in the version -> the file or folder to copy) frozen,
        the record written with its number; all of it, or nothing."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder = self.root / name
        folder.mkdir(mode=0o700, exist_ok=True)
        with FolderLock(folder):
            existing = [int(e) for e in os.listdir(folder) if e.isdigit()]
            version = max(existing, default=0) + 1
            staging = folder / f".{version}.new"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(mode=0o700)
            try:
                for target, source in files.items():
                    if source.is_dir():
                        shutil.copytree(source, staging / target)
                    else:
                        shutil.copyfile(source, staging / target)
                record = {"model": name, "version": version, **record}
                (staging / "version.json").write_text(json.dumps(record, indent=1) + "\n")
                os.rename(staging, folder / str(version))
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        return record

    def update(self, name: str, version: int, **changes) -> dict:
        with FolderLock(self.root / name):
            record = {**self.get(name, version), **changes}
            replace_file(self.folder(name, version) / "version.json", json.dumps(record, indent=1) + "\n", 0o600)
        return record
