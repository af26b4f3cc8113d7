"""A real PostgreSQL for the hub: one fresh database and role per hub, dropped after.

    import postgres
    reason = postgres.postgres_ready()     # '' when usable; else why not (postgres.HOW says how)
    with postgres.database("storm") as url:
        ...  # url: postgresql+pg8000://<role>:<password>@127.0.0.1:<port>/<database>

The server is Debian's `postgresql` (tests/setup-services.sh installs and starts it in
CI). The databases are made as its superuser through `runuser -u postgres -- psql`
(Debian lets that account in over the Unix socket); the hub logs in as its own role
with a password over TCP, as a site's hub reaches a database host.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from contextlib import contextmanager
from typing import Iterator

HOW = ("as root, `apt-get install postgresql` and `pg_ctlcluster 15 main start` (15 on Debian 12; "
       "`pg_lsclusters` lists yours), or `CI=true bash tests/setup-services.sh`")


def _online_port() -> int | None:
    """The port of a running cluster here (pg_lsclusters), or None."""
    listing = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, check=False).stdout
    for line in listing.splitlines():
        _version, _name, port, status, *_ = line.split()
        if status.startswith("online"):
            return int(port)
    return None


def postgres_ready() -> str:
    """'' when a PostgreSQL runs here and we may make databases in it; else why not."""
    if not shutil.which("pg_lsclusters"):
        return "PostgreSQL is not installed"
    if os.geteuid() != 0:
        return "making a database as PostgreSQL's superuser (runuser -u postgres) needs root"
    if _online_port() is None:
        return "no PostgreSQL cluster is running (pg_lsclusters)"
    probe = _psql("SELECT 1;")
    if probe.returncode != 0:
        return f"PostgreSQL does not answer ({probe.stderr.strip()})"
    return ""


def _psql(sql: str, database: str = "postgres") -> subprocess.CompletedProcess:
    # the SQL goes in on stdin, so a password never shows in a process list
    return subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
                           "-d", database, "-f", "-"],
                          input=sql, capture_output=True, text=True, check=False)


def _admin(sql: str) -> None:
    result = _psql(sql)
    if result.returncode != 0:
        raise RuntimeError(f"psql failed: {result.stderr.strip()}")


@contextmanager
def database(name: str = "hub") -> Iterator[str]:
    """A new, empty database owned by a new role with a random password; its SQLAlchemy URL.

    ``name`` goes into both names, with a random suffix, so that runs side by side never meet.
    Both are dropped afterwards, connections still open to it included.
    """
    ident = f"clusterlab_{name}_{secrets.token_hex(4)}"
    password = secrets.token_hex(16)
    _admin(f"CREATE ROLE {ident} LOGIN PASSWORD '{password}';\n"
           f"CREATE DATABASE {ident} OWNER {ident};")
    try:
        yield f"postgresql+pg8000://{ident}:{password}@127.0.0.1:{_online_port()}/{ident}"
    finally:
        _admin(f"DROP DATABASE IF EXISTS {ident} WITH (FORCE);\nDROP ROLE IF EXISTS {ident};")

