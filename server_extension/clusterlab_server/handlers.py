"""REST API of the job service, under ``<server base>/clusterlab/api/``.

jupyter_server's ``APIHandler`` gives the server's authentication (the hub's
token or cookie) and XSRF checks on writes. Every refusal is JSON
``{"error": ..., "field": ...}`` with a 4xx status, raised by the service as
:class:`~.service.JobError`, so the API and the CLI say the same thing.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
import time
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from jupyter_server.base.handlers import APIHandler
from tornado import iostream, web

from . import gpus
from .datasets.service import DatasetService
from .experiments.service import ExperimentService
from .openapi import openapi_document
from .projects import ProjectService
from .service import JobError, JobService, check_name
from .tensorboard import TensorBoardManager

MAX_BODY_BYTES = 256 * 1024
FOLLOW_SECONDS = 20
MAX_INT = 2**63 - 1
FILE_CHUNK_BYTES = 512 * 1024

# what a dataset's file is served as: pictures and tables the lab shows, plain text for the rest it reads;
# anything else (html, svg, javascript...) is bytes to save, never a page the browser would run
FILE_TYPES = {
    ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif", ".webp": "image/webp",
    ".bmp": "image/bmp",
    ".csv": "text/csv; charset=utf-8", ".tsv": "text/tab-separated-values; charset=utf-8",
    **{suffix: "text/plain; charset=utf-8"
       for suffix in (".txt", ".md", ".log", ".json", ".jsonl", ".yaml", ".yml", ".py", ".cfg", ".ini", ".toml")},
}
OCTET_STREAM = "application/octet-stream"
VERSION_RULE = re.compile(r"^[0-9]{1,18}$")


def json_errors(method):
    """Turn a JobError into its JSON answer."""

    @functools.wraps(method)
    async def wrapper(self, *args, **kwargs):
        try:
            result = method(self, *args, **kwargs)
            if asyncio.iscoroutine(result):
                await result
        except JobError as e:
            self.set_status(e.status)
            self.finish(json.dumps(e.to_json()))

    return wrapper


class ClusterLabHandler(APIHandler):
    @property
    def service(self) -> JobService:
        return self.settings["clusterlab_service"]

    def body(self):
        if len(self.request.body) > MAX_BODY_BYTES:
            raise JobError(413, f"the body is larger than {MAX_BODY_BYTES // 1024} KB")
        try:
            return json.loads(self.request.body or b"{}")
        except ValueError:
            raise JobError(400, "the body is not valid JSON") from None

    def name_argument(self, name: str) -> str | None:
        """An optional query argument that follows the name rule (``?project=``); None when absent."""
        value = self.get_query_argument(name, None)
        return None if value is None else check_name(value, name)

    def int_argument(self, name: str, default: int) -> int:
        value = self.get_query_argument(name, str(default))
        try:
            number = int(value)
        except ValueError:
            raise JobError(400, f"{name} must be an integer", name) from None
        # SQLite (OFFSET) and seek() take 64-bit integers: a larger one was a 500
        if abs(number) > MAX_INT:
            raise JobError(400, f"{name} is too large", name)
        return number

    @staticmethod
    def version_number(version: str) -> int:
        """A version in the URL (a dataset's, a model's): 1, 2, 3...; anything else is a 400 naming it."""
        if not VERSION_RULE.match(version) or int(version) < 1:
            raise JobError(400, "version must be a whole number from 1 up", "version")
        return int(version)

    async def fresh(self) -> None:
        """Statuses no older than the poll interval, even between the poller's rounds."""
        await asyncio.to_thread(self.service.refresh_if_older, self.settings["clusterlab_poll_interval"])

    def reply(self, data, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(data))


class TemplatesHandler(ClusterLabHandler):
    @web.authenticated
    @json_errors
    def get(self):
        registry = self.service.registry
        self.reply({
            "templates": [t.to_json() for t in sorted(registry.templates.values(), key=lambda t: t.id)],
            "problems": registry.problems,
        })


class TemplateHandler(ClusterLabHandler):
    @web.authenticated
    @json_errors
    def get(self, template_id):
        self.reply(self.service.template(template_id, field="id").to_json())


class ProfilesHandler(ClusterLabHandler):
    @web.authenticated
    @json_errors
    async def get(self):
        """The sizes, each with whether a job of it would start now, queue, or never start here.

        With ``?template=<id>``, also ``default``: the size a job of it gets when it
        names none (the job form's first choice, the API's and the CLI's default).
        """
        sizes = self.service.profiles
        availability = await asyncio.to_thread(self.service.availability, sizes)
        profiles = [
            {"id": p.id, "display_name": p.display_name, "description": p.description, "cpus": p.cpus,
             "memory_gb": p.memory_gb, "gpus": p.gpus, "max_hours": p.max_hours,
             "default_hours": p.default_hours, "summary": p.summary, "availability": availability[p.id]}
            for p in sizes.values()
        ]
        answer = {"profiles": profiles, "backend": self.service.backend.name}
        template_id = self.get_query_argument("template", None)
        if template_id is not None:
            default, why = self.service.default_profile(self.service.template(template_id), availability)
            answer["default"] = {"id": default, "why": why}
        self.reply(answer)


class JobsHandler(ClusterLabHandler):
    @web.authenticated
    @json_errors
    async def get(self):
        await self.fresh()
        jobs, total = self.service.list(
            status=self.get_query_argument("status", None),
            template=self.get_query_argument("template", None),
            project=self.name_argument("project"),
            limit=self.int_argument("limit", 100),
            offset=self.int_argument("offset", 0),
        )
        self.reply({"jobs": [self.service.job_json(j) for j in jobs], "total": total})

    @web.authenticated
    @json_errors
    def post(self):
        job = self.service.submit(self.body())
        self.set_header("Location", self.request.path.rstrip("/") + "/" + job.id)
        self.reply(self.service.job_json(job), 201)


class JobHandler(ClusterLabHandler):
    @web.authenticated
    @json_errors
    async def get(self, job_id):
        await self.fresh()
        self.reply(self.service.job_json(self.service.get(job_id)))

    @web.authenticated
    @json_errors
    def delete(self, job_id):
        self.reply(self.service.job_json(self.service.cancel(job_id)))


class RerunHandler(ClusterLabHandler):
    @web.authenticated
    @json_errors
    def post(self, job_id):
        self.reply(self.service.job_json(self.service.rerun(job_id, self.body())), 201)


class MetricsHandler(ClusterLabHandler):
    @web.authenticated
    @json_errors
    def get(self, job_id):
        """Every complete line of the job's metrics.jsonl, for its charts."""
        self.reply(self.service.metrics(job_id))


class LogHandler(ClusterLabHandler):
    @web.authenticated
    @json_errors
    async def get(self, job_id):
        """``?offset=N``: the log from byte N; ``&follow=1``: wait (up to 20 s) for more."""
        offset = self.int_argument("offset", 0)
        follow = self.get_query_argument("follow", "0") in ("1", "true")
        await self.fresh()
        # off the event loop: on Kubernetes the log may come from the API server (the pod's log)
        chunk = await asyncio.to_thread(self.service.log, job_id, offset)
        deadline = time.monotonic() + FOLLOW_SECONDS
        while follow and not chunk["text"] and not chunk["done"] and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            await asyncio.to_thread(self.service.refresh)
            chunk = await asyncio.to_thread(self.service.log, job_id, offset)
        self.reply(chunk)


class ExperimentsBase(ClusterLabHandler):
    @property
    def experiments(self) -> ExperimentService:
        return self.settings["clusterlab_experiments"]


class ExperimentsHandler(ExperimentsBase):
    @web.authenticated
    @json_errors
    async def get(self):
        await self.fresh()
        experiments, total = self.experiments.list(
            status=self.get_query_argument("status", None), project=self.name_argument("project"),
            limit=self.int_argument("limit", 100), offset=self.int_argument("offset", 0),
        )
        self.reply({"experiments": experiments, "total": total})

    @web.authenticated
    @json_errors
    async def post(self):
        # off the event loop: checking paths and sizes may wait on the scheduler (sinfo)
        experiment = await asyncio.to_thread(self.experiments.create, self.body())
        self.set_header("Location", self.request.path.rstrip("/") + "/" + experiment["id"])
        self.reply(experiment, 201)


class ExperimentHandler(ExperimentsBase):
    @web.authenticated
    @json_errors
    async def get(self, experiment_id):
        await self.fresh()
        self.reply(self.experiments.get(experiment_id))

    @web.authenticated
    @json_errors
    async def delete(self, experiment_id):
        await asyncio.to_thread(self.experiments.delete, experiment_id)
        self.set_status(204)
        self.finish()


class ExperimentCancelHandler(ExperimentsBase):
    @web.authenticated
    @json_errors
    async def post(self, experiment_id):
        self.reply(await asyncio.to_thread(self.experiments.cancel, experiment_id))


class ExperimentResumeHandler(ExperimentsBase):
    @web.authenticated
    @json_errors
    async def post(self, experiment_id):
        self.reply(await asyncio.to_thread(self.experiments.resume, experiment_id))


class ExperimentRerunBestHandler(ExperimentsBase):
    @web.authenticated
    @json_errors
    async def post(self, experiment_id):
        job = await asyncio.to_thread(self.experiments.rerun_best, experiment_id, self.body())
        self.reply(self.service.job_json(job), 201)


class ExperimentCSVHandler(ExperimentsBase):
    @web.authenticated
    @json_errors
    def get(self, experiment_id):
        text = self.experiments.trials_csv(experiment_id)
        self.set_header("Content-Disposition", f'attachment; filename="experiment-{experiment_id}-trials.csv"')
        self.finish(text, set_content_type="text/csv; charset=utf-8")


class GPUsHandler(ClusterLabHandler):
    @web.authenticated
    @json_errors
    async def get(self):
        """The GPUs granted to this server and their use (nvidia-smi, when there is one)."""
        self.reply(await asyncio.to_thread(gpus.status))


class TensorBoardHandler(ClusterLabHandler):
    """The user's TensorBoard over their jobs' outputs, reached through ``<base_url>proxy/<port>/...``."""

    @property
    def tensorboard(self) -> TensorBoardManager:
        return self.settings["clusterlab_tensorboard"]

    @web.authenticated
    @json_errors
    def get(self):
        self.reply(self.tensorboard.status())

    @web.authenticated
    @json_errors
    async def post(self):
        """``{"jobs": [ids]}`` (none or empty: all jobs): start, restart over other jobs, or reuse (keep-alive)."""
        self.reply(await self.tensorboard.start(self.body()))

    @web.authenticated
    @json_errors
    async def delete(self):
        self.reply(await self.tensorboard.stop())


class DatasetsBase(ClusterLabHandler):
    """Datasets: versions reading and hashing files, so every call runs off the event loop."""

    @property
    def datasets(self) -> DatasetService:
        return self.service.datasets

    @staticmethod
    def dataset_name(name: str) -> str:
        return check_name(name, "name")



class DatasetsHandler(DatasetsBase):
    @web.authenticated
    @json_errors
    async def get(self):
        project = self.name_argument("project")
        self.reply({"datasets": await asyncio.to_thread(self.datasets.list, project=project)})

    @web.authenticated
    @json_errors
    async def post(self):
        version = await asyncio.to_thread(self.datasets.create, self.body())
        self.set_header("Location", f"{self.request.path.rstrip('/')}/{version['name']}/{version['version']}")
        self.reply(version, 201)


class DatasetHandler(DatasetsBase):
    @web.authenticated
    @json_errors
    async def get(self, name):
        self.reply(await asyncio.to_thread(self.datasets.get, self.dataset_name(name)))


class DatasetVersionHandler(DatasetsBase):
    @web.authenticated
    @json_errors
    async def get(self, name, version):
        """The version, and which jobs used it."""
        name, number = self.dataset_name(name), self.version_number(version)
        self.reply(await asyncio.to_thread(self.datasets.version, name, number))

    @web.authenticated
    @json_errors
    async def delete(self, name, version):
        name, number = self.dataset_name(name), self.version_number(version)
        await asyncio.to_thread(self.datasets.delete, name, number)
        self.set_status(204)
        self.finish()


class DatasetManifestHandler(DatasetsBase):
    @web.authenticated
    @json_errors
    async def get(self, name, version):
        name, number = self.dataset_name(name), self.version_number(version)
        self.reply(await asyncio.to_thread(self.datasets.manifest, name, number))


class DatasetPreviewHandler(DatasetsBase):
    @web.authenticated
    @json_errors
    async def get(self, name, version):
        """The first pictures and the first rows of the first table, for the datasets panel."""
        name, number = self.dataset_name(name), self.version_number(version)
        self.reply(await asyncio.to_thread(self.datasets.preview, name, number))


def file_type(path: str) -> str:
    """The Content-Type a dataset's file is served with (by its extension, see FILE_TYPES)."""
    return FILE_TYPES.get(PurePosixPath(path).suffix.lower(), OCTET_STREAM)


def check_file_path(path: str) -> str:
    """A file's path inside a version, as the URL gives it: relative, no ``..``, nothing odd.

    DatasetService.file() resolves it inside the version too; this refuses the obvious
    escapes before any file is looked at.
    """
    parts = path.split("/")
    if (not path or path.startswith("/") or "\\" in path or "\x00" in path
            or any(part in ("", ".", "..") for part in parts)):
        raise JobError(404, f"no file {path[:200]!r} in this version", "path")
    return path


class DatasetFileHandler(DatasetsBase):
    @web.authenticated
    @json_errors
    async def get(self, name, version, path):
        """One file of a version, streamed; never served as a page (nosniff, no html)."""
        name, number, path = self.dataset_name(name), self.version_number(version), check_file_path(path)
        found: Path = await asyncio.to_thread(self.datasets.file, name, number, path)
        try:
            handle = await asyncio.to_thread(open, found, "rb")
        except OSError:
            raise JobError(404, f"no file {path[:200]!r} in {name}:{number}", "path") from None
        with handle:
            kind = file_type(path)
            self.set_header("Content-Type", kind)
            self.set_header("X-Content-Type-Options", "nosniff")
            self.set_header("Content-Length", str(os.fstat(handle.fileno()).st_size))
            disposition = "inline" if kind != OCTET_STREAM else "attachment"
            self.set_header("Content-Disposition", f"{disposition}; filename*=UTF-8''{quote(PurePosixPath(path).name)}")
            try:
                while chunk := await asyncio.to_thread(handle.read, FILE_CHUNK_BYTES):
                    self.write(chunk)
                    await self.flush()
            except iostream.StreamClosedError:  # the browser went away mid-file
                return
        # APIHandler.finish would set JSON over the file's type
        self.finish(set_content_type=kind)


class ProjectsBase(ClusterLabHandler):
    @property
    def projects(self) -> ProjectService:
        return self.settings["clusterlab_projects"]


class ProjectsHandler(ProjectsBase):
    @web.authenticated
    @json_errors
    async def get(self):
        """Every project with its counts of jobs, experiments and datasets ("default" always)."""
        await self.fresh()
        self.reply({"projects": await asyncio.to_thread(self.projects.list)})


class ProjectHandler(ProjectsBase):
    @web.authenticated
    @json_errors
    async def get(self, name):
        """A project's page: its jobs (with who used their outputs), experiments and datasets."""
        await self.fresh()
        self.reply(await asyncio.to_thread(self.projects.get, check_name(name, "name")))


class OpenAPIHandler(ClusterLabHandler):
    @web.authenticated
    def get(self):
        self.reply(openapi_document(self.base_url))


def handlers(base: str) -> list[tuple]:
    from .studio.handlers import studio_handlers  # it builds on this module's base class

    job = r"(?P<job_id>[^/]+)"
    experiment = r"(?P<experiment_id>[^/]+)"
    dataset = r"(?P<name>[^/]+)/(?P<version>[^/]+)"
    return [
        (f"{base}/templates", TemplatesHandler),
        (f"{base}/templates/(?P<template_id>[^/]+)", TemplateHandler),
        (f"{base}/profiles", ProfilesHandler),
        (f"{base}/jobs", JobsHandler),
        (f"{base}/jobs/{job}", JobHandler),
        (f"{base}/jobs/{job}/log", LogHandler),
        (f"{base}/jobs/{job}/metrics", MetricsHandler),
        (f"{base}/jobs/{job}/rerun", RerunHandler),
        (f"{base}/experiments", ExperimentsHandler),
        (f"{base}/experiments/{experiment}", ExperimentHandler),
        (f"{base}/experiments/{experiment}/cancel", ExperimentCancelHandler),
        (f"{base}/experiments/{experiment}/resume", ExperimentResumeHandler),
        (f"{base}/experiments/{experiment}/rerun-best", ExperimentRerunBestHandler),
        (f"{base}/experiments/{experiment}/trials.csv", ExperimentCSVHandler),
        (f"{base}/datasets", DatasetsHandler),
        (f"{base}/datasets/(?P<name>[^/]+)", DatasetHandler),
        (f"{base}/datasets/{dataset}", DatasetVersionHandler),
        (f"{base}/datasets/{dataset}/manifest", DatasetManifestHandler),
        (f"{base}/datasets/{dataset}/preview", DatasetPreviewHandler),
        (f"{base}/datasets/{dataset}/files/(?P<path>.+)", DatasetFileHandler),
        (f"{base}/projects", ProjectsHandler),
        (f"{base}/projects/(?P<name>[^/]+)", ProjectHandler),
        (f"{base}/tensorboard", TensorBoardHandler),
        (f"{base}/gpus", GPUsHandler),
        (f"{base}/openapi.json", OpenAPIHandler),
        *studio_handlers(base),
    ]
