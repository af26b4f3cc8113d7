"""Jobs outlive the JupyterLab that started them: a real jupyter server is stopped
while its jobs run and another takes over the same store."""

from __future__ import annotations

import time

from jupyter_server_process import JupyterServer


def wait_status(server, job_id, statuses, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = server.call("GET", f"jobs/{job_id}").json()
        if job["status"] in statuses:
            return job
        time.sleep(0.2)
    raise TimeoutError(job)


def test_running_jobs_survive_a_server_restart_and_their_end_is_noticed(tmp_path):
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / "short.py").write_text("import time\ntime.sleep(4)\nprint('short done', flush=True)\n")
    (workspace / "long.py").write_text("import time\nprint('long', flush=True)\ntime.sleep(60)\n")
    (workspace / "quick.py").write_text("print('quick done')\n")

    first = JupyterServer(tmp_path).start()
    try:
        quick = first.call("POST", "jobs", json={"template": "python-script", "name": "quick",
                                                 "params": {"script": "quick.py"}}).json()
        short = first.call("POST", "jobs", json={"template": "python-script", "name": "short",
                                                 "params": {"script": "short.py"}}).json()
        long = first.call("POST", "jobs", json={"template": "python-script", "name": "long",
                                                "params": {"script": "long.py"}}).json()
        wait_status(first, quick["id"], ("completed",))
        wait_status(first, short["id"], ("running",))
        wait_status(first, long["id"], ("running",))
    finally:
        first.stop(kill_jobs=False)  # JupyterLab goes away; its jobs do not

    second = JupyterServer(tmp_path).start()
    try:
        listed = {job["id"]: job["status"] for job in second.call("GET", "jobs").json()["jobs"]}
        assert listed[quick["id"]] == "completed"
        assert listed[long["id"]] == "running"
        assert listed[short["id"]] in ("running", "completed")
        done = wait_status(second, short["id"], ("completed", "failed"))
        assert done["status"] == "completed" and done["exit_code"] == 0
        assert "short done" in second.call("GET", f"jobs/{short['id']}/log").json()["text"]
        cancelled = second.call("DELETE", f"jobs/{long['id']}").json()
        assert cancelled["status"] == "cancelled"
    finally:
        second.stop()
