"""The newcomer's Slurm path of the README, on the all-in-one Slurm of `make slurm`.

`make slurm`, then `CLUSTERLAB_BACKEND=slurm make run`, then log in as
`admin` and start a server: it used to end in "there is no Unix account
'admin'" (a root hub on Slurm runs each server as the account of its user's
name and makes none itself there). `make slurm` now makes the account; the
tests leave it in place, as they found it.
"""

from __future__ import annotations

import os
import signal
import subprocess

import accounts
import pytest
from hub import REPO, Hub

pytestmark = [pytest.mark.slurm, pytest.mark.hub]


def test_admin_logs_in_and_starts_a_server_after_make_slurm(slurm, tmp_path):
    assert accounts.exists("admin") and not accounts.made_by_tests("admin"), (
        "`make slurm` makes the Unix account admin (clusterlab_unix_accounts); the hub's first admin runs as it")
    # the README's command: the slurm backend and nothing else said (no sizes file, no account switch)
    hub = Hub(tmp_path / "data", env={"CLUSTERLAB_BACKEND": "slurm", "CLUSTERLAB_CREATE_UNIX_USERS": None,
                                      "CLUSTERLAB_PROFILES": None, "CLUSTERLAB_LOCAL_GPUS": None, "SLURM_CONF": None})
    # `-o setup`: `make test` did the setup already
    make_run = ["make", "--no-print-directory", "-C", str(REPO), "-o", "setup", "run"]
    hub.start(argv=make_run, start_new_session=True)
    try:
        api = hub.admin_api  # logs in through the login form as admin
        response = api.post(hub.server_url("admin"), json={"profile": "cpu-small"})
        assert response.status_code in (201, 202), response.text
        # a Slurm job that waits for a core while other tests hold the node: give it time
        job_id = hub.wait_ready("admin", timeout=180)["state"]["job_id"]
        job = subprocess.run(["squeue", "--noheader", f"--jobs={job_id}", "--format=%u %T"],
                             capture_output=True, text=True, check=True).stdout.split()
        assert job == ["admin", "RUNNING"]
        status = api.get(f"{hub.url}/user/admin/api/status")
        assert status.status_code == 200, status.text
        hub.stop_server(api, "admin")
    finally:
        if hub.proc and hub.proc.poll() is None:
            os.killpg(hub.proc.pid, signal.SIGTERM)  # make and the hub, as Ctrl-C would
            hub.proc.wait(timeout=30)
        hub.proc = None
    assert accounts.exists("admin")
