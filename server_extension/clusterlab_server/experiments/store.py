"""Experiments' records: a table beside the jobs' in the user's job store.

An experiment's trials are jobs (``jobs.experiment_id``, ``jobs.trial``), and so is
its controller (``jobs.kind == "controller"``); this row holds what the request
was (its checked spec) and how the experiment stands as a whole.

It is the same index as the jobs' (one file, :mod:`..sqlite_index`), and as
theirs, its rows can be rebuilt from the folders: the experiment's
``experiment.json`` holds the request, and the store writes its status there too.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from sqlalchemy import JSON, DateTime, String, delete, func, select
from sqlalchemy.orm import Mapped, mapped_column

from ..sqlite_index import Sessions, SQLiteIndex, indexed
from ..service import Settings
from ..store import Base, iso, parse_time, update_record, utcnow

EXPERIMENT_STATUSES = ("running", "completed", "failed", "cancelled")
STATE_FILE = "experiment.json"  # the experiment's record: its request and settings (the controller's state)


# the settings the experiment's controller runs its trials with, as the state file keeps them
def settings_to_json(settings: Settings) -> dict:
    return {
        "jobs_root": str(settings.jobs_root), "workspace": str(settings.workspace),
        "template_paths": [str(p) for p in settings.template_paths], "profiles_file": str(settings.profiles_file),
        "backend": settings.backend, "extra_roots": [str(p) for p in settings.extra_roots],
        "snapshot_max_bytes": settings.snapshot_max_bytes, "slurm_bin_dir": settings.slurm_bin_dir,
        "max_concurrent_trials": settings.max_concurrent_trials, "datasets_root": str(settings.datasets_root),
        "site_datasets": str(settings.site_datasets), "datasets_quota_bytes": settings.datasets_quota_bytes,
    }


def settings_from_json(data: dict) -> Settings:
    paths = {"jobs_root", "workspace", "profiles_file", "datasets_root", "site_datasets"}
    lists = {"template_paths", "extra_roots"}
    return Settings(**{k: Path(v) if k in paths else [Path(p) for p in v] if k in lists else v
                       for k, v in data.items()})


RECORDED = {"status", "reason", "created", "ended"}


class Experiment(Base):
    __tablename__ = "experiments"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), index=True)
    template: Mapped[str] = mapped_column(String(60))
    spec: Mapped[dict] = mapped_column(JSON)
    folder: Mapped[str] = mapped_column(String(1000))
    status: Mapped[str] = mapped_column(String(20), index=True, default="running")
    reason: Mapped[str] = mapped_column(String(500), default="")
    created: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    ended: Mapped[datetime.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    project: Mapped[str] = mapped_column(String(100), default="default", index=True)

    @property
    def final(self) -> bool:
        return self.status != "running"

    @property
    def inputs(self) -> list[dict]:
        """The dataset versions and job outputs its trials mount, pinned (so that none is deleted meanwhile)."""
        return (self.spec or {}).get("uses", [])


class ExperimentStore:
    def __init__(self, engine):
        """``engine``: the job store's (``JobStore.engine``), whose index this table is part of."""
        self.index = SQLiteIndex.of(engine)
        self.session: Sessions = self.index.session
        self.index.run(lambda: Experiment.__table__.create(self.session.writer, checkfirst=True))

    @indexed
    def add(self, experiment: Experiment) -> None:
        with self.session.begin() as s:
            s.add(experiment)
            s.flush()
            write_experiment_record(experiment)

    @indexed
    def get(self, experiment_id: str) -> Experiment | None:
        with self.session() as s:
            return s.get(Experiment, experiment_id)

    @indexed
    def list(self, status: str | None, limit: int, offset: int, project: str | None = None
             ) -> tuple[list[Experiment], int]:
        query = select(Experiment)
        if project:
            query = query.where(Experiment.project == project)
        if status:
            query = query.where(Experiment.status == status)
        with self.session() as s:
            total = s.scalar(select(func.count()).select_from(query.subquery()))
            newest_first = query.order_by(Experiment.created.desc(), Experiment.id.desc())
            rows = s.scalars(newest_first.limit(limit).offset(offset))
            return list(rows), total

    @indexed
    def unfinished(self) -> list[Experiment]:
        with self.session() as s:
            return list(s.scalars(select(Experiment).where(Experiment.status == "running")))

    @indexed
    def projects(self) -> dict[str, int]:
        with self.session() as s:
            rows = s.execute(select(Experiment.project, func.count()).group_by(Experiment.project))
            return {project or "default": count for project, count in rows}

    @indexed
    def update(self, experiment_id: str, only_if_running: bool = False, **changes) -> bool:
        """Change a row; ``only_if_running``: only while it runs (a cancel is never overwritten)."""
        with self.session.begin() as s:
            row = s.get(Experiment, experiment_id)
            if row is None or (only_if_running and row.status != "running"):
                return False
            for key, value in changes.items():
                setattr(row, key, value)
            if RECORDED & changes.keys():
                write_experiment_record(row)
            return True

    @indexed
    def delete(self, experiment_id: str) -> None:
        with self.session.begin() as s:
            s.execute(delete(Experiment).where(Experiment.id == experiment_id))


def write_experiment_record(row: Experiment) -> None:
    """How the experiment stands, in its ``experiment.json`` beside the request (for a rebuild of the index)."""
    update_record(Path(row.folder) / STATE_FILE, {"status": row.status, "reason": row.reason,
                                                  "created": iso(row.created), "ended": iso(row.ended)})


def experiments_from_folders(root: Path, unreadable: list[str]):
    """The rows of the experiments whose folders are under ``root``, from their ``experiment.json``; what
    cannot be read is said in ``unreadable``. One from before records held a status is running: its
    controller's job says whether it still is."""
    for state_file in sorted(root.glob(f"*/{STATE_FILE}")):
        try:
            state = json.loads(state_file.read_text())
            spec = state["spec"]
            created = parse_time(state.get("created")) or datetime.datetime.strptime(
                state["id"][:15], "%Y%m%d-%H%M%S").replace(tzinfo=datetime.timezone.utc)
            row = Experiment(
                id=state["id"], name=spec["name"], template=spec["template"], spec=spec, folder=str(state_file.parent),
                status=state.get("status") if state.get("status") in EXPERIMENT_STATUSES else "running",
                reason=state.get("reason") or "", created=created, ended=parse_time(state.get("ended")),
                project=spec.get("project") or "default",
            )
        except (OSError, ValueError, TypeError, KeyError) as e:
            unreadable.append(f"{state_file}: {e}")
            continue
        yield row
