"""The guard on a JupyterLab's start-up: what `clusterlab-singleuser` leaves out stays out.

A user's server starts with ``clusterlab-singleuser`` (docs/performance.md). These
tests start it for real against a real hub, with Python's ``-X importtime``
log, and fail if one of the imports it cut comes back, whether through an
upgrade of a library or a new import of ours: each is known to cost from a
quarter of a second to a second of every spawn on a small machine. The same
start with stock ``jupyterhub-singleuser`` shows that the check can fail.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from hub import free_port_block, singleuser_by_hand

BIN = Path(sys.executable).parent

# module: why it is not for a server's start-up
LEFT_OUT = {
    "rfc3987_syntax.syntax_helpers": "builds ~35 Lark parsers for jsonschema's iri formats, used by no schema here",
    "jupyterhub.handlers.base": "the hub's request handlers, pulled in by jupyterhub.log for one isinstance check",
    "jupyterhub.crypto": "the hub's encryption of auth state (cryptography's Fernet): the hub's, not a server's",
    "alembic.command": "the hub's database migrations, imported by jupyterhub.orm at its top",
    "optuna": "experiments' search: only the controller process imports it",
}


def imported_at_start(command: str, hub, token: str, tmp_path: Path) -> set[str]:
    """The modules a server imports before it first answers, started by hand as the hub would."""
    port = free_port_block(1)
    argv, env, status_url = singleuser_by_hand(command, port, f"http://127.0.0.1:{hub.port + 1}/hub/api", token)
    home = tmp_path / Path(command).name
    home.mkdir()
    env.update(HOME=str(home), PYTHONPROFILEIMPORTTIME="1")
    log = home / "start.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen(argv + [f"--ServerApp.root_dir={home}"], env=env, cwd=home,
                                stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if requests.get(status_url, headers={"Authorization": f"token {token}"},
                                timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        else:
            pytest.fail(f"{command} did not answer:\n{log.read_text()[-3000:]}")
    finally:
        proc.terminate()
        proc.wait(30)
    # "import time: <self us> | <cumulative us> | <indented module name>"
    return {line.rsplit("|", 1)[1].strip() for line in log.read_text().splitlines()
            if line.startswith("import time:") and line.count("|") == 2}


@pytest.fixture(scope="module")
def admin_token(hub):
    return hub.token(hub.admin(), "admin")


def test_a_server_starts_without_the_imports_that_were_cut(hub, admin_token, tmp_path):
    ours = imported_at_start(str(BIN / "clusterlab-singleuser"), hub, admin_token, tmp_path)
    assert "clusterlab_server.app" in ours and "jupyterlab.labapp" in ours  # the log is of a whole start
    back = {module: why for module, why in LEFT_OUT.items() if module in ours}
    assert not back, f"imported again at a server's start-up: {back}"
    # the stock command imports them all: without the launcher's changes, this test fails
    stock = imported_at_start(str(BIN / "jupyterhub-singleuser"), hub, admin_token, tmp_path)
    assert {"rfc3987_syntax.syntax_helpers", "jupyterhub.handlers.base", "jupyterhub.crypto"} <= stock


CHECK_DEFERRED = """
import sys
from clusterlab_server.singleuser import (defer_alembic_in_hub_orm, defer_rfc3987_syntax,
                                         import_hub_log_without_hub_handlers)
defer_rfc3987_syntax()
defer_alembic_in_hub_orm()
import_hub_log_without_hub_handlers()
import jsonschema
import jupyterhub.log, jupyterhub.handlers.pages
print("before", "rfc3987_syntax.syntax_helpers" in sys.modules)
checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
for fmt, value in [("iri", "https://例え.jp/パス"), ("iri", "no scheme here"), ("iri-reference", "../a b"),
                   ("date-time", "2026-12-02T10:00:00Z"), ("date-time", "yesterday")]:
    print(fmt, repr(value), checker.conforms(value, fmt))
print("after", "rfc3987_syntax.syntax_helpers" in sys.modules)
print("real handlers", jupyterhub.handlers.pages.HealthCheckHandler.__module__)
import sqlalchemy, jupyterhub.orm
print("alembic", "alembic.command" in sys.modules)
engine = sqlalchemy.create_engine("sqlite:///" + sys.argv[1])
jupyterhub.orm.check_db_revision(engine)  # the hub's own use of alembic, through the stand-ins: stamps the head
with engine.connect() as db:
    print("stamped", bool(db.execute(sqlalchemy.text("select version_num from alembic_version")).scalar()))
"""


def test_what_was_deferred_still_works_when_used(tmp_path):
    out = subprocess.run([sys.executable, "-c", CHECK_DEFERRED, str(tmp_path / "hub.sqlite")], capture_output=True,
                         text=True, check=True, env={**os.environ, "PYTHONIOENCODING": "utf-8"}).stdout.splitlines()
    assert out == [
        "before False",  # not built at import: the cost is gone from start-up
        "iri 'https://例え.jp/パス' True",  # ...and the check still runs, with the real grammar
        "iri 'no scheme here' False",
        "iri-reference '../a b' False",
        "date-time '2026-12-02T10:00:00Z' True",  # the format our OpenAPI schemas use
        "date-time 'yesterday' False",
        "after True",
        # what imports the hub's handlers after start-up gets the real ones, not the stand-in
        "real handlers jupyterhub.handlers.pages",
        "alembic False",  # the hub's ORM is loaded, alembic is not...
        "stamped True",  # ...until a database upgrade check needs it
    ]
