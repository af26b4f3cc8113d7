"""Datasets as the REST API, the CLI and the job service see them.

A dataset is a name and numbered, frozen versions, in the user's store (``Settings.datasets_root``) or the
site's (``Settings.site_datasets``, made by an admin, read by everyone, deleted by nobody here). A job's
inputs name a version (``{"dataset", "version"?, "as"?}``) or an earlier job's output (``{"job", "as"?}``):
:meth:`DatasetService.check_input` checks such an entry cheaply when a request comes in,
:meth:`DatasetService.resolve_input` pins it (the latest version becomes a number, a job's output is
frozen into the store the first time) for the job's record. Every refusal is a :class:`JobError` naming
the request's field. The store's layout and why it uses hard links: :mod:`.store`.
"""

from __future__ import annotations

import csv
import getpass
import io
import os
import re
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import String, cast, select
from sqlalchemy.exc import OperationalError

from ..service import JobError, JobService, check_name, check_project
from ..store import FINAL, Job, utcnow
from .store import DatasetStore, Refused

MAX_DESCRIPTION = 2000
MAX_PREVIEW = 100
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp")
TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t"}
TABLE_ROWS, TABLE_BYTES, TABLE_COLUMNS, TABLE_CELL = 5, 64 * 1024, 50, 200
JOB_ID_RULE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
REF_RULE = re.compile(r"^([A-Za-z0-9_]{1,100})(?::([1-9][0-9]{0,8}))?$")
CREATE_FIELDS = {"name", "folder", "description", "project"}


def creator() -> str:
    """Who makes a version: the hub's user (a server runs as them), else this process's Unix account."""
    return os.environ.get("JUPYTERHUB_USER") or getpass.getuser()


class DatasetService:
    def __init__(self, jobs: JobService):
        self.jobs = jobs

    @property
    def own(self) -> DatasetStore:
        return DatasetStore(Path(self.jobs.settings.datasets_root), shared=False)

    @property
    def site(self) -> DatasetStore:
        return DatasetStore(Path(self.jobs.settings.site_datasets), shared=True)

    # ----- making versions ----------------------------------------------------------

    def create(self, request: Any, site: bool = False) -> dict:
        """A new version of ``request["name"]`` from a folder of the user's roots: its version JSON.

        ``request``: ``{"name", "folder" (workspace-relative or absolute), "description"?, "project"?}``;
        ``site``: into the site's store (an admin's ``clusterlab data create --site``).
        """
        if not isinstance(request, dict):
            raise JobError(400, "the body must be a JSON object with name and folder", "")
        unknown = sorted(set(request) - CREATE_FIELDS)
        if unknown:
            raise JobError(400, f"unknown field {unknown[0]!r}", unknown[0])
        name = check_name(request.get("name"))
        description = request.get("description", "")
        if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
            raise JobError(400, f"description must be text of at most {MAX_DESCRIPTION} characters", "description")
        project = check_project(request.get("project"))
        store = self.site if site else self.own
        if site:
            self._check_site_writable(store.root)
        elif self.site.versions(name):
            raise JobError(409, f"a site dataset named {name} exists (shared with everyone): use it as it is, "
                           "or give yours another name", "name")
        source = request.get("folder")
        folder = self._folder(source)
        return self._commit(store, name, folder, {"description": description, "project": project, "source": source},
                            quota_applies=not site)

    def create_from(self, name: str, folder: Path, description: str, project: str, record: dict) -> dict:
        """A new version of the user's dataset ``name`` from a folder ClusterLab wrote itself (AI Studio's
        export of a labelling), not one of the user's roots; ``record`` (where it came from) goes in its
        manifest and summary beside the usual fields. ``name`` and ``project`` are checked already."""
        if self.site.versions(name):
            raise JobError(409, f"a site dataset named {name} exists (shared with everyone): give yours another "
                           "name", "dataset")
        return self._commit(self.own, name, folder, {"description": description, "project": project,
                                                     "source": None, **record}, quota_applies=True, field="dataset")

    def _commit(self, store: DatasetStore, name: str, folder: Path, fields: dict, quota_applies: bool,
                field: str = "folder") -> dict:
        store.ensure()
        room = None
        quota = self.jobs.settings.datasets_quota_bytes
        if quota_applies and quota is not None:
            room = quota - self.own.usage()
        staged = self._stage(store, folder, store.read_cache(name), room, field)
        header = {"created": utcnow().isoformat(), "creator": creator(), **fields}
        summary = store.commit(name, staged, header)
        store.save_cache(name, staged.cache)
        return self._version_json(store, summary)

    def _folder(self, source: Any) -> Path:
        if not isinstance(source, str) or not source:
            raise JobError(400, "folder must be the path of a folder in your workspace", "folder")
        try:
            folder = self.jobs.resolve_path(source)
        except ValueError as e:
            raise JobError(400, f"folder: {e}", "folder") from None
        if not folder.is_dir():
            raise JobError(400, f"folder: {source} is not a folder", "folder")
        for store in (self.own, self.site):
            root = Path(os.path.realpath(store.root))
            if folder == root or folder.is_relative_to(root):
                raise JobError(400, f"folder: {source} is inside the dataset store {root}", "folder")
        return folder

    def _stage(self, store: DatasetStore, folder: Path, cache: dict, room: int | None, field: str):
        skip = {os.path.realpath(s.root) for s in (self.own, self.site)}
        try:
            return store.stage(folder, cache, room, skip)
        except Refused as e:
            raise JobError(413 if e.quota else 400, f"{field}: {e.message}", field) from None

    @staticmethod
    def _check_site_writable(root: Path) -> None:
        probe = root
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not os.access(probe, os.W_OK | os.X_OK):
            raise JobError(403, f"site datasets ({root}) are made by an administrator: you may not write there",
                           "site")

    # ----- reading ----------------------------------------------------------------------

    def list(self, project: str | None = None) -> list[dict]:
        """Every dataset with a version: the user's first, then the site's, each by name."""
        if project is not None:
            project = check_project(project)
        found = [self._dataset_json(store, name) for store in (self.own, self.site) for name in store.names()]
        return [d for d in found if d is not None and (project is None or d["project"] == project)]

    def get(self, name: Any) -> dict:
        store = self._find(name)
        dataset = self._dataset_json(store, name)
        if dataset is None:
            raise JobError(404, f"no dataset {name}", "name")
        return dataset

    def version(self, name: Any, version: Any) -> dict:
        store, number = self._find_version(name, version)
        summary = store.summary(name, number)
        return {**self._version_json(store, summary), "used_by": self._used_by(name, number, store.shared)}

    def manifest(self, name: Any, version: Any) -> dict:
        store, number = self._find_version(name, version)
        manifest = store.manifest(name, number)
        if manifest is None:
            raise JobError(404, f"dataset {name} has no version {number}", "version")
        return manifest

    def _find(self, name: Any) -> DatasetStore:
        """The store holding ``name``: the user's first (a site dataset of the same name comes later)."""
        if isinstance(name, str) and check_name_quietly(name):
            for store in (self.own, self.site):
                if store.versions(name):
                    return store
        raise JobError(404, f"no dataset {str(name)[:100]!r}", "name")

    def _find_version(self, name: Any, version: Any) -> tuple[DatasetStore, int]:
        store = self._find(name)
        versions = store.versions(name)
        if version is None:
            return store, versions[-1]
        if isinstance(version, str) and version.isdigit():
            version = int(version)
        if not isinstance(version, int) or isinstance(version, bool) or version not in versions:
            raise JobError(404, f"dataset {name} has no version {str(version)[:20]} (it has "
                           f"{', '.join(map(str, versions))})", "version")
        return store, version

    def _dataset_json(self, store: DatasetStore, name: str) -> dict | None:
        versions = [self._version_json(store, s) for v in reversed(store.versions(name))
                    if (s := store.summary(name, v)) is not None]
        if not versions:
            return None
        latest = versions[0]
        return {"name": name, "shared": store.shared, "description": latest["description"],
                "project": latest["project"], "latest": latest["version"], "versions": versions}

    @staticmethod
    def _version_json(store: DatasetStore, summary: dict) -> dict:
        folder = store.version_dir(summary["name"], summary["version"]) / "files"
        return {**summary, "shared": store.shared, "path": str(folder)}

    # ----- who uses a version -----------------------------------------------------------

    def used_by(self, name: Any, version: Any) -> list[dict]:
        """Every job (ended or not) whose inputs name this version: ``[{"id", "name", "status", "as"}]``."""
        store, number = self._find_version(name, version)
        return self._used_by(name, number, store.shared)

    def _used_by(self, name: str, version: int, shared: bool) -> list[dict]:
        def names_it(entry: dict) -> bool:
            return (entry.get("dataset") == name and entry.get("version") == version
                    and bool(entry.get("shared")) == shared)

        column = getattr(Job, "inputs", None)
        if column is None:
            return []
        # the JSON text names the dataset in quotes: the database keeps only the jobs that may use it
        query = select(Job).where(cast(column, String).like(f'%"{name}"%')).order_by(Job.submit_time)
        with self.jobs.store.session() as s:
            jobs = list(s.scalars(query))
        return [{"id": job.id, "name": job.name, "status": job.status, "as": entry.get("as")}
                for job in jobs for entry in (job.inputs or []) if names_it(entry)]

    def _unfinished_experiments_using(self, name: str, version: int, shared: bool) -> list[str]:
        from ..experiments.store import Experiment

        try:
            with self.jobs.store.session() as s:
                rows = list(s.scalars(select(Experiment).where(Experiment.status == "running")))
        except OperationalError:  # no experiment was ever made: no table yet
            return []
        return [row.id for row in rows for entry in (getattr(row, "inputs", None) or [])
                if entry.get("dataset") == name and entry.get("version") == version
                and bool(entry.get("shared")) == shared]

    def delete(self, name: Any, version: Any) -> None:
        """Delete one of the user's versions (and the contents no other version holds)."""
        store, number = self._find_version(name, version)
        if store.shared:
            raise JobError(403, f"{name} is a site dataset, shared with everyone: only an administrator "
                           "removes it", "name")
        jobs = sorted({u["id"] for u in self.used_by(name, number) if u["status"] not in FINAL})
        experiments = self._unfinished_experiments_using(name, number, False)
        if jobs or experiments:
            who = ", ".join([*(f"job {j}" for j in jobs), *(f"experiment {e}" for e in experiments)])
            raise JobError(409, f"{name}:{number} is an input of {who}, not yet ended: delete it once "
                           "they have", "version")
        store.delete(name, number)

    # ----- looking inside -----------------------------------------------------------------

    def preview(self, name: Any, version: Any, limit: Any = 6) -> dict:
        """The first ``limit`` images by path, and the head of the first table (.csv, .tsv)."""
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_PREVIEW:
            raise JobError(400, f"limit must be from 1 to {MAX_PREVIEW}", "limit")
        store, number = self._find_version(name, version)
        files = (store.manifest(name, number) or {}).get("files", [])
        images = [{"path": f["path"], "size": f["size"]} for f in files
                  if f["path"].lower().endswith(IMAGE_SUFFIXES)][:limit]
        table = next((f["path"] for f in files if PurePosixPath(f["path"]).suffix.lower() in TABLE_SUFFIXES), None)
        return {"images": images, "table": self._table(store.version_dir(name, number) / "files", table)}

    @staticmethod
    def _table(folder: Path, path: str | None) -> dict | None:
        if path is None:
            return None
        with open(folder / path, "rb") as f:
            head = f.read(TABLE_BYTES).decode(errors="replace")
        lines = head.splitlines()
        if len(head) == TABLE_BYTES and len(lines) > 1:
            lines = lines[:-1]  # cut in the middle
        reader = csv.reader(io.StringIO("\n".join(lines)), delimiter=TABLE_SUFFIXES[PurePosixPath(path).suffix.lower()])
        rows = []
        for row in reader:
            rows.append([cell[:TABLE_CELL] for cell in row[:TABLE_COLUMNS]])
            if len(rows) > TABLE_ROWS:
                break
        return {"path": path, "header": rows[0] if rows else [], "rows": rows[1:]}

    def file(self, name: Any, version: Any, path: Any) -> Path:
        """A file of the version: never anything outside it (no ``..``, no absolute path, no link out)."""
        store, number = self._find_version(name, version)
        folder = store.version_dir(name, number) / "files"
        missing = JobError(404, f"{name}:{number} has no file {str(path)[:200]!r}", "path")
        if not isinstance(path, str) or not path or "\0" in path or path.startswith("/"):
            raise missing
        parts = [p for p in path.split("/") if p not in ("", ".")]
        if not parts or ".." in parts:
            raise missing
        target = folder.joinpath(*parts)
        real, top = os.path.realpath(target), os.path.realpath(folder)
        if not real.startswith(top + "/") or not os.path.isfile(real):
            raise missing
        return Path(real)

    # ----- inputs of jobs ---------------------------------------------------------------

    @staticmethod
    def parse_ref(text: Any) -> dict | None:
        """``"job:ID"`` -> ``{"job": ID}``; ``"NAME"`` or ``"NAME:VERSION"`` -> ``{"dataset", "version"}``
        (version None: the latest); anything else (a path, say) -> None."""
        if not isinstance(text, str):
            return None
        if text.startswith("job:"):
            return {"job": text[4:]} if JOB_ID_RULE.match(text[4:]) else None
        match = REF_RULE.match(text)
        if match is None:
            return None
        return {"dataset": match[1], "version": int(match[2]) if match[2] else None}

    def check_input(self, entry: Any, field: str) -> dict:
        """An input entry, checked (its dataset and version exist; its job is the user's, has ended and has an
        output), nothing pinned or frozen: ``{"dataset", "version" (None: latest), "as"}`` or ``{"job", "as"}``.
        A reference string (``"shapes:2"``, ``"job:ID"``) is taken as the entry it names."""
        if isinstance(entry, str):
            parsed = self.parse_ref(entry)
            if parsed is None:
                raise JobError(400, f"{field}: {entry[:100]!r} names no dataset (NAME or NAME:VERSION) and no job "
                               "(job:ID)", field)
            entry = parsed
        if not isinstance(entry, dict):
            raise JobError(400, f"{field} must be {{dataset, version, as}} or {{job, as}}", field)
        if ("dataset" in entry) == ("job" in entry):
            raise JobError(400, f"{field} names either a dataset or a job", field)
        allowed = {"dataset", "version", "as"} if "dataset" in entry else {"job", "as"}
        unknown = sorted(set(entry) - allowed)
        if unknown:
            raise JobError(400, f"{field}: unknown field {unknown[0]!r}", f"{field}.{unknown[0]}")
        if "dataset" in entry:
            return self._check_dataset_input(entry, field)
        job = self._ended_job(entry["job"], field)
        return {"job": job.id, "as": check_name(entry.get("as", job.name), f"{field}.as")}

    def _check_dataset_input(self, entry: dict, field: str) -> dict:
        name = check_name(entry["dataset"], f"{field}.dataset")
        version = entry.get("version")
        if version is not None and (not isinstance(version, int) or isinstance(version, bool) or version < 1):
            raise JobError(400, f"{field}.version must be a version number (1, 2, ...)", f"{field}.version")
        as_ = check_name(entry.get("as", name), f"{field}.as")
        try:
            self._find_version(name, version)
        except JobError as e:
            raise JobError(400, f"{field}: {e.message}", f"{field}.{'dataset' if e.field == 'name' else 'version'}"
                           ) from None
        return {"dataset": name, "version": version, "as": as_}

    def _ended_job(self, job_id: Any, field: str) -> Job:
        job = self.jobs.store.get(job_id) if isinstance(job_id, str) and JOB_ID_RULE.match(job_id) else None
        if job is None or job.kind != "job":
            raise JobError(400, f"{field}: no job {str(job_id)[:64]!r}", f"{field}.job")
        if job.status not in FINAL:
            raise JobError(400, f"{field}: job {job.id} ({job.name}) has not ended ({job.status}): its output "
                           "can be an input once it has", f"{field}.job")
        if self.own.output_summary(job.id) is None and not _has_entries(Path(job.folder) / "output"):
            raise JobError(400, f"{field}: job {job.id} ({job.name}) has no output", f"{field}.job")
        return job

    def resolve_input(self, entry: Any, field: str) -> dict:
        """An input entry pinned, as a job's record keeps it (the latest version becomes its number; a job's
        output is frozen into the store, once: later uses share it)."""
        entry = self.check_input(entry, field)
        if "job" in entry:
            return {"as": entry["as"], **self._freeze_output(self.jobs.store.get(entry["job"]), field)}
        store, number = self._find_version(entry["dataset"], entry["version"])
        version = self._version_json(store, store.summary(entry["dataset"], number))
        return {"as": entry["as"], "dataset": version["name"], "version": number, "digest": version["digest"],
                "shared": store.shared, "files": version["files"], "bytes": version["bytes"],
                "path": version["path"]}

    def _freeze_output(self, job: Job, field: str) -> dict:
        store = self.own
        summary = store.output_summary(job.id)
        if summary is None:
            store.ensure()
            quota = self.jobs.settings.datasets_quota_bytes
            room = None if quota is None else quota - store.usage()
            output = Path(job.folder) / "output"
            staged = self._stage(store, output, {}, room, f"{field}.job")
            header = {"job": job.id, "job_name": job.name, "created": utcnow().isoformat(), "creator": creator(),
                      "source": str(output)}
            summary = store.commit_output(job.id, staged, header)
        return {"job": job.id, "job_name": summary["job_name"], "digest": summary["digest"],
                "files": summary["files"], "bytes": summary["bytes"], "path": str(store.output_dir(job.id) / "files")}


def check_name_quietly(name: str) -> bool:
    try:
        check_name(name)
        return True
    except JobError:
        return False


def _has_entries(folder: Path) -> bool:
    try:
        with os.scandir(folder) as it:
            return next(it, None) is not None
    except OSError:
        return False
