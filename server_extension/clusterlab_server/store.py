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
from sqlalchemy import JSON, DateTime, Integer, String, create_engine, event, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

STATUSES = ("queued", "running", "completed", "failed", "cancelled")
FINAL = ("completed", "failed", "cancelled")


class Base(DeclarativeBase):
    pass


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


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

    @property
    def final(self) -> bool:
        return self.status in FINAL

    def to_json(self) -> dict[str, Any]:
        def iso(value):
            if value is None:
                return None
            if value.tzinfo is None:  # SQLite drops the zone; we only ever store UTC
                value = value.replace(tzinfo=datetime.timezone.utc)
            return value.isoformat()

        return {
            "id": self.id, "name": self.name, "template": self.template,
            "template_version": self.template_version, "params": self.params,
            "profile": self.profile, "hours": self.hours, "backend": self.backend,
            "folder": self.folder, "status": self.status, "scheduler_id": self.scheduler_id,
            "reason": self.reason, "node": self.node, "exit_code": self.exit_code,
            "rerun_of": self.rerun_of, "submit_time": iso(self.submit_time),
            "start_time": iso(self.start_time), "end_time": iso(self.end_time),
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
        self.session: sessionmaker[Session] = sessionmaker(self.engine, expire_on_commit=False)

    def add(self, job: Job) -> None:
        with self.session.begin() as s:
            s.add(job)

    def get(self, job_id: str) -> Job | None:
        with self.session() as s:
            return s.get(Job, job_id)

    def list(self, status: str | None = None, template: str | None = None,
             limit: int = 100, offset: int = 0) -> tuple[list[Job], int]:
        query = select(Job)
        if status:
            query = query.where(Job.status == status)
        if template:
            query = query.where(Job.template == template)
        with self.session() as s:
            total = s.scalar(select(func.count()).select_from(query.subquery()))
            jobs = s.scalars(query.order_by(Job.submit_time.desc(), Job.id.desc()).limit(limit).offset(offset))
            return list(jobs), total

    def unfinished(self) -> list[Job]:
        with self.session() as s:
            return list(s.scalars(select(Job).where(Job.status.not_in(FINAL))))

    def update(self, job_id: str, **changes) -> Job | None:
        with self.session.begin() as s:
            job = s.get(Job, job_id)
            if job is None:
                return None
            for key, value in changes.items():
                setattr(job, key, value)
            return job


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True, default=str)
