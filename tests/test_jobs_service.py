"""The job service on the local backend, for real: jobs are real processes.

The same service backs the REST API and the CLI; tests/test_jobs_api.py drives
it over HTTP, tests/test_jobs_slurm.py on the real Slurm.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import psutil
import pytest
from clusterlab_server.service import JobError, JobService, Settings
from template_jobs import wait_final

REPO = Path(__file__).resolve().parents[1]
PROFILES = REPO / "hub_config" / "profiles.yaml"

HELLO = """\
import sys, pathlib
print("hello from", sys.argv[1:], flush=True)
pathlib.Path("result.txt").write_text(" ".join(sys.argv[1:]))
"""


def make_workspace(root: Path) -> Path:
    workspace = root / "workspace"
    (workspace / "src").mkdir(parents=True)
    (workspace / "src" / "hello.py").write_text(HELLO)
    (workspace / "sleepy.py").write_text("import time\nprint('sleeping', flush=True)\ntime.sleep(60)\n")
    (workspace / "fails.py").write_text("raise SystemExit(7)\n")
    (workspace / "data").mkdir()
    (workspace / "data" / "big.csv").write_text("x\n" * 1000)
    return workspace


def make_sized_template(root: Path, default_profile: str) -> Path:
    """A template folder holding ``sized-script``: python-script, but with ``default_profile``; returns the folder."""
    folder = root / "sized-templates" / "sized-script"
    folder.mkdir(parents=True)
    text = (REPO / "templates" / "python-script" / "template.yaml").read_text()
    for old, new in [("id: python-script", "id: sized-script"),
                     ("default_profile: cpu-small", f"default_profile: {default_profile}"),
                     ("{template}/run.py", str(REPO / "templates" / "python-script" / "run.py"))]:
        assert old in text
        text = text.replace(old, new)
    (folder / "template.yaml").write_text(text)
    return folder.parent


def make_service(root: Path, backend: str = "local") -> JobService:
    return JobService(Settings(
        jobs_root=root / "jobs", workspace=root / "workspace",
        template_paths=[REPO / "templates"], profiles_file=PROFILES, backend=backend,
    ))


@pytest.fixture
def service(tmp_path):
    make_workspace(tmp_path)
    return make_service(tmp_path)


def test_a_script_job_runs_and_keeps_its_record(service):
    job = service.submit({"template": "python-script", "name": "hello_1",
                          "params": {"script": "src/hello.py", "args": ["a b", "c"]}})
    assert job.status == "queued" and job.profile == "cpu-small"
    job = wait_final(service, job.id)
    assert job.status == "completed" and job.exit_code == 0
    folder = Path(job.folder)
    assert (folder / "output" / "result.txt").read_text() == "a b c"  # ran in output/, argv intact
    assert "hello from ['a b', 'c']" in service.log(job.id)["text"]
    record = json.loads((folder / "job.json").read_text())
    assert record["template"] == "python-script" and record["template_version"] == "1"
    assert record["params"] == {"script": "src/hello.py", "args": ["a b", "c"], "options": {}}
    assert record["environment"]["python"] and len(record["environment"]["packages_sha256"]) == 64
    assert json.loads((folder / "params.json").read_text())["args"] == ["a b", "c"]
    assert (folder / "code" / "src" / "hello.py").read_text() == HELLO
    assert not (folder / "code" / "data").exists()  # data is not snapshotted


def test_a_failing_job_is_failed_with_its_exit_code(service):
    job = wait_final(service, service.submit(
        {"template": "python-script", "name": "f", "params": {"script": "fails.py"}}).id)
    assert (job.status, job.exit_code) == ("failed", 7)
    assert job.reason == "exited with status 7"


def test_log_is_read_incrementally(service):
    job = wait_final(service, service.submit(
        {"template": "python-script", "name": "h", "params": {"script": "src/hello.py"}}).id)
    first = service.log(job.id, offset=0)
    assert first["done"] and first["text"]
    again = service.log(job.id, offset=first["offset"])
    assert again["text"] == "" and again["offset"] == first["offset"]
    middle = service.log(job.id, offset=5)
    assert first["text"][5:] == middle["text"]


def test_cancel_stops_the_process_group(service):
    job = service.submit({"template": "python-script", "name": "sleepy", "params": {"script": "sleepy.py"}})
    deadline = time.monotonic() + 10
    while "sleeping" not in service.log(job.id)["text"] and time.monotonic() < deadline:
        time.sleep(0.1)
    pid = int(job.scheduler_id.split(":")[0])
    job = service.cancel(job.id)
    assert job.status == "cancelled"
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    with pytest.raises(JobError) as e:
        service.cancel(job.id)
    assert e.value.status == 409


def test_rerun_with_changed_params(service):
    first = wait_final(service, service.submit(
        {"template": "python-script", "name": "r", "params": {"script": "src/hello.py", "args": ["one"]}}).id)
    second = wait_final(service, service.rerun(first.id, {"params": {"args": ["two"]}}).id)
    assert second.rerun_of == first.id and second.params["args"] == ["two"]
    assert (Path(second.folder) / "output" / "result.txt").read_text() == "two"


def test_jobs_outlive_the_service_that_started_them(tmp_path):
    make_workspace(tmp_path)
    service = make_service(tmp_path)
    job = service.submit({"template": "python-script", "name": "long", "params": {"script": "sleepy.py"},
                          "max_restarts": 0})  # a kill is not its own error: with restarts left it would restart
    service.refresh()
    del service  # JupyterLab restarts: a new service over the same store
    again = make_service(tmp_path)
    again.refresh()
    assert again.get(job.id).status == "running"
    pid = int(job.scheduler_id.split(":")[0])
    psutil.Process(pid).terminate()  # the job ends while nobody watches
    ended = wait_final(again, job.id)
    assert ended.status == "failed" and ended.restarts == 0


def test_list_filters_and_pages(service):
    ids = [service.submit({"template": "python-script", "name": f"n{i}",
                           "params": {"script": "src/hello.py"}}).id for i in range(3)]
    for job_id in ids:
        wait_final(service, job_id)
    jobs, total = service.list(limit=2)
    assert total == 3 and len(jobs) == 2
    assert [j.id for j in jobs] == ids[::-1][:2]  # newest first
    assert service.list(status="completed")[1] == 3
    assert service.list(status="running")[1] == 0
    assert service.list(template="nope")[1] == 0


CANARY = "/tmp/clusterlab-canary-must-not-exist"

HOSTILE = [
    ({"template": "nope", "name": "x", "params": {}}, "template"),
    ({"template": "python-script", "name": "a b", "params": {"script": "src/hello.py"}}, "name"),
    ({"template": "python-script", "name": "../x", "params": {"script": "src/hello.py"}}, "name"),
    ({"template": "python-script", "name": f"x;touch {CANARY}", "params": {"script": "src/hello.py"}}, "name"),
    ({"template": "python-script", "name": "", "params": {"script": "src/hello.py"}}, "name"),
    ({"template": "python-script", "name": "x" * 101, "params": {"script": "src/hello.py"}}, "name"),
    ({"template": "python-script", "name": "x", "params": {}}, "params.script"),
    ({"template": "python-script", "name": "x", "params": {"script": 5}}, "params.script"),
    ({"template": "python-script", "name": "x", "params": {"script": "/etc/passwd"}}, "params.script"),
    ({"template": "python-script", "name": "x", "params": {"script": "../../../../etc/passwd"}}, "params.script"),
    ({"template": "python-script", "name": "x", "params": {"script": f"$(touch {CANARY}).py"}}, "params.script"),
    ({"template": "python-script", "name": "x", "params": {"script": "src/hello.py", "args": "a b"}}, "params.args"),
    ({"template": "python-script", "name": "x", "params": {"script": "src/hello.py", "cmd": "id"}}, "params.cmd"),
    ({"template": "python-script", "name": "x", "params": {"script": "src/hello.py"}, "profile": "huge"}, "profile"),
    ({"template": "python-script", "name": "x", "params": {"script": "src/hello.py"}, "hours": 1000}, "hours"),
    ({"template": "python-script", "name": "x", "params": {"script": "src/hello.py"}, "gres": "gpu:8"}, "gres"),
    ({"template": "python-script", "name": "x", "params": ["script"]}, "params"),
    ({"template": "python-script", "name": "x", "params": {"script": "src/hello.py", "args": ["x" * 70000]}},
     "params"),
    (["not", "an", "object"], ""),
]


@pytest.mark.parametrize("request_body, field", HOSTILE)
def test_bad_input_is_refused_naming_the_field_and_nothing_is_written(service, request_body, field):
    with pytest.raises(JobError) as e:
        service.submit(request_body)
    assert 400 <= e.value.status < 500
    assert e.value.field == field, e.value.message
    assert service.store.list()[1] == 0
    assert [p.name for p in service.settings.jobs_root.iterdir() if not p.name.startswith("jobs.sqlite")] == []
    assert not Path(CANARY).exists()


def test_shell_text_in_arguments_is_passed_as_text(service):
    args = [f"; touch {CANARY}", f"$(touch {CANARY})", f"`touch {CANARY}`", "' \" \\"]
    job = wait_final(service, service.submit(
        {"template": "python-script", "name": "meta", "params": {"script": "src/hello.py", "args": args}}).id)
    assert job.status == "completed"
    assert (Path(job.folder) / "output" / "result.txt").read_text() == " ".join(args)
    assert not Path(CANARY).exists()


def test_path_parameters_may_name_the_data_roots_and_nothing_else(tmp_path):
    make_workspace(tmp_path)
    shared = tmp_path / "shared-datasets"
    shared.mkdir()
    (shared / "tool.py").write_text("print('from the shared root')\n")
    service = make_service(tmp_path)
    service.settings.extra_roots = [shared]
    job = wait_final(service, service.submit(
        {"template": "python-script", "name": "shared", "params": {"script": str(shared / "tool.py")}}).id)
    assert job.status == "completed"
    with pytest.raises(JobError) as e:
        service.submit({"template": "python-script", "name": "x", "params": {"script": str(tmp_path / "fails.py")}})
    assert e.value.field == "params.script"


def test_the_output_folder_is_given_relative_to_the_workspace_for_the_file_browser(tmp_path):
    workspace = make_workspace(tmp_path)
    inside = JobService(Settings(
        jobs_root=workspace / ".clusterlab" / "jobs", workspace=workspace,
        template_paths=[REPO / "templates"], profiles_file=PROFILES,
    ))
    job = inside.submit({"template": "python-script", "name": "inside", "params": {"script": "src/hello.py"}})
    assert inside.job_json(job)["output_path"] == f".clusterlab/jobs/{job.id}/output"
    wait_final(inside, job.id)
    outside = make_service(tmp_path)  # jobs next to the workspace, not in it
    job = outside.submit({"template": "python-script", "name": "outside", "params": {"script": "src/hello.py"}})
    assert outside.job_json(job)["output_path"] is None
    wait_final(outside, job.id)


def test_tensorboard_is_offered_only_for_a_job_that_wrote_events(service):
    """The panel shows its TensorBoard action from ``tensorboard``: an inference job writes no events."""
    workspace = service.settings.workspace
    (workspace / "writes_events.py").write_text(
        "from pathlib import Path\nPath('tensorboard').mkdir()\n"
        "Path('tensorboard/events.out.tfevents.1.host').write_bytes(b'')\n")
    quiet, noisy = (service.submit({"template": "python-script", "name": name, "params": {"script": script}})
                    for name, script in (("quiet", "src/hello.py"), ("noisy", "writes_events.py")))
    assert wait_final(service, quiet.id).status == wait_final(service, noisy.id).status == "completed"
    assert service.job_json(service.get(quiet.id))["tensorboard"] is False
    assert service.job_json(service.get(noisy.id))["tensorboard"] is True
