"""The job store on a home that several processes, and several hosts, write at once (docs/job-store.md).

- writers at once, on one machine: a real jupyter server (its API and its poller), real
  ``clusterlab`` processes and processes hammering the store itself, submitting and
  cancelling: every job listed exactly once, none lost, no "database is locked", no
  malformed database;
- the index is not the record: one malformed, or deleted (under a running server), is
  rebuilt from the job and experiment folders with every job as it was; ``clusterlab
  reindex`` does it on demand;
- never WAL: no ``-wal``/``-shm`` after writes; a WAL store from before switches over as
  soon as the process holding it in WAL (an older version) closes it, and its folders get
  the records that version did not write;
- two hosts: the server on node1 and the CLI on node2 of the multi-node test cluster, at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from clusterlab_server.experiments.service import ExperimentService
from clusterlab_server.service import JobService, Settings
from clusterlab_server.store import JobStore
from experiment_helpers import fake_request, stop_everything, wait_experiment_end, write_fake_trainer
from jupyter_server_process import PROFILES, REPO, JupyterServer
from template_jobs import wait_final

CLUSTERLAB = Path(sys.executable).with_name("clusterlab")
BAD_WORDS = ("locked", "malformed", "not a database", "Traceback")
SLEEPY = "import time\nprint('sleeping', flush=True)\ntime.sleep(60)\n"
HELLO = "print('hello', flush=True)\n"


def make_service(root: Path) -> JobService:
    workspace = root / "workspace"
    workspace.mkdir(parents=True, exist_ok=True)
    (workspace / "sleepy.py").write_text(SLEEPY)
    (workspace / "hello.py").write_text(HELLO)
    (workspace / "fails.py").write_text("raise SystemExit(7)\n")
    return JobService(Settings(jobs_root=root / "jobs", workspace=workspace, template_paths=[REPO / "templates"],
                               profiles_file=PROFILES, backend="local"))


def submit(service: JobService, script: str, name: str):
    return service.submit({"template": "python-script", "name": name, "params": {"script": script}})


def wait_running(service: JobService, job_id: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        service.refresh()
        job = service.get(job_id)
        if job.status == "running":
            return job
        time.sleep(0.1)
    raise TimeoutError(service.get(job_id).to_json())


def side_files(jobs_root: Path) -> list[str]:
    return sorted(p.name for p in jobs_root.iterdir() if p.name.endswith(("-wal", "-shm")))


def journal_mode(path: Path) -> str:
    with contextlib.closing(sqlite3.connect(path)) as db:  # closed: an open one would keep a WAL store in WAL
        return db.execute("PRAGMA journal_mode").fetchone()[0]


def snapshot(service: JobService) -> dict[str, dict]:
    """Every job (and controller) as the store lists it, without what only lives in the index (the
    scheduler's estimate while queued)."""
    jobs = service.store.list(limit=1000)[0] + service.store.list(limit=1000, kind="controller")[0]
    return {job.id: {k: v for k, v in job.to_json().items() if k != "expected_start"} for job in jobs}


# ----- never WAL ---------------------------------------------------------------------------------------------


def test_the_store_never_uses_wal(tmp_path):
    service = make_service(tmp_path)
    job = wait_final(service, submit(service, "hello.py", "hello").id)
    assert job.status == "completed"
    assert side_files(service.settings.jobs_root) == []
    assert journal_mode(service.settings.jobs_root / "jobs.sqlite") == "delete"
    header = (service.settings.jobs_root / "jobs.sqlite").read_bytes()[:20]
    assert header[18:20] == b"\x01\x01"  # a rollback journal's file format, not WAL's (2, 2)
    record = json.loads((Path(job.folder) / "job.json").read_text())  # the record says how it ended
    assert (record["status"], record["exit_code"], record["scheduler_id"]) == ("completed", 0, job.scheduler_id)


def test_a_wal_store_from_before_switches_over_once_its_last_wal_user_closes_it(tmp_path):
    service = make_service(tmp_path)
    done = wait_final(service, submit(service, "hello.py", "old_hello").id)
    path = service.settings.jobs_root / "jobs.sqlite"
    record_file = Path(done.folder) / "job.json"
    # as the version before kept them: a WAL store, a record without what the scheduler said
    old_record = {k: v for k, v in json.loads(record_file.read_text()).items()
                  if k not in ("status", "scheduler_id", "reason", "node", "kind")}
    record_file.write_text(json.dumps(old_record))
    old = sqlite3.connect(path, isolation_level=None)
    assert old.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    old.execute("SELECT count(*) FROM jobs").fetchone()  # an older process, still holding it open in WAL

    store = JobStore(path)  # opens all the same (as WAL, for now)
    assert [j.id for j in store.list()[0]] == [done.id]
    assert journal_mode(path) == "wal"
    old.close()
    store.update(done.id, reason="")  # the next transaction switches it over, and backfills the records
    assert journal_mode(path) == "delete"
    assert side_files(path.parent) == []
    record = json.loads(record_file.read_text())
    assert (record["status"], record["scheduler_id"]) == ("completed", done.scheduler_id)


# ----- the index is rebuilt from the folders ----------------------------------------------------------------


def corrupt(path: Path) -> None:
    """Garbage over the file past its header: SQLite finds it malformed."""
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.seek(100)
        f.write(os.urandom(size - 100))
    with contextlib.closing(sqlite3.connect(path)) as db, pytest.raises(sqlite3.DatabaseError):
        rows = db.execute("PRAGMA quick_check").fetchall()
        assert rows == [("ok",)], rows  # not reached when the check itself fails
        raise sqlite3.DatabaseError(rows)


@pytest.fixture
def filled(tmp_path):
    """A store with a job of each kind: completed, failed, cancelled, still running, restarted once; and a
    completed experiment (its trials and its controller)."""
    service = make_service(tmp_path)
    done = submit(service, "hello.py", "done")
    failed = submit(service, "fails.py", "failed")
    cancelled = submit(service, "sleepy.py", "cancelled")
    running = submit(service, "sleepy.py", "running")
    restarted = submit(service, "sleepy.py", "restarted")
    service.cancel(cancelled.id)
    wait_running(service, restarted.id)
    service.restart(service.get(restarted.id), "a test's restart")
    write_fake_trainer(service.settings.workspace)
    lab = ExperimentService(service, poll_interval=0.5)
    experiment = lab.create(fake_request("search", {"options.lr": [0.01, 0.1]}, epochs=2, delay=0.05,
                                         searcher="grid", max_concurrent_trials=2))
    assert wait_experiment_end(lab, experiment["id"], timeout=120)["status"] == "completed"
    for job in (done, failed):
        wait_final(service, job.id)
    wait_running(service, running.id)
    wait_running(service, restarted.id)
    yield service, lab, {"running": running.id, "restarted": restarted.id, "experiment": experiment["id"]}
    stop_everything(lab, tmp_path)


def test_a_malformed_index_is_moved_aside_and_rebuilt_from_the_folders_with_every_job(filled, tmp_path):
    service, lab, ids = filled
    before, experiments_before = snapshot(service), lab.list()[0]
    assert len(before) == 5 + 2 + 1 and service.get(ids["restarted"]).restarts == 1
    path = service.settings.jobs_root / "jobs.sqlite"
    corrupt(path)

    again = make_service(tmp_path)  # a process opening it: checked, moved aside, rebuilt
    assert snapshot(again) == before
    assert ExperimentService(again).list()[0] == experiments_before
    assert [p.name.startswith("jobs.sqlite.bad-") for p in path.parent.iterdir() if ".bad-" in p.name] == [True]
    assert again.cancel(ids["running"]).status == "cancelled"  # the scheduler's handle came back too


def test_a_malformed_index_is_rebuilt_under_a_process_that_has_it_open(filled):
    service, lab, ids = filled
    before = snapshot(service)
    corrupt(service.settings.jobs_root / "jobs.sqlite")
    assert snapshot(service) == before  # the next read finds it malformed, and repairs it first
    assert lab.get(ids["experiment"])["status"] == "completed"


def test_a_reader_never_finds_the_tables_of_a_rebuild_made_and_still_empty(filled):
    """The tables and their rows come in one transaction: while the rows go in, another connection (the
    server's poller, a request's thread) still finds no table, so it waits for the repair; it never lists
    an empty store (a request during a rebuild once answered "total": 0)."""
    service, _, _ = filled
    before = snapshot(service)
    index = service.store.index
    path = service.settings.jobs_root / "jobs.sqlite"
    path.unlink()
    seen = []

    def rebuild(session, replace):
        with contextlib.closing(sqlite3.connect(path, timeout=5)) as reader:
            seen.append(reader.execute("SELECT name FROM sqlite_master WHERE name = 'jobs'").fetchall())
        return original(session, replace)

    original, index.rebuild = index.rebuild, rebuild
    try:
        assert snapshot(service) == before  # the next read finds no table, and repairs it first
    finally:
        index.rebuild = original
    assert seen == [[]]


def test_a_record_from_before_records_held_a_status_is_rebuilt_as_its_folder_says(filled, tmp_path):
    service, _, _ = filled
    done = next(j for j in service.store.list(status="completed")[0] if j.name == "done")
    old = service.settings.jobs_root / "20250101-000000-0000aa"
    shutil.copytree(done.folder, old)
    record = json.loads((old / "job.json").read_text())
    old_record = {k: v for k, v in record.items() if k not in ("status", "scheduler_id", "reason", "node", "kind")}
    (old / "job.json").write_text(json.dumps({**old_record, "id": old.name}))
    assert service.store.reindex()["jobs"] == 5 + 2 + 1 + 1
    job = service.get(old.name)
    assert (job.status, job.exit_code, job.folder, job.kind) == ("completed", 0, str(old), "job")


def test_a_deleted_index_is_rebuilt_under_a_running_server_and_by_clusterlab_reindex(tmp_path):
    server = JupyterServer(tmp_path, poll_interval=0.2).start()
    try:
        (server.workspace / "sleepy.py").write_text(SLEEPY)
        (server.workspace / "hello.py").write_text(HELLO)
        ids = []
        for name, script in (("one", "hello.py"), ("two", "hello.py"), ("three", "sleepy.py")):
            answer = server.call("POST", "jobs", json={"template": "python-script", "name": name,
                                                       "params": {"script": script}})
            assert answer.status_code == 201, answer.text
            ids.append(answer.json()["id"])
        deadline = time.monotonic() + 30
        while True:
            listed = {j["id"]: j for j in server.call("GET", "jobs").json()["jobs"]}
            if [listed[i]["status"] for i in ids] == ["completed", "completed", "running"]:
                break
            assert time.monotonic() < deadline, listed
            time.sleep(0.2)
        (server.root / "jobs" / "jobs.sqlite").unlink()

        answer = server.call("GET", "jobs").json()  # the server finds no table, and rebuilds it first
        assert answer["total"] == 3 and {j["id"]: j for j in answer["jobs"]} == listed

        env = {k: v for k, v in os.environ.items() if not k.startswith(("CLUSTERLAB_", "SLURM_", "JUPYTERHUB_"))}
        done = subprocess.run([str(CLUSTERLAB), "--jobs-root", str(server.root / "jobs"), "--workspace",
                               str(server.workspace), "--profiles", str(PROFILES), "--backend", "local",
                               "reindex", "--json"], capture_output=True, text=True,
                              env={**env, "HOME": str(server.root)}, timeout=60)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {"jobs": 3, "experiments": 0, "unreadable": []}
        assert server.call("DELETE", f"jobs/{ids[2]}").json()["status"] == "cancelled"
        assert "Traceback" not in server.log_text()
    finally:
        server.close()


# ----- writers at once ---------------------------------------------------------------------------------------

HAMMER = """
import sys
from pathlib import Path
from clusterlab_server.store import Job, JobStore, utcnow

root, worker, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
store = JobStore(root / "jobs.sqlite")
for i in range(count):
    job_id = f"20260101-000000-w{worker}-{i:04d}"
    folder = root / job_id
    folder.mkdir()
    store.add(Job(id=job_id, name=f"w{worker}_{i}", template="python-script", template_version="1", params={},
                  profile="cpu-small", hours=1.0, backend="local", folder=str(folder), scheduler_id=f"s{i}",
                  submit_time=utcnow()))
    store.update(job_id, status="running", node=f"node{worker}")
    assert store.claim(job_id, f"s{i}", "restarting")
    store.update(job_id, status="cancelled", scheduler_id=f"s{i}", end_time=utcnow())
    jobs, total = store.list(limit=1000)
    assert len({j.id for j in jobs}) == len(jobs)
print("ok")
"""


def test_processes_hammering_the_store_at_once_lose_nothing(tmp_path):
    root = tmp_path / "jobs"
    JobStore(root / "jobs.sqlite")
    workers, count = 4, 40
    procs = [subprocess.Popen([sys.executable, "-c", HAMMER, str(root), str(w), str(count)], text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for w in range(workers)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    for code, out, err in results:
        assert (code, out.strip()) == (0, "ok"), err[-3000:]
    store = JobStore(root / "jobs.sqlite")
    jobs, total = store.list(limit=1000)
    assert total == len(jobs) == workers * count == len({j.id for j in jobs})
    assert {j.status for j in jobs} == {"cancelled"}
    assert side_files(root) == []
    before = {j.id: j.to_json() for j in jobs}
    (root / "jobs.sqlite").unlink()  # and what they wrote to the folders is the whole index
    assert {j.id: j.to_json() for j in JobStore(root / "jobs.sqlite").list(limit=1000)[0]} == before


class Storm:
    """Submitting and cancelling at once: the API of a server and ``clusterlab`` processes (``wrap``: a
    function that makes a command's argv one that runs elsewhere, on another node), and a CLI listing meanwhile.
    ``settle``: the API's jobs are cancelled once the server saw them run, not at once."""

    def __init__(self, server: JupyterServer, wrap=None):
        self.server, self.wrap = server, wrap or (lambda argv: argv)
        self.settle = False
        self.base = [str(CLUSTERLAB), "--jobs-root", str(server.root / "jobs"), "--workspace",
                     str(server.workspace), "--profiles", str(PROFILES), "--backend", "local"]
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("CLUSTERLAB_", "SLURM_", "JUPYTERHUB_")) and k != "CUDA_VISIBLE_DEVICES"}
        self.env["HOME"] = str(server.root)
        self.submitted: list[str] = []
        self.problems: list[str] = []
        self.listings = 0
        self.lock = threading.Lock()
        self.writing = True

    def cli(self, *args: str) -> str:
        done = subprocess.run(self.wrap([*self.base, *args]), capture_output=True, text=True, env=self.env, timeout=120,
                              stdin=subprocess.DEVNULL)
        if done.returncode != 0 or any(word in done.stderr for word in BAD_WORDS):
            with self.lock:
                self.problems.append(f"clusterlab {' '.join(args)}: {done.returncode}\n{done.stderr[-2000:]}")
        return done.stdout

    def cli_writer(self, worker: int, rounds: int) -> None:
        for n in range(rounds):
            job_id = self.cli("submit", "python-script", "--name", f"cli_{worker}_{n}", "-p", "script=sleepy.py")
            job_id = job_id.strip()
            if not job_id:
                continue
            with self.lock:
                self.submitted.append(job_id)
            self.cli("cancel", job_id)

    def api_writer(self, worker: int, rounds: int) -> None:
        for n in range(rounds):
            answer = self.server.call("POST", "jobs", json={"template": "python-script", "name": f"api_{worker}_{n}",
                                                            "params": {"script": "sleepy.py"}})
            if answer.status_code != 201:
                with self.lock:
                    self.problems.append(f"POST jobs: {answer.status_code} {answer.text}")
                continue
            job_id = answer.json()["id"]
            with self.lock:
                self.submitted.append(job_id)
            deadline = time.monotonic() + 20
            while self.settle and time.monotonic() < deadline:
                if self.server.call("GET", f"jobs/{job_id}").json()["status"] == "running":
                    break
                time.sleep(0.1)
            cancelled = self.server.call("DELETE", f"jobs/{job_id}")
            if cancelled.status_code != 200:
                with self.lock:
                    self.problems.append(f"DELETE jobs/{job_id}: {cancelled.status_code} {cancelled.text}")

    def lister(self) -> None:
        while self.writing:
            out = self.cli("jobs", "--json", "--limit", "1000")
            if out:
                ids = [j["id"] for j in json.loads(out)["jobs"]]
                if len(ids) != len(set(ids)):
                    with self.lock:
                        self.problems.append(f"listed twice: {sorted(i for i in ids if ids.count(i) > 1)}")
                self.listings += 1

    def run(self, cli_workers: int = 3, cli_rounds: int = 4, api_workers: int = 2, api_rounds: int = 6,
            settle: bool = False) -> None:
        self.settle = settle
        writers = [threading.Thread(target=self.cli_writer, args=(w, cli_rounds)) for w in range(cli_workers)]
        writers += [threading.Thread(target=self.api_writer, args=(w, api_rounds)) for w in range(api_workers)]
        reader = threading.Thread(target=self.lister)
        for thread in [*writers, reader]:
            thread.start()
        for thread in writers:
            thread.join(timeout=600)
        self.writing = False
        reader.join(timeout=120)
        assert self.problems == []
        assert len(self.submitted) == cli_workers * cli_rounds + api_workers * api_rounds

    def check(self) -> list[dict]:
        """Every job submitted is listed once, by the server and by the CLI, cancelled; its record says so."""
        listed = self.server.call("GET", "jobs", params={"limit": 1000}).json()
        ids = [j["id"] for j in listed["jobs"]]
        assert len(ids) == len(set(ids)) == listed["total"]
        assert sorted(ids) == sorted(self.submitted)
        assert {j["status"] for j in listed["jobs"]} == {"cancelled"}, [(j["id"], j["status"], j["reason"])
                                                                         for j in listed["jobs"]]
        by_cli = json.loads(self.cli("jobs", "--json", "--limit", "1000"))
        assert sorted(j["id"] for j in by_cli["jobs"]) == sorted(self.submitted) and by_cli["total"] == len(ids)
        for job in listed["jobs"]:
            assert json.loads((Path(job["folder"]) / "job.json").read_text())["status"] == "cancelled"
        jobs_root = self.server.root / "jobs"
        assert side_files(jobs_root) == [] and not list(jobs_root.glob("jobs.sqlite.bad-*"))
        log = self.server.log_text()
        assert not [word for word in BAD_WORDS if word in log], log
        assert self.problems == [] and self.listings > 0
        return listed["jobs"]


def test_a_server_and_clusterlab_processes_submitting_and_cancelling_at_once(tmp_path):
    server = JupyterServer(tmp_path, poll_interval=0.2).start()
    try:
        (server.workspace / "sleepy.py").write_text(SLEEPY)
        storm = Storm(server)
        storm.run()
        storm.check()
    finally:
        server.close()


# ----- two hosts ------------------------------------------------------------------------------------------


def ran_on(job: dict) -> str | None:
    """The host a job's script ran on, as its log's first line says (``job.sh`` echoes ``$(hostname)``)."""
    log = Path(job["folder"]) / "log.txt"
    text = log.read_text(errors="replace") if log.exists() else ""
    first = next((line for line in text.splitlines() if line.startswith("ClusterLab job ")), "")
    return first.rsplit(" on ", 1)[1] if " on " in first else None


def test_the_server_on_node1_and_the_cli_on_node2_submitting_and_cancelling_at_once(multinode_cluster, tmp_path):
    import multinode

    server = JupyterServer(tmp_path, poll_interval=0.2, ip=multinode.NODES["node1"],
                           wrap=lambda argv: multinode.on_node("node1", argv)).start()
    try:
        (server.workspace / "sleepy.py").write_text(SLEEPY)
        storm = Storm(server, wrap=lambda argv: multinode.on_node("node2", argv))
        storm.run(cli_workers=2, cli_rounds=4, api_workers=2, api_rounds=5, settle=True)
        jobs = storm.check()
        # two hosts did write it: each side's jobs ran where it submitted them
        hosts = {(j["name"].split("_")[0], ran_on(j)) for j in jobs if ran_on(j)}
        assert {("api", "node1"), ("cli", "node2")} <= hosts <= {("api", "node1"), ("cli", "node2")}, hosts
    finally:
        server.close()
