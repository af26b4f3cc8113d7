"""The hub's own SQLite database, set for a hub that many people use at once.

JupyterHub commits on the event loop: each login, token, spawn and server
activity report. In SQLite's default rollback-journal mode every commit waits
for fsync, and on a disk busy with twenty JupyterLabs starting one commit took
a second, during which the hub answered nobody (tests/benchmarks/spawn_storm.py).
In write-ahead-log mode with ``synchronous=NORMAL`` a commit is an append to the
log, synced at checkpoints: the database cannot be corrupted by a crash, and at
worst the last commits before a power cut are lost (a login, an activity time).
WAL needs a local disk, which the hub's data directory is; a site's PostgreSQL
(CLUSTERLAB_DB_URL, docs/hub-database.md) is left as it is.
"""

from __future__ import annotations

import sqlite3

from sqlalchemy import event
from sqlalchemy.engine import Engine

_installed = False


def use_write_ahead_log() -> None:
    """Every SQLite connection this process opens (the hub's) goes to WAL mode, synchronous=NORMAL."""
    global _installed
    if _installed:
        return
    _installed = True

    @event.listens_for(Engine, "connect")
    def _wal(dbapi_connection, _record):
        if isinstance(dbapi_connection, sqlite3.Connection):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()
