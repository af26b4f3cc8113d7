"""Projects: a name that groups jobs, experiments and datasets aimed at one goal (FloydHub's project).

A project is not a thing one creates: it is the ``project`` of what belongs to it
(``default`` unless given), so it exists while something names it. Its page says
how one output fed the next: each job with its inputs, and the jobs that mounted
its output.
"""

from __future__ import annotations

from .experiments.service import ExperimentService
from .service import DEFAULT_PROJECT, JobError, JobService, check_project

MAX_PAGE_JOBS = 1000


class ProjectService:
    def __init__(self, jobs: JobService, experiments: ExperimentService):
        self.jobs, self.experiments = jobs, experiments

    def list(self) -> list[dict]:
        """Every project with its counts, ``default`` first, then by name."""
        jobs = self.jobs.store.projects()
        experiments = self.experiments.store.projects()
        datasets: dict[str, int] = {}
        for dataset in self.jobs.datasets.list():
            if not dataset["shared"]:
                datasets[dataset["project"]] = datasets.get(dataset["project"], 0) + 1
        names = sorted({DEFAULT_PROJECT, *jobs, *experiments, *datasets}, key=lambda n: (n != DEFAULT_PROJECT, n))
        return [{"name": name, "jobs": jobs.get(name, 0), "experiments": experiments.get(name, 0),
                 "datasets": datasets.get(name, 0)} for name in names]

    def get(self, name: str) -> dict:
        """The project's page: its jobs (newest first, each with ``used_by``: the jobs that mounted its output),
        its experiments and its datasets."""
        check_project(name, "name")
        if name not in {p["name"] for p in self.list()}:
            raise JobError(404, f"no project {name!r}: nothing belongs to it", "name")
        jobs, _ = self.jobs.store.list(project=name, limit=MAX_PAGE_JOBS)
        used_by: dict[str, list[str]] = {}
        for job in self.jobs.store.with_inputs():
            for entry in job.inputs:
                if "job" in entry:
                    used_by.setdefault(entry["job"], []).append(job.id)
        experiments, _ = self.experiments.list(project=name, limit=MAX_PAGE_JOBS)
        return {
            "name": name,
            "jobs": [{**self.jobs.job_json(job), "used_by": used_by.get(job.id, [])} for job in jobs],
            "experiments": experiments,
            "datasets": self.jobs.datasets.list(project=name),
        }
