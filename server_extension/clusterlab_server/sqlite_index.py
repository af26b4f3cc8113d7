"""An SQLite index on a home that several hosts share (NFS, Lustre, GPFS), rebuilt from the records it indexes.

On a cluster ``~`` is a network file system that every node sees: the user's
JupyterLab on one node, the ``clusterlab`` CLI on a login node and an experiment's
controller on a compute node all write one ``~/.clusterlab/jobs/jobs.sqlite``. This
module opens it so that this holds (docs/job-store.md says why, at length):

- a rollback journal (``journal_mode=DELETE``), never WAL: WAL keeps its readers'
  and writers' marks in a ``-shm`` file that every process mmaps, and memory is
  not shared between hosts, so two hosts in WAL corrupt the database. A rollback
  journal needs only POSIX advisory locks (fcntl), which NFSv3 (lockd), NFSv4,
  Lustre (mounted ``flock``) and GPFS carry between hosts. A store still in WAL
  (made before) switches over as soon as no other process has it open;
- no memory map (``mmap_size=0``) and a connection per transaction (no pool):
  every transaction takes its locks anew, and NFS re-reads a file its client
  holds a fresh lock on, so no host works from a stale copy;
- writers begin ``BEGIN IMMEDIATE`` (the write lock first, then the reads), so
  two writers never deadlock on a lock upgrade, the one case where SQLite
  gives up at once instead of waiting; readers begin a plain ``BEGIN``;
- a wait for a lock of ``BUSY_TIMEOUT_S`` in SQLite, and around it retries until
  ``RETRY_FOR_S``: a "database is locked" never reaches a user under contention;
- the index is not the record. On open it is checked (``PRAGMA quick_check``);
  one that is missing, malformed or not a database (or becomes so while in use)
  is moved aside and rebuilt from the records (the job folders), under a lock
  file, so that two processes never repair at once.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import functools
import logging
import os
import random
import sqlite3
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

log = logging.getLogger("clusterlab.index")

BUSY_TIMEOUT_S = 30.0  # SQLite's own wait for a lock, each statement
RETRY_FOR_S = 120.0  # ours around it: a wait SQLite gave up, a lock upgrade it refused
LOCKED = ("database is locked", "database table is locked", "database schema has changed")
# what a broken index says: its file is garbage, damaged, or gone (SQLite makes a new, empty one)
BROKEN = ("malformed", "file is not a database", "no such table")
WRITES = "clusterlab_writes"  # the execution option of the engine that begins BEGIN IMMEDIATE

_INDEXES: weakref.WeakKeyDictionary[Engine, SQLiteIndex] = weakref.WeakKeyDictionary()


def is_locked(error: BaseException) -> bool:
    return any(words in str(error) for words in LOCKED)


def is_broken(error: BaseException) -> bool:
    return any(words in str(error) for words in BROKEN)


class Sessions(sessionmaker):
    """``with sessions() as s``: a read (``BEGIN``); ``with sessions.begin() as s``: a write (``BEGIN IMMEDIATE``),
    committed at the end of the block, rolled back on an exception."""

    def __init__(self, engine: Engine):
        super().__init__(engine, expire_on_commit=False)
        self.writer = engine.execution_options(**{WRITES: True})

    @contextlib.contextmanager
    def begin(self):
        with self(bind=self.writer) as session, session.begin():
            yield session


def _begin(connection) -> None:
    # the driver's own BEGIN is off (isolation_level None, below): this is the only one
    connection.exec_driver_sql("BEGIN IMMEDIATE" if connection.get_execution_options().get(WRITES) else "BEGIN")


def indexed(method: Callable) -> Callable:
    """A store's method, run through its index's ``run`` (retried while locked, repaired when broken)."""
    @functools.wraps(method)
    def run(self, *args, **kwargs):
        return self.index.run(lambda: method(self, *args, **kwargs))

    return run


class SQLiteIndex:
    """One SQLite file that indexes records kept elsewhere (files), safe for several hosts.

    ``table``: the table whose absence means the file is new or was lost. The owner gives:
    ``schema(bind)`` makes the tables (on the writer engine, or in a rebuild's transaction: a connection);
    ``records_exist()`` says whether there is anything to rebuild from; ``rebuild(session, replace)`` puts
    every record's row in (``replace``: after deleting every row) and returns what it did;
    ``backfill(session)`` writes the records of a store that an older version kept (in WAL), whose folders
    may lack what its rows hold.
    """

    def __init__(self, path: Path, table: str, schema: Callable[[Engine], None],
                 records_exist: Callable[[], bool], rebuild: Callable[[Session, bool], Any],
                 backfill: Callable[[Session], None]):
        self.path, self.table = path, table
        self.schema, self.records_exist, self.rebuild, self.backfill = schema, records_exist, rebuild, backfill
        path.parent.mkdir(parents=True, exist_ok=True)
        self._private_file()
        # no pool: a connection per transaction, so that each sees the file as it is now (a new one after a
        # repair, a journal mode another process switched) and an NFS client revalidates what it cached
        self.engine = create_engine(f"sqlite:///{path}", poolclass=NullPool,
                                    connect_args={"timeout": BUSY_TIMEOUT_S, "isolation_level": None})
        event.listen(self.engine, "connect", self._connected)
        event.listen(self.engine, "begin", _begin)
        self.session = Sessions(self.engine)
        self._backfill_due = False
        self._wal_warned = False
        _INDEXES[self.engine] = self

    @classmethod
    def of(cls, engine: Engine) -> SQLiteIndex:
        """The index an engine belongs to (the experiments' table lives in the job store's)."""
        try:
            return _INDEXES[engine]
        except KeyError:
            raise ValueError("not a job store's engine (JobStore(...).engine)") from None

    def _private_file(self) -> None:
        if not self.path.exists():
            # the owner's alone (and its journal, to which SQLite gives the same mode)
            self.path.touch(mode=0o600)

    # ----- each connection ----------------------------------------------------------------

    def _connected(self, dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        try:
            mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
            if mode == "wal":
                try:
                    mode = cursor.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
                except sqlite3.OperationalError:  # "locked": another process has it open in WAL
                    mode = "wal"
                if mode == "wal":
                    if not self._wal_warned:
                        log.warning("%s is in WAL mode and another process (an older ClusterLab?) has it open: it "
                                    "switches to a rollback journal once that one closes it", self.path)
                        self._wal_warned = True
                else:
                    log.info("%s: WAL switched to a rollback journal", self.path)
                    self._backfill_due = True
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA mmap_size=0")
        finally:
            cursor.close()

    # ----- running a transaction ------------------------------------------------------------

    def run(self, operation: Callable[[], Any]) -> Any:
        """``operation()`` (one transaction or several), again while the database is locked (for up to
        ``RETRY_FOR_S``), and once more after a repair when the index turns out broken."""
        deadline = time.monotonic() + RETRY_FOR_S
        delay, repaired = 0.02, False
        while True:
            try:
                result = operation()
            except (DBAPIError, sqlite3.DatabaseError) as e:
                if is_locked(e) and time.monotonic() < deadline:
                    time.sleep(delay * random.uniform(0.5, 1.5))
                    delay = min(delay * 2, 1.0)
                    continue
                if is_broken(e) and not repaired:
                    log.warning("%s: %s; rebuilding it from the records", self.path, getattr(e, "orig", e))
                    self.repair()
                    repaired = True
                    continue
                raise
            if self._backfill_due:
                self._backfill_due = False
                self.run(self._write_records)
            return result

    def _write_records(self) -> None:
        with self.session.begin() as s:
            self.backfill(s)

    # ----- checking and repairing -------------------------------------------------------------

    def state(self) -> str:
        """``"ok"``; ``"empty"``: no ``table`` (a new file, or one deleted); ``"bad"``: malformed or not a database."""
        self._private_file()
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            found = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (self.table,))
            if found.fetchone() is None:
                return "empty"
            return "ok" if db.execute("PRAGMA quick_check").fetchall() == [("ok",)] else "bad"
        except sqlite3.DatabaseError as e:
            if is_broken(e):
                return "bad"
            raise
        finally:
            db.close()

    def open(self) -> None:
        """Check the index as a process opens it: make a new one's tables, repair a broken or lost one."""
        state = self.run(self.state)
        if state == "ok" or (state == "empty" and not self.records_exist()):
            self.run(lambda: self.schema(self.session.writer))
        else:
            self.repair()

    @contextlib.contextmanager
    def _repair_lock(self):
        """A POSIX lock on ``<file>.lock`` (not on the database: closing any other descriptor of a file drops
        every POSIX lock the process holds on it, SQLite's included)."""
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        with os.fdopen(fd, "r+") as lock:
            fcntl.lockf(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.lockf(lock, fcntl.LOCK_UN)

    def repair(self, replace: bool = False) -> Any:
        """Rebuild the index from the records when it is broken or lost (``replace``: whatever its state, in
        place); what ``rebuild`` returned, or None when there was nothing to do."""
        with self._repair_lock():
            state = self.run(self.state)  # again, under the lock: another process may have repaired it meanwhile
            if state == "ok" and not replace:
                self.run(lambda: self.schema(self.session.writer))
                return None
            if state == "bad":
                self._move_aside()
            self._private_file()

            def rebuild():
                # the tables and their rows in one transaction: a reader in another thread or process (the
                # server's poller, a request) never finds the tables made and still empty
                with self.session.begin() as s:
                    self.schema(s.connection())
                    return self.rebuild(s, state == "ok")

            done = self.run(rebuild)
            if state != "ok":
                log.warning("%s was %s: rebuilt from the records (%s)", self.path,
                            "broken (moved aside)" if state == "bad" else "missing", done)
            return done

    def _move_aside(self) -> None:
        """``jobs.sqlite`` -> ``jobs.sqlite.bad-<UTC time>``, with its journal (which belongs to it, and would
        be taken for the new file's hot journal if left behind)."""
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
        for suffix in ("", "-journal", "-wal", "-shm"):
            source = self.path.with_name(self.path.name + suffix)
            if source.exists():
                source.rename(self.path.with_name(f"{self.path.name}.bad-{stamp}{suffix}"))
