"""The hub's database on a site's PostgreSQL, through pg8000: what a site does when JupyterHub is upgraded.

The hub itself runs on PostgreSQL in the tests marked `postgresql` (tests/test_hub_local.py);
here JupyterHub's own migrations run on it (docs/hub-database.md).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hub import CONFIG, REPO
from jupyterhub import dbutil, orm
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

pytestmark = pytest.mark.hub

BIN = Path(sys.executable).parent
# An older JupyterHub's schema: five migrations before 6.x's head. Below it, a downgrade
# fails upstream on SQLAlchemy 2.1 (on SQLite too); a site never downgrades.
OLDER = "3c2384c5aae1"


def test_an_older_schema_is_refused_and_make_upgrade_db_migrates_it(postgres_url, tmp_path):
    orm.new_session_factory(postgres_url)  # today's schema, taken back to an older JupyterHub's
    with dbutil._temp_alembic_ini(postgres_url) as ini:
        subprocess.run([BIN / "alembic", "-c", ini, "downgrade", OLDER], check=True, capture_output=True)
    env = {
        **os.environ, "CLUSTERLAB_DB_URL": postgres_url, "CLUSTERLAB_DATA_DIR": str(tmp_path),
        "CLUSTERLAB_CREATE_UNIX_USERS": "0",
        "PATH": "/usr/local/bin:/usr/bin:/bin",  # a site's shell: the virtual environment not on PATH
    }
    refused = subprocess.run([BIN / "jupyterhub", "-f", CONFIG], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0
    assert f"Found database schema version {OLDER}" in refused.stderr
    assert "jupyterhub upgrade-db" in refused.stderr

    upgraded = subprocess.run(["make", "--no-print-directory", "-C", str(REPO), "-o", "setup", "upgrade-db"],
                              env=env, capture_output=True, text=True, timeout=300)
    assert upgraded.returncode == 0, upgraded.stderr[-3000:]
    assert f"Running upgrade {OLDER} ->" in upgraded.stderr
    engine = create_engine(postgres_url)
    try:
        orm.check_db_revision(engine)  # raises unless the schema is the installed JupyterHub's
    finally:
        engine.dispose()
    assert make_url(postgres_url).password not in refused.stderr + upgraded.stdout + upgraded.stderr
