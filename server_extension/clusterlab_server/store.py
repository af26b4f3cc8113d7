"""The job store: one SQLite file per user, through SQLAlchemy.

The job folder (``job.json``, parameters, code, output, log) is the record a
user keeps; this table is the index that makes listing 1,000 jobs instant and
holds what the scheduler said last (status, node, exit code, reason).
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

from sqlalchemy.exc import OperationalError
from sqlalchemy import (
    JSON, DateTime, Integer, String, create_engine, delete, event, func, inspect, select, text, update,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

# pruned: stopped early by an experiment's pruner (ASHA), neither the user's cancel nor a failure
STATUSES = ("queued", "running", "completed", "failed", "cancelled", "pruned")
FINAL = ("completed", "failed", "cancelled", "pruned")
DEFAULT_MAX_RESTARTS = 5  # Determined's default


class Base(DeclarativeBase):
    pass


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def iso(value: datetime.datetime | None) -> str | None:
    """A stored time in ISO 8601 with its zone: SQLite drops the zone, and we only ever store UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    return value.isoformat()


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), index=True)
    template: Mapped[str] = mapped_column(String(60), index=True)
    template_version: Mapped[str] = mapped_column(String(40))
    params: Mapped[dict] = mapped_column(JSON)
    profile: Mapped[str] = mapped_column(String(40))
    hours: Mapped[float] = mapped_column()
    backend: Mapped[str] = mapped_column(String(20))
    folder: Mapped[str] = mapped_column(String(1000))
    status: Mapped[str] = mapped_column(String(20), index=True, default="queued")
    # the scheduler's handle: a Slurm job id, or "pid:create_time" for a local process
    scheduler_id: Mapped[str] = mapped_column(String(100), default="")
    reason: Mapped[str] = mapped_column(String(500), default="")
    node: Mapped[str] = mapped_column(String(200), default="")
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    rerun_of: Mapped[str | None] = mapped_column(String(64), nullable=True)
    submit_time: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    start_time: Mapped[datetime.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    end_time: Mapped[datetime.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # "job", or "controller" (an experiment's controller: a job too, but not listed among the user's jobs)
    kind: Mapped[str] = mapped_column(String(20), default="job", index=True)
    experiment_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    trial: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # restarts after ends that were not the job's own error (a kill, a node failure, a preemption)
    restarts: Mapped[int] = mapped_column(Integer, default=0)
    max_restarts: Mapped[int] = mapped_column(Integer, default=DEFAULT_MAX_RESTARTS)
    restart_history: Mapped[list] = mapped_column(JSON, default=list)
    # the project it belongs to, and what it mounts at input/<as>/: dataset versions and earlier jobs'
    # outputs, each pinned to its manifest digest (datasets.DatasetService.resolve_input)
    project: Mapped[str] = mapped_column(String(100), default="default", index=True)
    inputs: Mapped[list] = mapped_column(JSON, default=list)
    # while queued: when the scheduler expects it to start (Slurm's backfill estimate), if it says
    expected_start: Mapped[datetime.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # times the scheduler itself requeued it after a node failed under it (Slurm's --requeue); not restarts
    requeues: Mapped[int] = mapped_column(Integer, default=0)

    @property
    def final(self) -> bool:
        return self.status in FINAL

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "template": self.template,
            "template_version": self.template_version, "params": self.params,
            "profile": self.profile, "hours": self.hours, "backend": self.backend,
            "folder": self.folder, "status": self.status, "scheduler_id": self.scheduler_id,
            "reason": self.reason, "node": self.node, "exit_code": self.exit_code,
            "rerun_of": self.rerun_of, "submit_time": iso(self.submit_time),
            "start_time": iso(self.start_time), "end_time": iso(self.end_time),
            "experiment_id": self.experiment_id, "trial": self.trial, "restarts": self.restarts or 0,
            "max_restarts": self.max_restarts, "restart_history": self.restart_history or [],
            "project": self.project or "default", "inputs": self.inputs or [],
            "expected_start": iso(self.expected_start), "requeues": self.requeues or 0,
        }


class JobStore:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            # the owner's alone (with its -wal and -shm files, which SQLite gives the same mode)
            path.touch(mode=0o600)
        self.engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 30})

        @event.listens_for(self.engine, "connect")
        def _wal(connection, _record):  # readers never wait for the poller's writes
            connection.execute("PRAGMA journal_mode=WAL")

        try:
            Base.metadata.create_all(self.engine)
        except OperationalError as e:
            # two processes (the server and a CLI, say) creating a new store at once
            if "already exists" not in str(e):
                raise
        add_missing_columns(self.engine)
        self.session: sessionmaker[Session] = sessionmaker(self.engine, expire_on_commit=False)

    def add(self, job: Job) -> None:
        with self.session.begin() as s:
            s.add(job)

    def get(self, job_id: str) -> Job | None:
        with self.session() as s:
            return s.get(Job, job_id)

    def list(self, status: str | None = None, template: str | None = None,
             limit: int = 100, offset: int = 0, experiment_id: str | None = None,
             kind: str = "job", project: str | None = None) -> tuple[list[Job], int]:
        query = select(Job).where(Job.kind == kind)
        if project:
            query = query.where(Job.project == project)
        if experiment_id:
            query = query.where(Job.experiment_id == experiment_id)
        if status:
            query = query.where(Job.status == status)
        if template:
            query = query.where(Job.template == template)
        with self.session() as s:
            total = s.scalar(select(func.count()).select_from(query.subquery()))
            jobs = s.scalars(query.order_by(Job.submit_time.desc(), Job.id.desc()).limit(limit).offset(offset))
            return list(jobs), total

    def with_inputs(self) -> list[Job]:
        """Every job that mounts something (to say who used a dataset version or a job's output)."""
        with self.session() as s:
            return [job for job in s.scalars(select(Job).where(Job.inputs.is_not(None))) if job.inputs]

    def projects(self) -> dict[str, int]:
        """Each project's number of jobs (controllers not counted)."""
        with self.session() as s:
            rows = s.execute(select(Job.project, func.count()).where(Job.kind == "job").group_by(Job.project))
            return {project or "default": count for project, count in rows}

    def unfinished(self) -> list[Job]:
        with self.session() as s:
            return list(s.scalars(select(Job).where(Job.status.not_in(FINAL))))

    def of_experiment(self, experiment_id: str) -> list[Job]:
        """Every job of an experiment (its trials and its controller), in trial order."""
        with self.session() as s:
            return list(s.scalars(select(Job).where(Job.experiment_id == experiment_id).order_by(Job.trial)))

    def claim(self, job_id: str, scheduler_id: str, marker: str) -> bool:
        """Set ``scheduler_id`` to ``marker`` only if it still is ``scheduler_id``: one of several
        pollers (the server's, an experiment controller's) wins the right to restart a job."""
        with self.session.begin() as s:
            result = s.execute(
                update(Job).where(Job.id == job_id, Job.scheduler_id == scheduler_id).values(scheduler_id=marker)
            )
            return result.rowcount == 1

    def delete(self, job_ids: list[str]) -> None:
        with self.session.begin() as s:
            s.execute(delete(Job).where(Job.id.in_(job_ids)))

    def update(self, job_id: str, **changes) -> Job | None:
        with self.session.begin() as s:
            job = s.get(Job, job_id)
            if job is None:
                return None
            for key, value in changes.items():
                setattr(job, key, value)
            return job


def add_missing_columns(engine) -> None:
    """Columns added since a store was made get added to it (SQLite's ALTER TABLE ADD COLUMN),
    with their defaults, so that a user's existing jobs stay listed after an upgrade."""
    for table in Base.metadata.sorted_tables:
        present = {column["name"] for column in inspect(engine).get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            kind = column.type.compile(engine.dialect)
            default = column.default.arg if column.default is not None and not callable(column.default.arg) else None
            if isinstance(default, str):
                clause = f" DEFAULT '{default}'"
            elif isinstance(default, int):
                clause = f" DEFAULT {default}"
            else:
                clause = ""
            with engine.begin() as connection:
                try:
                    connection.execute(text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}{clause}'))
                except OperationalError as e:  # another process added it first
                    if "duplicate column" not in str(e):
                        raise


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True, default=str)
