"""The job store: one SQLite file per user, through SQLAlchemy.

The job folder (``job.json``, parameters, code, output, log) is the record a
user keeps; this table is the index that makes listing 1,000 jobs instant and
holds what the scheduler said last (status, node, exit code, reason).

The record stays the truth: what lasts of what the scheduler said is written to
``job.json`` as well, so that the index can be rebuilt from the folders, and is,
by itself, when it is found missing or broken. The file lives on the user's home,
a network file system on a cluster that several hosts write at once (the server,
the CLI on a login node, an experiment's controller on a compute node): it is
opened as :mod:`.sqlite_index` says (a rollback journal and POSIX locks, never
WAL; docs/job-store.md).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import secrets
import socket
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy import JSON, DateTime, Engine, Integer, String, delete, func, inspect, select, text, update
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from .sqlite_index import Sessions, SQLiteIndex, indexed

log = logging.getLogger("clusterlab.store")

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
    """The user's jobs: the index (``jobs.sqlite``, through :class:`~.sqlite_index.SQLiteIndex`) and the records.

    Every change that lasts (the scheduler's handle, a status, an exit code, a restart) is written
    to the job's ``job.json`` too, in the same write transaction: the index can always be rebuilt
    from the folders (``reindex``; by itself when it is found broken or missing), and the record a
    user keeps says how the job ended. A controller's record is its experiment folder's ``job.json``.
    """

    def __init__(self, path: Path):
        self.root = path.parent
        self.index = SQLiteIndex(path, table=Job.__tablename__, schema=make_tables, records_exist=self._records_exist,
                                 rebuild=self._rebuild, backfill=self._backfill)
        self.engine = self.index.engine
        self.session: Sessions = self.index.session
        self.index.open()

    @indexed
    def add(self, job: Job) -> None:
        try:
            with self.session.begin() as s:
                s.add(job)
                s.flush()  # the columns' defaults are on ``job`` now, for its record
                write_record(job)
        except IntegrityError:  # a rebuild of the index found its folder first: the same job
            with self.session.begin() as s:
                s.merge(job)

    @indexed
    def get(self, job_id: str) -> Job | None:
        with self.session() as s:
            return s.get(Job, job_id)

    @indexed
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

    @indexed
    def with_inputs(self) -> list[Job]:
        """Every job that mounts something (to say who used a dataset version or a job's output)."""
        with self.session() as s:
            return [job for job in s.scalars(select(Job).where(Job.inputs.is_not(None))) if job.inputs]

    @indexed
    def projects(self) -> dict[str, int]:
        """Each project's number of jobs (controllers not counted)."""
        with self.session() as s:
            rows = s.execute(select(Job.project, func.count()).where(Job.kind == "job").group_by(Job.project))
            return {project or "default": count for project, count in rows}

    @indexed
    def unfinished(self) -> list[Job]:
        with self.session() as s:
            return list(s.scalars(select(Job).where(Job.status.not_in(FINAL))))

    @indexed
    def of_experiment(self, experiment_id: str) -> list[Job]:
        """Every job of an experiment (its trials and its controller), in trial order."""
        with self.session() as s:
            return list(s.scalars(select(Job).where(Job.experiment_id == experiment_id).order_by(Job.trial)))

    @indexed
    def claim(self, job_id: str, scheduler_id: str, marker: str) -> bool:
        """Set ``scheduler_id`` to ``marker`` only if it still is ``scheduler_id``: one of several
        pollers (the server's, an experiment controller's) wins the right to restart a job."""
        with self.session.begin() as s:
            result = s.execute(
                update(Job).where(Job.id == job_id, Job.scheduler_id == scheduler_id).values(scheduler_id=marker)
            )
            return result.rowcount == 1

    @indexed
    def delete(self, job_ids: list[str]) -> None:
        with self.session.begin() as s:
            s.execute(delete(Job).where(Job.id.in_(job_ids)))

    @indexed
    def update(self, job_id: str, **changes) -> Job | None:
        with self.session.begin() as s:
            job = s.get(Job, job_id)
            if job is None:
                return None
            for key, value in changes.items():
                setattr(job, key, value)
            if RECORDED & changes.keys():
                write_record(job)
            return job

    def reindex(self) -> dict:
        """Rebuild the index from the folders, in place (what ``clusterlab reindex`` does):
        ``{"jobs": n, "experiments": n, "unreadable": ["<folder>: <why>", ...]}``."""
        return self.index.repair(replace=True)

    # ----- the records ----------------------------------------------------------------------

    def _record_files(self):
        """``(job.json, kind)`` of every folder: jobs under the root, controllers in their experiments' folders."""
        for record_file in sorted(self.root.glob(f"*/{RECORD}")):
            if not record_file.parent.name.startswith("."):  # .staging-<id>: not submitted (yet)
                yield record_file, "job"
        for record_file in sorted((self.root / "experiments").glob(f"*/{RECORD}")):
            yield record_file, "controller"

    def _records_exist(self) -> bool:
        from .experiments.store import STATE_FILE

        return (next(self._record_files(), None) is not None
                or next((self.root / "experiments").glob(f"*/{STATE_FILE}"), None) is not None)

    def _rebuild(self, s: Session, replace: bool) -> dict:
        from .experiments.store import Experiment, experiments_from_folders

        if replace:
            s.execute(delete(Job))
            s.execute(delete(Experiment))
        done: dict = {"jobs": 0, "experiments": 0, "unreadable": []}
        for record_file, kind in self._record_files():
            try:
                job = job_from_record(json.loads(record_file.read_text()), record_file.parent, kind)
            except (OSError, ValueError, TypeError, KeyError) as e:
                done["unreadable"].append(f"{record_file}: {e}")
                continue
            s.merge(job)
            done["jobs"] += 1
        for row in experiments_from_folders(self.root / "experiments", done["unreadable"]):
            s.merge(row)
            done["experiments"] += 1
        return done

    def _backfill(self, s: Session) -> None:
        """Write what the rows hold into the folders' records (a store an older version kept, whose records
        lack the scheduler's handle and how each job ended)."""
        from .experiments.store import Experiment, write_experiment_record

        for job in s.scalars(select(Job)):
            write_record(job)
        for row in s.scalars(select(Experiment)):
            write_experiment_record(row)


# what the index learns about a job after its folder was made: written to its record too
RECORDED = {"status", "scheduler_id", "reason", "node", "exit_code", "start_time", "end_time", "restarts",
            "restart_history", "requeues"}
RECORD = "job.json"
REQUIRED = ("id", "name", "template", "template_version", "params", "profile", "hours", "backend")


def make_tables(engine) -> None:
    """Every table of the store (the experiments' too: a rebuild fills both), and the columns added since;
    ``engine``: an Engine, or a Connection whose transaction they join."""
    from .experiments.store import Experiment

    Base.metadata.create_all(engine, tables=[Job.__table__, Experiment.__table__])
    add_missing_columns(engine)


def update_record(path: Path, changes: dict) -> None:
    """``path``'s JSON object with ``changes`` in it, replaced at once (a new file renamed over it, so that
    a reader, or a writer on another host, never sees half of one). Nothing when its folder is gone (an
    experiment deleted meanwhile); a record that cannot be written is logged, not raised: the index
    has the change all the same."""
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        record = {}
    except (OSError, ValueError):
        record = {}
    if not isinstance(record, dict):
        record = {}
    record.update(changes)
    tmp = path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.{secrets.token_hex(3)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileNotFoundError:
        return
    except OSError as e:
        log.warning("could not write %s: %s", path, e)
        return
    try:
        with os.fdopen(fd, "w") as f:
            f.write(dumps(record))
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        log.warning("could not write %s: %s", path, e)


def write_record(job: Job) -> None:
    update_record(Path(job.folder) / RECORD, {**job.to_json(), "kind": job.kind})


def parse_time(value: Any) -> datetime.datetime | None:
    if not value:
        return None
    parsed = datetime.datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.timezone.utc)


def job_from_record(record: dict, folder: Path, kind: str) -> Job:
    """A job's row from its folder's record (``job.json``): what it was asked, the scheduler's handle and how
    it ended. A record from before records said so (no ``status``) ends as its folder's marks say."""
    missing = [key for key in REQUIRED if key not in record]
    if missing:
        raise KeyError(f"no {', '.join(missing)}")
    values = {column.name: record[column.name] for column in Job.__table__.columns if column.name in record}
    for column in Job.__table__.columns:
        if isinstance(column.type, DateTime) and column.name in values:
            values[column.name] = parse_time(values[column.name])
    values.update(folder=str(folder), kind=record.get("kind", kind))
    values.setdefault("submit_time", parse_time(record.get("submit_time")) or utcnow())
    if values.get("status") not in STATUSES:
        values.update(status_from_folder(folder, values.get("scheduler_id")))
    return Job(**values)


def status_from_folder(folder: Path, scheduler_id: str | None) -> dict:
    """A status for a record that names none: queued when it names the scheduler's job (the next poll says
    more), else how its folder's marks say it ended."""
    if scheduler_id:
        return {"status": "queued"}
    from .backends.common import ended_status

    ended = ended_status(folder)
    ended.pop("restartable", None)
    marks = [folder / name for name in ("exit_code", "cancelled", "pruned") if (folder / name).exists()]
    ended["end_time"] = (datetime.datetime.fromtimestamp(marks[0].stat().st_mtime, datetime.timezone.utc)
                         if marks else None)
    if not marks:
        ended["reason"] = "its folder does not say how it ended (the index was rebuilt from it)"
    return ended


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
            # an engine: a transaction of its own; a connection (a rebuild's): inside its transaction
            with engine.begin() if isinstance(engine, Engine) else contextlib.nullcontext(engine) as connection:
                try:
                    connection.execute(text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}{clause}'))
                except OperationalError as e:  # another process added it first
                    if "duplicate column" not in str(e):
                        raise


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True, default=str)
