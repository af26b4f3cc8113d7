"""The ``clusterlab`` CLI, for real: the installed executable, a tmp workspace and jobs root, local jobs.

Each command is a fresh process, as in a terminal, and one costs about a second
of imports: so every command that needs no other's result is started at once
when the module's site is made, and the tests read their results. The -p typing
is checked in-process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from clusterlab_server import cli
from clusterlab_server.registry import Template
from clusterlab_server.service import JobError, JobService, Settings
from clusterlab_server.store import JobStore
from test_jobs_service import PROFILES, REPO, make_sized_template, make_workspace

CLUSTERLAB = Path(sys.executable).with_name("clusterlab")
CANARY = Path("/tmp/clusterlab-cli-canary")


class Site:
    """A workspace, a jobs root and a home of its own; runs the CLI against them."""

    def __init__(self, root: Path):
        assert CLUSTERLAB.exists(), f"{CLUSTERLAB} is missing: run `.venv/bin/pip install -e .`"
        self.root = root
        self.workspace = make_workspace(root)
        self.jobs_root = root / "jobs"
        # the store made first: processes that all find no store race to make its table (store.py)
        JobStore(self.jobs_root / "jobs.sqlite").engine.dispose()
        (root / "home").mkdir()
        # no GPU granted here, whatever the machine has
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("CLUSTERLAB_", "SLURM_", "JUPYTERHUB_")) and k != "CUDA_VISIBLE_DEVICES"}
        self.env["HOME"] = str(root / "home")
        self.base = [str(CLUSTERLAB), "--jobs-root", str(self.jobs_root), "--workspace", str(self.workspace),
                     "--profiles", str(PROFILES), "--backend", "local", "--templates", str(REPO / "templates"),
                     "--templates", str(make_sized_template(root, "gpu-1"))]
        self.started: dict[str, tuple[list[str], subprocess.Popen]] = {}
        self.results: dict[str, subprocess.CompletedProcess] = {}

    def start(self, *args: str, cores: set[int] | None = None) -> subprocess.Popen:
        """``cores``: the CPU affinity the command gets, as the hub's local pool gives a server its cores."""
        return subprocess.Popen([*self.base, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, text=True, env=self.env, cwd=self.root,
                                preexec_fn=(lambda: os.sched_setaffinity(0, cores)) if cores else None)

    def launch(self, key: str, *args: str, cores: set[int] | None = None) -> None:
        """Start a command now; ``result(key)`` waits for it."""
        self.started[key] = (list(args), self.start(*args, cores=cores))

    def result(self, key: str) -> subprocess.CompletedProcess:
        if key not in self.results:
            args, proc = self.started[key]
            out, err = proc.communicate(timeout=60)
            self.results[key] = subprocess.CompletedProcess(args, proc.returncode, out, err)
        return self.results[key]

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return self.run_all(list(args))[0]

    def run_all(self, *commands: list[str]) -> list[subprocess.CompletedProcess]:
        """Several commands side by side; their results in order."""
        keys = [f"run-{len(self.started) + i}" for i in range(len(commands))]
        for key, command in zip(keys, commands):
            self.launch(key, *command)
        return [self.result(key) for key in keys]

    def close(self) -> None:
        for _, proc in self.started.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        if (self.jobs_root / "jobs.sqlite").exists():  # no job outlives the tests
            service = JobService(Settings(jobs_root=self.jobs_root, workspace=self.workspace,
                                          template_paths=[REPO / "templates"], profiles_file=PROFILES))
            service.refresh()
            for job in service.store.unfinished():
                service.cancel(job.id)


REFUSED = ["submit", "python-script", "--name", "refused"]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    site = Site(tmp_path_factory.mktemp("cli"))
    CANARY.unlink(missing_ok=True)
    site.launch("hello", "submit", "python-script", "--name", "hello_cli",
                "-p", "script=src/hello.py", "-p", "args=a,b", "--follow")
    site.launch("sleepy", "submit", "python-script", "--name", "sleepy", "-p", "script=sleepy.py")
    site.launch("meta", "submit", "python-script", "--name", "meta", "-p", "script=src/hello.py",
                "-p", f"args=;touch {CANARY}", "--follow")
    site.launch("templates", "templates")
    site.launch("bad name", "submit", "python-script", "--name", "a b", "-p", "script=src/hello.py")
    site.launch("unknown template", "submit", "nope", "--name", "refused")
    site.launch("outside", *REFUSED, "-p", "script=/etc/passwd")
    site.launch("usage", *REFUSED, "-p", "script")
    site.launch("no job", "logs", "20000101-000000-000000")
    site.launch("no gpu", *REFUSED, "-p", "script=src/hello.py", "--profile", "gpu-4")
    site.launch("one core", *REFUSED, "-p", "script=src/hello.py", "--profile", "cpu-large",
                cores={min(os.sched_getaffinity(0))})
    site.launch("picked", "submit", "sized-script", "--name", "picked", "-p", "script=src/hello.py", "--json")
    yield site
    site.close()


@pytest.fixture(scope="module")
def hello(site):
    """The followed hello job's id, once it has ended; what needs it starts then."""
    result = site.result("hello")
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.splitlines()[0]
    site.launch("listed", "jobs", "--json")
    site.launch("logs", "logs", job_id)
    site.launch("rerun", "rerun", job_id, "-p", "args=x", "--name", "hello_again", "--follow", "--json")
    return job_id


def test_templates_lists_them(site):
    listing = site.result("templates")
    assert listing.returncode == 0, listing.stderr
    header, *rows = listing.stdout.splitlines()
    assert header.split() == ["ID", "KIND", "CATEGORY", "NAME"]
    assert any(row.split()[:3] == ["python-script", "script", "general"] for row in rows)


def test_templates_id_shows_the_parameters(site, capsys):  # in-process: the same main() as the executable
    assert cli.main([*site.base[1:], "templates", "python-script"]) == 0
    detail = capsys.readouterr().out
    assert detail.splitlines()[0].startswith("python-script: Python script")
    lines = {line.split()[0]: line.split() for line in detail.splitlines() if line.strip()}
    assert lines["PARAMETER"][:4] == ["PARAMETER", "TYPE", "DEFAULT", "REQUIRED"]
    assert lines["script"][:4] == ["script", "string", "(path)", "yes"]
    assert lines["args"][:6] == ["args", "array", "of", "string", "[]", "no"]


def test_submit_follow_prints_the_id_and_the_log(site, hello):
    result = site.result("hello")
    assert (site.jobs_root / hello / "job.json").exists()
    assert "hello from ['a', 'b']" in result.stdout
    assert f"job {hello} completed (exit code 0)" in result.stderr
    assert "clusterlab: size cpu-small: the template's default\n" in result.stderr  # no --profile: it says which


def test_without_profile_a_default_that_cannot_run_here_gives_way_to_the_first_that_can(site):
    result = site.result("picked")  # sized-script's default is gpu-1, and no GPU is granted here
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["profile"] == "cpu-small"
    assert result.stderr == ("clusterlab: size cpu-small: the first size that can run here; the template's "
                             "default, gpu-1, cannot: needs 1 GPU; this server was granted none\n")


def test_jobs_and_logs_show_the_job(site, hello):
    listed, logs = site.result("listed"), site.result("logs")
    assert listed.returncode == 0, listed.stderr
    job = {j["id"]: j for j in json.loads(listed.stdout)["jobs"]}[hello]
    assert (job["status"], job["exit_code"], job["name"]) == ("completed", 0, "hello_cli")
    assert job["params"] == {"script": "src/hello.py", "args": ["a", "b"], "options": {}}
    assert logs.returncode == 0 and "hello from ['a', 'b']" in logs.stdout


def test_bad_input_exits_2_unknown_ids_3_and_nothing_is_made(site):
    expected = {
        "bad name": (2, "clusterlab: error: name: name must be"),
        "unknown template": (2, "clusterlab: error: template: unknown template 'nope'"),
        "outside": (2, "clusterlab: error: params.script: /etc/passwd is outside your workspace"),
        "usage": (2, "expected KEY=VALUE"),
        "no job": (3, "clusterlab: error: id: no job"),
        "no gpu": (2, "clusterlab: error: profile: gpu-4 cannot run here: needs 4 GPUs; this server was granted none"),
        "one core": (2, "clusterlab: error: profile: cpu-large cannot run here: needs 8 cores; "
                        "this server was granted 1"),
    }
    for key, (code, text) in expected.items():
        result = site.result(key)
        assert (result.returncode, result.stdout) == (code, ""), (key, result.stderr)
        assert text in result.stderr and "Traceback" not in result.stderr, (key, result.stderr)
    # the accepted ones (and the rerun, if the hello fixture started it) have made their folders by now
    for key in ("hello", "sleepy", "meta", "rerun", "picked"):
        if key in site.started:
            site.result(key)
    names = {json.loads((folder / "job.json").read_text())["name"] for folder in site.jobs_root.iterdir()
             if folder.is_dir()}
    assert names <= {"hello_cli", "sleepy", "meta", "hello_again", "picked"}  # no folder, staged or not, for a refusal


def test_cancel_a_running_job_then_again(site):
    submitted = site.result("sleepy")
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    log = site.jobs_root / job_id / "log.txt"
    deadline = time.monotonic() + 10
    while "sleeping" not in (log.read_text() if log.exists() else "") and time.monotonic() < deadline:
        time.sleep(0.05)
    cancelled = site.run("cancel", job_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.split() == [job_id, "cancelled"]
    table, again = site.run_all(["jobs", "--status", "cancelled"], ["cancel", job_id])
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["ID", "NAME", "TEMPLATE", "STATUS", "PROFILE", "SUBMITTED", "EXIT"]
    assert [row.split()[:4] for row in rows] == [[job_id, "sleepy", "python-script", "cancelled"]]
    assert again.returncode == 4 and f"clusterlab: error: id: job {job_id} has already ended" in again.stderr


def test_rerun_with_a_changed_parameter(site, hello):
    result = site.result("rerun")
    assert result.returncode == 0, result.stderr
    job = json.loads(result.stdout)  # --json with --follow: the ended job on stdout, the log on stderr
    assert job["id"] != hello and job["rerun_of"] == hello and job["name"] == "hello_again"
    assert job["params"] == {"script": "src/hello.py", "args": ["x"], "options": {}} and job["status"] == "completed"
    assert "hello from ['x']" in result.stderr


def test_shell_text_in_a_value_is_passed_as_text(site):
    result = site.result("meta")
    assert result.returncode == 0, result.stderr
    assert f"hello from [';touch {CANARY}']" in result.stdout
    assert not CANARY.exists()


# ----- in-process: -p typing, options, exit codes ---------------------------------------------


TYPED = Template(
    id="typed", name="Typed", kind="training", category="test", description="", entry=("true",),
    folder=REPO, parameters={"type": "object", "properties": {
        "epochs": {"type": "integer"}, "rate": {"type": "number"}, "shuffle": {"type": "boolean"},
        "sizes": {"type": "array", "items": {"type": "integer"}}, "tags": {"type": "array"},
        "extra": {"type": "object"}, "label": {"type": "string"}, "seed": {"type": ["integer", "null"]},
        "any": {},
    }},
)


@pytest.mark.parametrize("pair, value", [
    ("epochs=3", 3), ("rate=0.5", 0.5), ("rate=2", 2), ("shuffle=true", True), ("shuffle=False", False),
    ("sizes=1,2,3", [1, 2, 3]), ("sizes=[4, 5]", [4, 5]), ("tags=", []), ("tags=a b,c", ["a b", "c"]),
    ('tags=["a,b"]', ["a,b"]), ('extra={"k": [1]}', {"k": [1]}), ("label=x=1, 2", "x=1, 2"),
    ("seed=null", None), ("seed=7", 7), ("any=5", "5"), ("unknown=5", "5"),
])
def test_values_are_read_by_the_schema_type(pair, value):
    assert cli.convert_params([cli.key_value(pair)], TYPED) == {pair.split("=")[0]: value}


@pytest.mark.parametrize("pair, field", [
    ("epochs=3.5", "params.epochs"), ("rate=fast", "params.rate"), ("rate=nan", "params.rate"),
    ("shuffle=yes", "params.shuffle"), ("sizes=1,x", "params.sizes.1"), ("sizes=[1", "params.sizes"),
    ("extra=[1]", "params.extra"), ("seed=soon", "params.seed"),
])
def test_values_that_do_not_fit_the_type_are_refused_naming_the_field(pair, field):
    with pytest.raises(JobError) as e:
        cli.convert_params([cli.key_value(pair)], TYPED)
    assert (e.value.status, e.value.field) == (400, field)
    assert cli.exit_code(e.value.status) == 2


def test_location_options_go_before_or_after_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("CLUSTERLAB_JOBS_ROOT", "CLUSTERLAB_WORKSPACE", "CLUSTERLAB_PROFILES", "CLUSTERLAB_JOB_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    args = cli.build_parser().parse_args(
        ["--templates", "a", "--jobs-root", "j1", "jobs", "--templates", "b", "--jobs-root", "j2"])
    settings = cli.settings_from(args)
    assert settings.template_paths[-2:] == [Path("a").absolute(), Path("b").absolute()]
    assert settings.jobs_root == Path("j2").absolute()
    assert settings.workspace == tmp_path and settings.backend == "local"


def test_exit_codes_are_mapped_and_documented():
    assert [cli.exit_code(s) for s in (400, 413, 422, 404, 409, 500, 502)] == [2, 2, 2, 3, 4, 5, 5]
    help_text = cli.build_parser().format_help()
    for line in ("0  success", "1  the followed job", "2  bad input", "3  not found", "4  conflict",
                 "5  the scheduler"):
        assert line in help_text and line in cli.__doc__
    assert cli.error_text(JobError(400, "script: outside", "params.script")) == "params.script: outside"
    assert cli.error_text(JobError(400, "the body must be an object")) == "the body must be an object"


def test_deferred_iri_grammar_validates_as_jsonschema_does():
    """The CLI's start-up shortcut (see defer_iri_grammar) must not change any answer."""
    probe = (
        "import sys, jsonschema\n"
        "if sys.argv[1] == 'deferred':\n"
        "    from clusterlab_server.cli import defer_iri_grammar; defer_iri_grammar()\n"
        "v = jsonschema.Draft202012Validator({'format': 'iri'}, format_checker=jsonschema.FormatChecker())\n"
        "print([v.is_valid(x) for x in ['http://example.com/\\u00e4', 'not an iri', 'urn:x', 'http://x/y', 'a b']])\n"
    )
    answers = {
        mode: subprocess.run([sys.executable, "-c", probe, mode], capture_output=True, text=True, check=True).stdout
        for mode in ("deferred", "eager")
    }
    assert answers["deferred"] == answers["eager"] and "True" in answers["eager"] and "False" in answers["eager"]


def test_demo_data_writes_the_three_data_sets(tmp_path):
    result = subprocess.run([str(Path(sys.executable).parent / "clusterlab"), "demo-data", str(tmp_path / "demo")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    demo = tmp_path / "demo"
    for split in ("train", "val"):
        assert sorted(p.name for p in (demo / "shapes" / split).iterdir()) == ["circle", "square", "triangle"]
    labels = sorted((demo / "shapes-detection" / "labels" / "train").glob("*.txt"))
    assert len(labels) == len(list((demo / "shapes-detection" / "images" / "train").glob("*.png"))) > 0
    assert (demo / "shapes-detection" / "classes.txt").read_text().split() == ["circle", "square", "triangle"]
    header = (demo / "tabular" / "houses.csv").read_text().splitlines()[0]
    assert "price" in header and "segment" in header
    assert "image classification" in result.stdout
