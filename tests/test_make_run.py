"""`make run` stopped as a person stops it, Ctrl-C: in seconds, leaving nothing behind (issue 13, item 9).

Ctrl-C in a terminal sends SIGINT to the whole foreground process group:
make and the hub. The proxy, the idle culler and the users' servers run in
sessions of their own, so they never see it; the hub stops the first two and,
by design, leaves the servers running for its next start.
"""

import os
import shutil
import signal
import subprocess
import time

import psutil
import pytest
from hub import REPO, Hub, pid_alive

pytestmark = [pytest.mark.hub,
              pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")]

# The issue's own bound (speeds are otherwise the benchmarks' business, not asserts'). It took
# 28 s (the culler ignoring SIGINT; see below) and takes about 1 s: 10 s leaves a loaded
# two-core machine plenty of room and still catches that wait.
STOP_SECONDS = 10
USER = "ctrlc"


def descendants(pid: int) -> dict[int, str]:
    return {p.pid: " ".join(p.cmdline()[:3]) for p in psutil.Process(pid).children(recursive=True)}


def living(pids) -> set[int]:
    return {pid for pid in pids if pid_alive(pid)}


@pytest.mark.parametrize("sigint", [
    # a person at a terminal
    "default",
    # `make run &` in a script (and some IDE and CI runners): a background command of a shell
    # without job control starts with SIGINT ignored, which the culler inherited, so the hub
    # waited out JupyterHub's 30 s for it before its SIGTERM
    "ignored",
])
def test_ctrl_c_stops_make_run_in_seconds_and_leaves_no_temp_folder(tmp_path, sigint):
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    hub = Hub(tmp_path / "data", env={"TMPDIR": str(tmpdir)})
    # the run recipe: `-o setup` keeps make from redoing the setup that `make test` did first
    # (a reinstall of node_modules under the other tests' feet)
    make_run = ["make", "--no-print-directory", "-C", str(REPO), "-o", "setup", "run"]
    preexec = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint == "ignored" else None
    hub.start(argv=make_run, start_new_session=True, preexec_fn=preexec)  # its own group, as in a terminal
    make = hub.proc
    server = None
    try:
        # a user's server with TensorBoard open: what makes the temp folder
        api = hub.api(hub.add_user(USER))
        server = hub.start_server(api, USER, profile="cpu-small")["state"]["pid"]
        response = api.post(f"{hub.url}/user/{USER}/clusterlab/api/tensorboard", json={})
        assert response.status_code == 200, response.text
        board = response.json()["pid"]
        folder = os.readlink(f"/proc/{board}/cwd")
        assert os.path.basename(folder).startswith("clusterlab-tensorboard-")
        started = descendants(make.pid)  # the hub, the proxy, the culler, the server, its TensorBoard
        assert {server, board} <= set(started), started

        began = time.monotonic()
        os.killpg(make.pid, signal.SIGINT)  # Ctrl-C
        try:
            make.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"make run did not stop in 60 s of Ctrl-C:\n{hub.log_tail()}")
        took = time.monotonic() - began
        assert took < STOP_SECONDS, f"make run took {took:.1f} s to stop:\n{hub.log_tail()}"
        # gone: make, the hub, the proxy, the culler; left running: the user's server and its TensorBoard
        assert living(started) == {server, board}, {pid: started[pid] for pid in living(started)}
        assert not list(tmpdir.glob("clusterlab-tensorboard-*"))

        # the next start finds the server again, and stopping it leaves no folder behind
        hub.proc = None
        hub.start()
        assert hub.server_model(USER)["ready"]
        hub.stop_server(api, USER)
        assert not pid_alive(server) and not pid_alive(board)
        # by its own shutdown (the spawner's SIGTERM), not cut short as SIGINT without a terminal does
        assert "ClusterLab: stopping TensorBoard" in hub.log_tail(200)
        assert not os.path.exists(folder), f"{folder} outlived the server"
        assert not list(tmpdir.glob("clusterlab-tensorboard-*"))
        print(f"make run stopped in {took:.2f} s of Ctrl-C (SIGINT {sigint})")
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGTERM)
            make.wait(timeout=30)
        hub.stop()
        if server is not None and pid_alive(server):
            os.kill(server, signal.SIGTERM)  # a server's clean stop, TensorBoard's folder with it
            deadline = time.monotonic() + 30
            while pid_alive(server) and time.monotonic() < deadline:
                time.sleep(0.1)
