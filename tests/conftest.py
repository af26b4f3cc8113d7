"""Fixtures that start real processes; tests read as the story they check."""

import os
import shutil
import subprocess
import sys
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import accounts  # noqa: E402
import multinode  # noqa: E402
import postgres  # noqa: E402
from hub import Hub  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def unix_accounts_removed_after():
    """The Unix accounts the tests (or their hubs) created go when the session ends."""
    yield
    accounts.remove_created()


def required(reason: str, how: str) -> None:
    """A service a test needs: in CI its absence fails the test; elsewhere the test skips, saying how to get it."""
    if reason:
        message = f"{reason}: {how}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def slurm_ready() -> str:
    """'' when a Slurm answers here and we may submit as other users; else why not."""
    if os.geteuid() != 0:
        return "the Slurm tests submit jobs as other users and need root"
    if not shutil.which("sinfo"):
        return "Slurm is not installed"
    probe = subprocess.run(["sinfo", "--noheader"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return f"Slurm does not answer ({probe.stderr.strip()})"
    return ""


@pytest.fixture(scope="session")
def slurm():
    """A running Slurm (`make slurm`): required in CI, else the test skips saying how to get one."""
    required(slurm_ready(), "run `make slurm` as root (a single-node Slurm with 2 fake GPUs)")


def multinode_ready() -> str:
    """'' when the netns test cluster answers with both nodes up; else why not."""
    if os.geteuid() != 0:
        return "the multi-node tests enter network namespaces and need root"
    if not (shutil.which("sinfo") and os.path.exists(multinode.CONF)):
        return f"there is no {multinode.CONF}"
    states = {node: multinode.node_state(node) for node in multinode.NODES}
    if not all(state in ("idle", "mix", "alloc") for state in states.values()):
        return f"its nodes are not all up ({states})"
    return ""


@pytest.fixture(scope="session")
def multinode_cluster():
    """The multi-node test cluster (`make slurm-cluster`): required in CI, else the test skips saying how to get it."""
    required(multinode_ready(), "run `make slurm-cluster` as root (a head and two compute nodes in network namespaces)")


def pytest_generate_tests(metafunc):
    """A hub test marked `postgresql` runs twice: on the SQLite default and on a real PostgreSQL."""
    if "hub_db" not in metafunc.fixturenames:
        return
    if metafunc.definition.get_closest_marker("postgresql"):
        metafunc.parametrize("hub_db", ["sqlite", "postgresql"], indirect=True, scope="module")
    elif any("postgresql" in {mark.name for mark in getattr(test, "pytestmark", [])}
             for test in vars(metafunc.module).values()):
        # the module's other hub tests as "sqlite" too, so that pytest runs them all, in order, on
        # one SQLite hub (a test without the parameter would need a hub of its own), then PostgreSQL's
        metafunc.parametrize("hub_db", ["sqlite"], indirect=True, scope="module")


@pytest.fixture(scope="module")
def hub_db(request):
    """The database the hubs of a test keep their state in: "sqlite" (the default) or "postgresql"."""
    return getattr(request, "param", "sqlite")


@contextmanager
def hub_database(kind: str, name: str = "hub"):
    """The db_url for one Hub: '' (its SQLite file), or a fresh PostgreSQL database, dropped after."""
    if kind == "sqlite":
        yield ""
        return
    required(postgres.postgres_ready(), postgres.HOW)
    with postgres.database(name) as url:
        yield url


@pytest.fixture
def postgres_url():
    """A fresh, empty PostgreSQL database (tests/postgres.py): required in CI, else the test skips saying how."""
    with hub_database("postgresql", "db") as url:
        yield url


@pytest.fixture(scope="module")
def hub(tmp_path_factory, hub_db):
    """A real hub on the embedded default, with two fake GPUs, shared by a module."""
    with hub_database(hub_db) as db_url:
        hub = Hub(tmp_path_factory.mktemp("hub"), db_url=db_url)
        hub.start()
        yield hub
        stop_all_servers(hub)
        hub.stop()


@pytest.fixture
def make_hub(tmp_path, hub_db):
    """Start a hub with extra environment or config for one test (each on a database of its own)."""
    hubs = []
    with ExitStack() as databases:

        def make(**kwargs):
            db_url = databases.enter_context(hub_database(hub_db))
            hub = Hub(tmp_path / f"hub{len(hubs)}", db_url=db_url, **kwargs)
            hubs.append(hub)
            return hub.start()

        yield make
        for hub in hubs:
            if hub.proc:
                stop_all_servers(hub)
            hub.stop()


def stop_all_servers(hub):
    """Servers outlive the hub by design, so tests stop theirs explicitly."""
    api = hub.admin_api
    for user in api.get(hub.url + "/hub/api/users").json():
        for name in user["servers"]:
            hub.stop_server(api, user["name"], name)


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory):
    """``clusterlab demo-data``'s data sets, made once, in a workspace folder."""
    from clusterlab_server.demo_data import generate

    workspace = tmp_path_factory.mktemp("workspace")
    generate(workspace / "demo")
    return workspace

