"""The ``clusterlab experiment`` commands: the ``--search`` parser in-process, then real experiments.

The parser only turns text into the request's ``search`` object; what a search may
be is the service's to say (experiments/spec.py), so the end-to-end tests check that
the CLI refuses what the API refuses, naming the field, with nothing created.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import json
import os
import time
from pathlib import Path

import pytest
from clusterlab_server import cli
from clusterlab_server.registry import Template, load_template
from clusterlab_server.service import JobError, JobService, Settings
from test_jobs_service import PROFILES, REPO

SEARCHED = Template(
    id="searched", name="Searched", kind="training", category="test", description="", entry=("true",),
    folder=REPO, parameters={"type": "object", "properties": {
        "epochs": {"type": "integer", "minimum": 1}, "rate": {"type": "number"}, "shuffle": {"type": "boolean"},
        "model": {"type": "string", "enum": ["small", "large"]}, "workers": {"type": ["integer", "null"]},
        "any": {},
        "options": {"type": "object", "additionalProperties": {"type": ["number", "string", "boolean"]}},
        "loose": {"type": "object"},
        "layers": {"type": "object", "properties": {"depth": {"type": "integer"}},
                   "additionalProperties": {"type": "integer"}},
    }},
)
IMAGE_TRAIN = load_template(REPO / "templates" / "image-classification-train" / "template.yaml")
PYTHON_SCRIPT = load_template(REPO / "templates" / "python-script" / "template.yaml")


def search(text: str, template: Template | None = SEARCHED) -> dict:
    return cli.convert_search([cli.key_spec(text)], template)


@pytest.mark.parametrize("text, value", [
    # values, typed as -p types them
    ("epochs=1,2,3", [1, 2, 3]), ("epochs=5", [5]), ("rate=0.1,1e-3,2", [0.1, 0.001, 2]),
    ("shuffle=true,false", [True, False]), ("model=small,large", ["small", "large"]),
    ("workers=null,4", [None, 4]), ("any=1,x", ["1", "x"]), ("unknown=1,2", ["1", "2"]),
    ('model=["a,b", "c"]', ["a,b", "c"]), ("epochs=[1, 2]", [1, 2]),
    # ranges: integers for integer parameters, numbers else
    ("rate=uniform:0.1:0.5", {"min": 0.1, "max": 0.5}),
    ("rate=loguniform:1e-4:1e-1", {"min": 0.0001, "max": 0.1, "log": True}),
    ("epochs=uniform:1:10", {"min": 1, "max": 10}),
    ("rate=uniform:-1:1", {"min": -1, "max": 1}),
    ("epochs=uniform:2:64:step=2", {"min": 2, "max": 64, "step": 2}),
    ("rate=uniform:0:1:step=0.25", {"min": 0, "max": 1, "step": 0.25}),
    ("rate=loguniform:1e-4:1:count=5", {"min": 0.0001, "max": 1, "log": True, "count": 5}),
    ("epochs=uniform:1:9:step=2:count=5", {"min": 1, "max": 9, "step": 2, "count": 5}),
    ("epochs=uniform:1:9:count=5:step=2", {"min": 1, "max": 9, "step": 2, "count": 5}),
    (" rate = uniform: 1 : 2 : count = 3 ", {"min": 1, "max": 2, "count": 3}),
    ("workers=uniform:0:8", {"min": 0, "max": 8}),
    ("unknown=uniform:1:2.5", {"min": 1, "max": 2.5}),
    # inside an object parameter: its additionalProperties (as the service reads it)
    ("options.lr=loguniform:1e-4:1e-1", {"min": 0.0001, "max": 0.1, "log": True}),
    ("options.lr=0.1,0.01", [0.1, 0.01]), ("options.opt=adam,sgd", ["adam", "sgd"]),
    ("loose.x=1,2", ["1", "2"]), ("loose.x=uniform:1:2.5", {"min": 1, "max": 2.5}),
    ("layers.width=uniform:1:4", {"min": 1, "max": 4}), ("epochs.x=1,2", ["1", "2"]),
])
def test_search_specs_are_read_by_the_schema_type(text, value):
    key = text.partition("=")[0].strip()
    assert search(text) == {key: value}


def test_the_real_templates_types_are_used():
    assert search("batch_size=32,64", IMAGE_TRAIN) == {"batch_size": [32, 64]}
    assert search("learning_rate=0.01,0.001", IMAGE_TRAIN) == {"learning_rate": [0.01, 0.001]}
    assert search("image_size=uniform:16:64:step=16", IMAGE_TRAIN) == {
        "image_size": {"min": 16, "max": 64, "step": 16}}
    # bounds are not the parser's to check: the service refuses them, naming the field
    assert search("learning_rate=uniform:-1:100", IMAGE_TRAIN) == {"learning_rate": {"min": -1, "max": 100}}


def test_a_scripts_options_are_searched_by_name():
    assert search("options.lr=loguniform:1e-4:1e-1", PYTHON_SCRIPT) == {
        "options.lr": {"min": 0.0001, "max": 0.1, "log": True}}
    assert search("options.opt=adam,0.5,true,null", PYTHON_SCRIPT) == {"options.opt": ["adam", 0.5, True, None]}


def test_several_searches_and_a_later_one_for_the_same_key_wins():
    pairs = [cli.key_spec(t) for t in ("epochs=1,2", "rate=uniform:0:1", "epochs=3")]
    assert cli.convert_search(pairs, SEARCHED) == {"epochs": [3], "rate": {"min": 0, "max": 1}}
    assert cli.convert_search(None, SEARCHED) == {}


@pytest.mark.parametrize("text, field, words", [
    ("epochs=1,x", "search.epochs", "expected an integer, got 'x'"),
    ("epochs=1.5", "search.epochs", "expected an integer"),
    ("rate=fast", "search.rate", "expected a number"),
    ("rate=nan", "search.rate", "expected a finite number"),
    ("shuffle=yes", "search.shuffle", "expected true or false"),
    ("rate=", "search.rate", "got nothing"),
    ("rate=  ", "search.rate", "got nothing"),
    ("rate=[0.1", "search.rate", "expected a JSON array"),
    ("rate=uniform:1", "search.rate", "expected uniform:MIN:MAX"),
    ("rate=uniform:", "search.rate", "expected uniform:MIN:MAX"),
    ("rate=loguniform::1", "search.rate", "expected loguniform:MIN:MAX"),
    ("rate=uniform:a:1", "search.rate", "min: expected a number, got 'a'"),
    ("rate=uniform:0:inf", "search.rate", "max: expected a finite number"),
    ("epochs=uniform:1:2.5", "search.epochs", "max: expected an integer, got '2.5'"),
    ("epochs=uniform:1:8:step=0.5", "search.epochs", "step: expected an integer"),
    ("rate=uniform:0:1:count=2.5", "search.rate", "count: expected an integer"),
    ("rate=uniform:0:1:count=", "search.rate", "count: expected an integer"),
    ("rate=uniform:0:1:steps=2", "search.rate", "unknown option 'steps=2'"),
    ("rate=uniform:0:1:2", "search.rate", "unknown option '2'"),
    ("rate=uniform:0:1:log=true", "search.rate", "unknown option 'log=true'"),
    ("rate=uniform:0:1:count=2:count=3", "search.rate", "count is given twice"),
    ("options.lr=uniform:x:1", "search.options.lr", "min: expected a number"),
    ("layers.width=1,2.5", "search.layers.width", "expected an integer"),
    ("layers.width=uniform:1:2.5", "search.layers.width", "max: expected an integer"),
])
def test_bad_specs_are_refused_naming_the_field(text, field, words):
    with pytest.raises(JobError) as e:
        search(text)
    assert (e.value.status, e.value.field) == (400, field)
    assert words in e.value.message, e.value.message
    assert cli.exit_code(e.value.status) == 2
    assert cli.error_text(e.value).startswith(f"{field}: ")


@pytest.mark.parametrize("text", ["epochs", "=1,2", " =uniform:0:1"])
def test_a_search_without_key_is_a_usage_error(text):
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match="expected KEY=SPEC"):
        cli.key_spec(text)


def test_experiment_statuses_and_errors_as_the_service_has_them():
    from clusterlab_server.experiments.store import EXPERIMENT_STATUSES

    assert cli.EXPERIMENT_STATUSES == EXPERIMENT_STATUSES  # the CLI's copy spares it the import at parse time
    refusal = JobError(400, "search.learning_rate: 0: 0 is too small", "search.learning_rate")
    assert cli.error_text(refusal) == "search.learning_rate: 0: 0 is too small"
    assert cli.error_text(JobError(400, "learning_rate: bad", "search.learning_rate")) == "search.learning_rate: bad"


def test_the_trials_are_shown_best_first():
    trials = [{"trial": 0, "value": 0.5}, {"trial": 1, "value": None}, {"trial": 2, "value": 0.9},
              {"trial": 3, "value": 0.7}, {"trial": 4, "value": 0.95}]
    order = [t["trial"] for t in cli.trials_best_first({"maximize": True, "best": {"trial": 2}, "trials": trials})]
    assert order == [2, 4, 3, 0, 1]  # the best completed one, then by value, then those without one
    order = [t["trial"] for t in cli.trials_best_first({"maximize": False, "best": None, "trials": trials})]
    assert order == [0, 3, 2, 4, 1]


# ----- for real: the CLI's main() in-process, local jobs over a tmp jobs root -----------------------

TRAIN = "image-classification-train"
SMALL = ["-p", "epochs=1", "-p", "image_size=16", "--profile", "cpu-small"]


class Lab:
    """A jobs root in the demo workspace; runs ``clusterlab`` commands in-process against it."""

    def __init__(self, workspace: Path):
        self.workspace = workspace
        self.jobs_root = workspace / ".clusterlab-cli-experiments"  # in the workspace: the model's path shows
        self.base = ["--jobs-root", str(self.jobs_root), "--workspace", str(workspace), "--profiles", str(PROFILES),
                     "--backend", "local"]  # the shipped templates: the default

    def run(self, *args: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main([*self.base, *args])
            except SystemExit as e:  # a usage error: argparse exits
                code = e.code
        return code, out.getvalue(), err.getvalue()

    def show(self, experiment_id: str) -> dict:
        code, out, err = self.run("experiment", "show", experiment_id, "--json")
        assert code == 0, err
        return json.loads(out)

    def wait(self, experiment_id: str, done, timeout: float = 240) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            experiment = self.show(experiment_id)
            if done(experiment):
                return experiment
            assert time.monotonic() < deadline, json.dumps(experiment, indent=1)[-3000:]
            time.sleep(0.5)

    @functools.cached_property
    def services(self):
        """The job and experiment services the commands use, read directly."""
        from clusterlab_server.experiments.service import ExperimentService

        jobs = JobService(Settings(jobs_root=self.jobs_root, workspace=self.workspace,
                                   template_paths=[REPO / "templates"], profiles_file=PROFILES))
        return jobs, ExperimentService(jobs)

    def made(self) -> tuple[set, list, list]:
        """What exists: the experiments' folders, and the experiments and jobs (controllers too) named refused*."""
        jobs, experiments = self.services
        folder = self.jobs_root / "experiments"
        return ({p.name for p in folder.iterdir()} if folder.exists() else set(),
                [e["id"] for e in experiments.list(limit=1000)[0] if e["name"].startswith("refused")],
                [j.id for kind in ("job", "controller") for j in jobs.store.list(limit=1000, kind=kind)[0]
                 if j.name.startswith("refused")])

    def close(self) -> None:
        """No experiment or job outlives the tests."""
        jobs, experiments = self.services
        for experiment in experiments.list(status="running", limit=1000)[0]:
            experiments.cancel(experiment["id"])
        jobs.refresh()
        for job in jobs.store.unfinished():
            with contextlib.suppress(JobError):
                jobs.cancel(job.id)


@pytest.fixture(scope="module")
def lab(demo_data):
    pytest.importorskip("torch")  # the trials train image-classification-train
    with pytest.MonkeyPatch.context() as env:
        for name in list(os.environ):  # nothing from the hub or a scheduler; no GPU granted
            if name.startswith(("CLUSTERLAB_", "SLURM_", "JUPYTERHUB_")) or name == "CUDA_VISIBLE_DEVICES":
                env.delenv(name)
        env.setenv("HOME", str(demo_data))
        lab = Lab(demo_data)
        yield lab
        lab.close()


@pytest.fixture(scope="module")
def grid(lab):
    """A 2-point grid over the learning rate, one tiny epoch each: (its create output, its end)."""
    created = lab.run("experiment", "create", TRAIN, "--name", "lr_grid", *SMALL,
                      "--search", "learning_rate=0.01,0.001", "--searcher", "grid", "--metric", "val_accuracy")
    code, out, err = created
    assert code == 0, err
    experiment_id = out.strip()
    # `experiment wait`, as the README has it after create: a line per change, exit 0 once it completed
    code, out, err = lab.run("experiment", "wait", experiment_id, "--interval", "0.5")
    ended = json.loads(lab.run("experiment", "show", experiment_id, "--json")[1])
    assert code == 0 and ended["status"] == "completed", (err, json.dumps(ended, indent=1)[-3000:])
    lines = err.splitlines()
    assert lines[0].startswith("running: 0 of 2 trials done") and out == ""
    assert lines[-1].startswith("completed: 2 of 2 trials done, 0 running, 0 pruned, 0 failed; best val_accuracy ")
    return created, ended


def test_create_prints_the_id_and_says_what_it_searches(grid):
    (code, out, err), experiment = grid
    assert out == experiment["id"] + "\n"
    assert err == ("clusterlab: experiment lr_grid: grid search of 2 trials (2 at once) over learning_rate in "
                   "{0.01, 0.001}; maximize val_accuracy; each trial on cpu-small for 2 h\n")
    assert (experiment["searcher"], experiment["max_trials"], experiment["params"]["epochs"]) == ("grid", 2, 1)
    assert experiment["search"] == {"learning_rate": [0.01, 0.001]}


def test_show_has_the_best_trial_and_the_trials_best_first(lab, grid):
    _, experiment = grid
    best = experiment["best"]
    assert experiment["counts"]["completed"] == 2 and best["params"]["learning_rate"] in (0.01, 0.001)
    code, out, err = lab.run("experiment", "show", experiment["id"])
    assert code == 0, err
    head, table = out.split("\n\n")
    lines = head.splitlines()
    assert lines[0] == f"{experiment['id']}: lr_grid ({TRAIN})"
    fields = {line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in lines[1:]}
    assert fields["status"] == "completed"
    assert fields["search"].startswith("grid search of 2 trials")
    assert "epochs=1" in fields["fixed"] and "learning_rate" not in fields["fixed"]
    assert fields["trials"] == "2: 0 queued, 0 running, 2 completed, 0 pruned, 0 failed, 0 cancelled"
    assert fields["best"].startswith(f"trial {best['trial']} (job {best['job_id']}): "
                                     f"learning_rate={best['params']['learning_rate']}; val_accuracy ")
    assert fields["best"].endswith(" at epoch 1")
    assert fields["model"] == best["model_path"] and best["model_path"].endswith("output/model.pt")
    header, *rows = table.splitlines()
    assert header.split() == ["TRIAL", "JOB", "STATUS", "learning_rate", "val_accuracy", "EPOCH", "RESTARTS"]
    assert [row.split()[0] for row in rows][0] == str(best["trial"])  # best first
    by_trial = {t["trial"]: t for t in experiment["trials"]}
    for row in rows:
        trial, job_id, status, rate, value, epoch, restarts = row.split()
        expected = by_trial[int(trial)]
        assert (job_id, status, float(rate), epoch, restarts) == (
            expected["job_id"], "completed", expected["params"]["learning_rate"], "1", "0")
        assert float(value) == pytest.approx(expected["value"], rel=1e-3)


def test_experiments_lists_it(lab, grid):
    _, experiment = grid
    code, out, err = lab.run("experiments", "--status", "completed")
    assert code == 0, err
    header, *rows = out.splitlines()
    assert header.split() == ["ID", "NAME", "TEMPLATE", "STATUS", "DONE", "RUNNING", "PRUNED", "FAILED",
                              "METRIC", "BEST"]
    row = next(r.split() for r in rows if r.startswith(experiment["id"]))
    assert row[1:9] == ["lr_grid", TRAIN, "completed", "2", "0", "0", "0", "val_accuracy"]
    assert float(row[9]) == pytest.approx(experiment["best"]["value"], rel=1e-3)
    code, out, err = lab.run("experiments", "--json")
    listed = json.loads(out)
    assert code == 0 and experiment["id"] in [e["id"] for e in listed["experiments"]]
    assert listed["total"] == len(listed["experiments"])
    code, out, err = lab.run("experiments", "--status", "paused")
    assert code == 2 and "invalid choice" in err


def test_csv_has_every_trial(lab, grid):
    _, experiment = grid
    code, out, err = lab.run("experiment", "csv", experiment["id"])
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert sorted(float(r["learning_rate"]) for r in rows) == [0.001, 0.01]
    assert {(r["status"], r["epoch"], r["epochs"]) for r in rows} == {("completed", "1", "1")}
    values = {int(r["trial"]): float(r["val_accuracy"]) for r in rows}
    assert values == {t["trial"]: pytest.approx(t["value"]) for t in experiment["trials"]}


def test_rerun_best_submits_its_parameters_with_changes(lab, grid):
    _, experiment = grid
    best = experiment["best"]
    code, out, err = lab.run("experiment", "rerun-best", experiment["id"], "-p", "epochs=2", "--name", "lr_best",
                             "--json")
    assert code == 0, err
    job = json.loads(out)
    try:
        assert job["rerun_of"] == best["job_id"] and job["name"] == "lr_best"
        assert job["params"]["learning_rate"] == best["params"]["learning_rate"]
        assert (job["params"]["epochs"], job["params"]["image_size"]) == (2, 16)
    finally:
        lab.run("cancel", job["id"])
    code, out, err = lab.run("experiment", "rerun-best", experiment["id"], "-p", "epochs=many")
    assert code == 2 and "clusterlab: error: params.epochs: expected an integer" in err


def test_cancel_a_running_experiment_then_delete_it(lab):
    code, out, err = lab.run("experiment", "create", TRAIN, "--name", "long_one", "-p", "epochs=500",
                             "-p", "image_size=16", "--profile", "cpu-small",
                             "--search", "learning_rate=loguniform:1e-4:1e-1", "--searcher", "random",
                             "--max-trials", "2", "--max-concurrent", "1", "--json")
    assert code == 0, err
    experiment = json.loads(out)
    assert experiment["status"] == "running" and experiment["search"]["learning_rate"]["log"] is True
    lab.wait(experiment["id"], lambda e: e["counts"]["running"] >= 1)
    code, out, err = lab.run("experiment", "resume", experiment["id"])
    assert (code, out) == (4, "") and f"experiment {experiment['id']}'s controller is running" in err, err
    code, out, err = lab.run("experiment", "show", experiment["id"])
    assert code == 0 and "best:       none yet" in out and "controller: running" in out, err
    code, out, err = lab.run("experiment", "cancel", experiment["id"])
    assert (code, out) == (0, f"{experiment['id']} cancelled\n"), err
    ended = lab.wait(experiment["id"], lambda e: all(t["status"] in ("cancelled", "completed", "failed", "pruned")
                                                    for t in e["trials"])
                     and e["controller"]["status"] not in ("queued", "running"), timeout=60)
    assert ended["status"] == "cancelled" and ended["counts"]["cancelled"] >= 1
    code, out, err = lab.run("experiment", "cancel", experiment["id"])
    assert code == 4 and f"clusterlab: error: id: experiment {experiment['id']} has already ended" in err
    code, out, err = lab.run("experiment", "resume", experiment["id"])
    assert code == 4 and "has ended (cancelled)" in err
    code, out, err = lab.run("experiment", "rerun-best", experiment["id"])
    assert code == 4 and "has no completed trial" in err
    trial_folders = [lab.jobs_root / t["job_id"] for t in ended["trials"]]
    assert trial_folders and all(folder.is_dir() for folder in trial_folders)
    code, out, err = lab.run("experiment", "delete", experiment["id"])
    assert (code, out) == (0, f"{experiment['id']} deleted\n"), err
    assert not any(folder.exists() for folder in trial_folders)
    for command in ("show", "csv", "delete", "cancel"):
        code, out, err = lab.run("experiment", command, experiment["id"])
        assert (code, out) == (3, ""), (command, err)
        assert f"clusterlab: error: id: no experiment '{experiment['id']}'" in err


@pytest.mark.parametrize("search, more, field, words", [
    ("learning_rate=uniform:0:100", [], "search.learning_rate", "0 is less than or equal to the minimum of 0"),
    ("learning_rate=uniform:0.001:100", [], "search.learning_rate", "100 is greater than the maximum of 10"),
    ("learning_rate=uniform:0.001:0.1:count=3", [], "search.learning_rate", "count is for the grid searcher"),
    ("learning_rate=loguniform:-1:1", [], "search.learning_rate", "a log range needs min > 0"),
    ("learning_rate=uniform:a:1", [], "search.learning_rate", "min: expected a number, got 'a'"),
    ("batch_size=1,5000", [], "search.batch_size", "5000 is greater than the maximum of 4096"),
    ("batch_size=uniform:16:64:step=0.5", [], "search.batch_size", "step: expected an integer"),
    ("dataset=uniform:1:2", [], "search.dataset", "a range needs a number or integer parameter"),
    ("dataset=../../etc,demo/shapes", [], "search.dataset", "outside your workspace"),
    ("nope=1,2", [], "search.nope", "has no parameter 'nope'"),
    ("options.lr=1,2", [], "search.options.lr", "has no parameter 'options'"),
    ("learning_rate=0.01", ["--max-concurrent", "100"], "max_concurrent_trials", "over your quota"),
    ("learning_rate=0.01", ["--metric", "bleu"], "metric", "does not report 'bleu'"),
    ("learning_rate=0.01", ["-p", "learning_rate=0.1"], "search.learning_rate", "both fixed (params) and searched"),
    ("learning_rate=0.01", ["-p", "epochs=0"], "params.epochs", "0 is less than the minimum of 1"),
])
def test_hostile_input_is_refused_naming_the_field_and_nothing_is_made(lab, search, more, field, words):
    before = lab.made()
    code, out, err = lab.run("experiment", "create", TRAIN, "--name", "refused", *SMALL, "--search", search, *more)
    assert (code, out) == (2, ""), err
    assert err.startswith(f"clusterlab: error: {field}: ") and words in err and "Traceback" not in err, err
    assert err.count(field) == 1, err  # the field is said once
    assert lab.made() == before and before[1:] == ([], [])


def test_a_scripts_search_is_checked_by_the_service(lab):
    before = lab.made()
    code, out, err = lab.run("experiment", "create", "python-script", "--name", "refused", "-p", "script=x.py",
                             "--search", "options.lr=loguniform:0:1")
    assert (code, out) == (2, "") and "clusterlab: error: search.options.lr: a log range needs min > 0" in err, err
    code, out, err = lab.run("experiment", "create", "image-classification-infer", "--name", "refused",
                             "--search", "image_size=16,32")
    assert code == 2 and "clusterlab: error: template: " in err, err
    code, out, err = lab.run("experiment", "create", TRAIN, "--name", "refused", *SMALL)
    assert code == 2 and "clusterlab: error: search: give at least one parameter" in err, err
    code, out, err = lab.run("experiment", "show", "20000101-000000-000000")
    assert code == 3 and "no experiment" in err
    assert lab.made() == before and before[1:] == ([], [])
