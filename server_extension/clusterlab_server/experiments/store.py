"""Experiments' records: a table beside the jobs' in the user's job store.

An experiment's trials are jobs (``jobs.experiment_id``, ``jobs.trial``), and so is
its controller (``jobs.kind == "controller"``); this row holds what the request
was (its checked spec) and how the experiment stands as a whole.
"""

from __future__ import annotations

import datetime

from sqlalchemy.exc import OperationalError
from sqlalchemy import JSON, DateTime, String, delete, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from ..store import Base, utcnow

EXPERIMENT_STATUSES = ("running", "completed", "failed", "cancelled")


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
        try:
            Experiment.__table__.create(engine, checkfirst=True)
        except OperationalError as e:
            # two processes (the server and a CLI, say) creating a new store's table at once
            if "already exists" not in str(e):
                raise
        self.session: sessionmaker[Session] = sessionmaker(engine, expire_on_commit=False)

    def add(self, experiment: Experiment) -> None:
        with self.session.begin() as s:
            s.add(experiment)

    def get(self, experiment_id: str) -> Experiment | None:
        with self.session() as s:
            return s.get(Experiment, experiment_id)

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

    def unfinished(self) -> list[Experiment]:
        with self.session() as s:
            return list(s.scalars(select(Experiment).where(Experiment.status == "running")))

    def projects(self) -> dict[str, int]:
        with self.session() as s:
            rows = s.execute(select(Experiment.project, func.count()).group_by(Experiment.project))
            return {project or "default": count for project, count in rows}

    def update(self, experiment_id: str, only_if_running: bool = False, **changes) -> bool:
        """Change a row; ``only_if_running``: only while it runs (a cancel is never overwritten)."""
        with self.session.begin() as s:
            row = s.get(Experiment, experiment_id)
            if row is None or (only_if_running and row.status != "running"):
                return False
            for key, value in changes.items():
                setattr(row, key, value)
            return True

    def delete(self, experiment_id: str) -> None:
        with self.session.begin() as s:
            s.execute(delete(Experiment).where(Experiment.id == experiment_id))
