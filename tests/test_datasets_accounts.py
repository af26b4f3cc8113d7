"""Datasets as ordinary Unix accounts use them, from a terminal, on the local backend and on the real Slurm.

Everything a user does here goes through the ``clusterlab`` command, run as
that user (its uid and gid), as in a JupyterLab terminal: make a dataset and its
version 2, run a job on version 1, try to change the input from inside the job
(it must fail: permissions, which only bind an ordinary account), delete a
version a job uses (refused), feed a training job's output to an inference job
(``model=job:<id>``), and read the records. A second user then tries to reach
the first one's datasets and outputs: by name, by job id, by path as a
parameter, and by opening the path from inside a job.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import accounts
import pytest
from clusterlab_server.demo_data import shapes

CLI = str(Path(sys.executable).parent / "clusterlab")
PROBE = Path(__file__).with_name("test_datasets_jobs.py").read_text().split('PROBE = """\\\n')[1].split('"""')[0]
# opens a path it is given (another user's dataset), and says whether it could
PEEK = """\
import json, pathlib, sys
try:
    pathlib.Path(sys.argv[1]).read_bytes()
    outcome = "read"
except OSError as e:
    outcome = type(e).__name__
pathlib.Path("peek.json").write_text(json.dumps(outcome))
"""

pytestmark = pytest.mark.skipif(os.geteuid() != 0 and not os.environ.get("CI"),
                                reason="makes Unix accounts: run the tests as root (CI does)")


class User:
    def __init__(self, name: str, backend: str):
        self.name, self.backend = name, backend
        accounts.ensure(name)
        self.home = accounts.home_of(name)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        env = {"HOME": str(self.home), "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "LANG": "C.UTF-8",
               "CLUSTERLAB_JOB_BACKEND": self.backend, "USER": self.name}
        account = accounts.pwd.getpwnam(self.name)
        done = subprocess.run([CLI, *args], cwd=self.home, env=env, user=account.pw_uid, group=account.pw_gid,
                              extra_groups=[], capture_output=True, text=True, timeout=300)
        if check:
            assert done.returncode == 0, f"clusterlab {' '.join(args)}: {done.returncode}\n{done.stdout}{done.stderr}"
        return done

    def json(self, *args: str) -> dict:
        return json.loads(self.run(*args, "--json").stdout)

    def submit(self, *args: str) -> str:
        return self.run("submit", *args).stdout.strip().splitlines()[-1]

    def follow(self, job_id: str) -> dict:
        done = self.run("logs", job_id, "-f", check=False)
        job = next(j for j in self.json("jobs", "--limit", "1000")["jobs"] if j["id"] == job_id)
        assert job["status"] == "completed", done.stdout[-3000:] + done.stderr
        return job

    def write(self, relative: str, text: str) -> Path:
        return accounts.write_as(self.name, self.home / relative, text)


@pytest.fixture(params=["local", pytest.param("slurm", marks=pytest.mark.slurm)])
def backend(request):
    if request.param == "slurm":
        request.getfixturevalue("slurm")
    return request.param


def test_a_user_mounts_versions_read_only_and_feeds_one_jobs_output_to_the_next(backend):
    dana = User(f"dana{backend[:2]}", backend)
    shapes(dana.home / "shapes", per_class=8, val_per_class=3, size=32)
    accounts.give(dana.name, dana.home / "shapes")
    dana.write("probe.py", PROBE)
    first = dana.json("data", "create", "shapes", "shapes", "--description", "demo shapes")
    changed = dana.home / "shapes" / "train" / "circle" / "circle_0000.png"
    old = hashlib.sha256(changed.read_bytes()).hexdigest()
    other = shapes(dana.home / "other", per_class=1, val_per_class=0, size=32, seed=7)
    changed.write_bytes((other / "train" / "circle" / "circle_0000.png").read_bytes())  # a new circle
    second = dana.json("data", "create", "shapes", "shapes")
    assert (first["version"], second["version"]) == (1, 2) and second["new_bytes"] == changed.stat().st_size

    probe = dana.submit("python-script", "--name", "probe", "-p", "script=probe.py",
                        "-p", "args=train/circle/circle_0000.png", "--input", "shapes:1")
    job = dana.follow(probe)
    seen = json.loads((Path(job["folder"]) / "output" / "seen.json").read_text())
    assert seen["sha256"] == old, seen  # version 1's file, though the folder has changed since
    assert seen["overwrite"] == seen["new_file"] == seen["new_input"] == "PermissionError", seen
    assert hashlib.sha256((Path(first["path"]) / "train/circle/circle_0000.png").read_bytes()).hexdigest() == old

    holder = dana.submit("python-script", "--name", "holder", "-p", "script=probe.py",
                         "-p", "args=train/circle/circle_0001.png,120", "--input", "shapes:1")
    refused = dana.run("data", "rm", "shapes:1", check=False)
    assert refused.returncode == 4 and holder in refused.stderr, refused.stderr
    dana.run("cancel", holder)

    train = dana.submit("image-classification-train", "--name", "train_1", "-p", "dataset=shapes", "-p", "epochs=1",
                        "-p", "image_size=32", "-p", "batch_size=8", "--profile", "cpu-small", "--project", "study")
    train_job = dana.follow(train)
    infer = dana.submit("image-classification-infer", "--name", "infer_1", "-p", f"model=job:{train}",
                        "-p", "input=shapes:2", "--profile", "cpu-small", "--project", "study")
    infer_job = dana.follow(infer)
    assert [(i["dataset"], i["version"]) for i in train_job["inputs"]] == [("shapes", 2)]
    model = next(i for i in infer_job["inputs"] if i["as"] == "model")
    assert model["job"] == train and model["digest"].startswith("sha256:")
    shown = dana.run("data", "show", "shapes:2").stdout
    assert train in shown and infer in shown  # which jobs used it
    page = dana.json("project", "show", "study")
    assert {j["id"]: j["used_by"] for j in page["jobs"]}[train] == [infer]

    # another user: nothing of dana's, by any way in
    eve = User(f"eve{backend[:2]}", backend)
    eve.write("peek.py", PEEK)
    assert eve.run("data", "show", "shapes", check=False).returncode == 3
    stolen = eve.run("submit", "python-script", "--name", "steal", "-p", "script=peek.py", "--input", f"job:{train}",
                     check=False)
    assert stolen.returncode == 2 and "no job" in stolen.stderr, stolen.stderr
    by_path = eve.run("submit", "image-classification-train", "--name", "steal", "-p", f"dataset={first['path']}",
                      check=False)
    assert by_path.returncode == 2 and "outside your workspace" in by_path.stderr, by_path.stderr
    peek = eve.submit("python-script", "--name", "peek", "-p", "script=peek.py",
                      "-p", f"args={first['path']}/train/square/square_0000.png")
    peeked = eve.follow(peek)
    assert json.loads((Path(peeked["folder"]) / "output" / "peek.json").read_text()) == "PermissionError"
