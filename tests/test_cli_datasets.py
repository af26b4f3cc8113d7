"""``clusterlab data``, ``--input``, ``--project``, ``projects`` and ``project show``, for real.

As in test_cli.py, each command is the installed executable in a fresh process,
against a tmp workspace, jobs root and dataset store (beside the jobs), with the
site's datasets in a tmp folder. Commands that need no other's result start side
by side. The ``--input`` parser is checked in-process.
"""

from __future__ import annotations

import argparse
import json
import time

import pytest
from clusterlab_server import cli
from clusterlab_server.experiments.store import ExperimentStore
from clusterlab_server.service import JobError
from clusterlab_server.store import JobStore
from test_cli import Site

READER = """\
import os, pathlib
given = pathlib.Path(os.environ["CLUSTERLAB_INPUT"])
for folder, _, names in sorted(os.walk(given, followlinks=True)):
    for name in sorted(names):
        path = pathlib.Path(folder, name)
        print("saw", path.relative_to(given), path.read_text().strip(), flush=True)
pathlib.Path("model.txt").write_text("weights")
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    site = Site(tmp_path_factory.mktemp("cli-datasets"))
    # the experiments' table made first, as Site does the jobs': commands side by side (projects, experiments)
    # that all find none race to make it
    jobs = JobStore(site.jobs_root / "jobs.sqlite")
    ExperimentStore(jobs.engine)
    jobs.engine.dispose()
    site.env["CLUSTERLAB_SITE_DATASETS"] = str(site.root / "site")
    shapes = site.workspace / "shapes"
    (shapes / "circle").mkdir(parents=True)
    (shapes / "circle" / "a.txt").write_text("a circle")
    (shapes / "labels.csv").write_text("file,label\ncircle/a.txt,circle\n")
    (site.workspace / "reader.py").write_text(READER)
    (site.workspace / "holder.py").write_text("import time\nprint('holding', flush=True)\ntime.sleep(120)\n")
    yield site
    site.close()


def run_ok(site: Site, *args: str):
    result = site.run(*args)
    assert result.returncode == 0, (args, result.stderr)
    return result


@pytest.fixture(scope="module")
def shapes(site):
    """shapes:1 and shapes:2 (one file more) in project vision, made from a folder named relative to the cwd."""
    first = run_ok(site, "data", "create", "shapes", "workspace/shapes", "--description", "three shapes",
                   "--project", "vision")
    assert first.stdout == "shapes:1\n"
    assert first.stderr.startswith("clusterlab: dataset shapes:1: 2 files, 39 B (39 B new), sha256:")
    (site.workspace / "shapes" / "notes.txt").write_text("notes")
    second = run_ok(site, "data", "create", "shapes", str(site.workspace / "shapes"), "--project", "vision",
                    "--json")
    version = json.loads(second.stdout)
    assert (version["version"], version["files"], version["new_bytes"]) == (2, 3, 5)
    return version


def test_ls_and_show_say_what_a_dataset_is(site, shapes):
    table, as_json, vision, other, show, show_one, show_json = site.run_all(
        ["data", "ls"], ["data", "ls", "--json"], ["data", "ls", "--project", "vision"],
        ["data", "ls", "--project", "other"], ["data", "show", "shapes"], ["data", "show", "shapes:1", "--files"],
        ["data", "show", "shapes:1", "--files", "--json"])
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["NAME", "LATEST", "VERSIONS", "FILES", "SIZE", "PROJECT", "WHERE", "CREATED",
                              "DESCRIPTION"]
    assert [row.split()[:8] for row in rows] == [["shapes", "2", "2", "3", "44", "B", "vision", "own"]]
    assert [d["name"] for d in json.loads(as_json.stdout)["datasets"]] == ["shapes"]
    assert vision.stdout.splitlines()[1:] == rows
    assert other.stdout == "" and "no datasets in project other" in other.stderr

    lines = show.stdout.splitlines()
    assert lines[0] == "shapes:2 (your dataset, project vision)"
    fields = {line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in lines[1:] if ":" in line}
    assert fields["size"] == "3 files, 44 B (5 B stored anew by this version)"
    assert fields["digest"] == shapes["digest"] and fields["versions"] == "2, 1"
    assert fields["source"] == str(site.workspace / "shapes")
    assert fields["description"] == "" and "used by no job yet" in show.stdout  # v2 has none of its own
    assert show_one.stdout.splitlines()[0] == "shapes:1 (your dataset, project vision)"
    assert "description: three shapes" in show_one.stdout
    files = show_one.stdout.split("\nPATH", 1)[1].splitlines()[1:]
    assert [f.split()[0] for f in files] == ["circle/a.txt", "labels.csv"]
    detail = json.loads(show_json.stdout)
    assert detail["version"] == 1 and [f["path"] for f in detail["manifest"]["files"]] == ["circle/a.txt",
                                                                                           "labels.csv"]


def test_refusals_exit_with_their_codes_and_make_nothing(site, shapes):
    cases = {
        ("data", "show", "nope"): (3, "clusterlab: error: name: no dataset 'nope'"),
        ("data", "show", "shapes:9"): (3, "clusterlab: error: version: dataset shapes has no version 9"),
        ("data", "create", "a b", "workspace/shapes"): (2, "clusterlab: error: name: name must be"),
        ("data", "create", "x", "/etc"): (2, "clusterlab: error: folder:"),
        ("data", "create", "x", "workspace/missing"): (2, "clusterlab: error: folder:"),
        ("data", "create", "x", "workspace/shapes", "--project", "a/b"): (2, "clusterlab: error: project:"),
        ("data", "rm", "shapes"): (2, "give the version to delete: shapes:VERSION"),
        ("data", "show", "shapes:x"): (2, "expected NAME or NAME:VERSION"),
        ("submit", "python-script", "--name", "x", "-p", "script=reader.py", "--input", "a:b:c:d"):
            (2, "argument --input: too many parts in 'a:b:c:d'"),
        ("submit", "python-script", "--name", "x", "-p", "script=reader.py", "--input", "nope"):
            (2, "clusterlab: error: inputs.0.dataset:"),
        ("submit", "python-script", "--name", "x", "-p", "script=reader.py", "--input", "shapes:7"):
            (2, "clusterlab: error: inputs.0.version:"),
        ("submit", "python-script", "--name", "x", "-p", "script=reader.py", "--input", "shapes::a.b"):
            (2, "clusterlab: error: inputs.0.as:"),
        ("submit", "python-script", "--name", "x", "-p", "script=reader.py", "--input", "job:20000101-000000-000000"):
            (2, "clusterlab: error: inputs.0.job: no job"),
        ("submit", "python-script", "--name", "x", "-p", "script=reader.py", "--project", "a b"):
            (2, "clusterlab: error: project:"),
        ("jobs", "--project", "a-b"): (2, "clusterlab: error: project:"),
        ("project", "show", "nope"): (3, "clusterlab: error: name: no project 'nope'"),
    }
    results = site.run_all(*(list(args) for args in cases))
    for (args, (code, text)), result in zip(cases.items(), results):
        assert (result.returncode, result.stdout) == (code, ""), (args, result.stderr)
        assert text in result.stderr and "Traceback" not in result.stderr, (args, result.stderr)
    assert not any(p.name.startswith("x") for p in (site.root / "datasets" / "versions").iterdir())
    names = {json.loads((f / "job.json").read_text())["name"] for f in site.jobs_root.iterdir() if f.is_dir()}
    assert "x" not in names


def test_jobs_mount_inputs_and_projects_show_who_used_what(site, shapes):
    train = run_ok(site, "submit", "python-script", "--name", "train", "-p", "script=reader.py",
                   "--input", "shapes:1:data", "--project", "vision", "--follow")
    train_id = train.stdout.splitlines()[0]
    assert "saw data/circle/a.txt a circle" in train.stdout
    assert "clusterlab: input/data: shapes:1 (2 files, 39 B, sha256:" in train.stderr

    evaluate = run_ok(site, "submit", "python-script", "--name", "evaluate", "-p", "script=reader.py",
                      "--input", f"job:{train_id}:model", "--input", "shapes", "--project", "vision", "--follow")
    evaluate_id = evaluate.stdout.splitlines()[0]
    assert "saw model/model.txt weights" in evaluate.stdout and "saw shapes/notes.txt notes" in evaluate.stdout
    assert f"clusterlab: input/model: job:{train_id} (the output of train, 1 file, 7 B, sha256:" in evaluate.stderr
    assert "clusterlab: input/shapes: shapes:2 (" in evaluate.stderr  # the latest, pinned

    rerun, jobs, experiments, projects, page, page_json, used = site.run_all(
        ["rerun", train_id, "--input", "shapes:2:data", "--name", "train_again", "--json"],
        ["jobs", "--project", "vision", "--json"], ["experiments", "--project", "vision"], ["projects"],
        ["project", "show", "vision"], ["project", "show", "vision", "--json"], ["data", "show", "shapes:1"])
    again = json.loads(rerun.stdout)
    assert [(i["as"], i["version"]) for i in again["inputs"]] == [("data", 2)] and again["project"] == "vision"
    assert {j["name"] for j in json.loads(jobs.stdout)["jobs"]} == {"train", "evaluate"}  # train_again came later
    assert experiments.returncode == 0 and "no experiments" in experiments.stderr
    header, *rows = projects.stdout.splitlines()
    assert header.split() == ["NAME", "JOBS", "EXPERIMENTS", "DATASETS"]
    assert [row.split() for row in rows][-1][0] == "vision" and [row.split()[0] for row in rows][0] == "default"

    text = page.stdout
    assert text.splitlines()[0].startswith("project vision: ")
    train_row = next(line for line in text.splitlines() if line.startswith(train_id))
    assert "data=shapes:1" in train_row and evaluate_id in train_row  # its inputs, and who used its output
    evaluate_row = next(line for line in text.splitlines() if line.startswith(evaluate_id))
    assert f"model=job:{train_id}, shapes=shapes:2" in evaluate_row
    assert "datasets:" in text and "three shapes" not in text.split("datasets:")[0]
    detail = json.loads(page_json.stdout)
    assert {j["id"]: j["used_by"] for j in detail["jobs"]}[train_id] == [evaluate_id]
    assert "used by:" in used.stdout and train_id in used.stdout


def test_a_version_in_use_is_not_removed(site, shapes):
    made = run_ok(site, "data", "create", "scratch", "workspace/shapes")
    assert made.stdout == "scratch:1\n"
    holder = run_ok(site, "submit", "python-script", "--name", "holder", "-p", "script=holder.py",
                    "--input", "scratch")
    job_id = holder.stdout.strip()
    refused = site.run("data", "rm", "scratch:1")
    assert refused.returncode == 4 and f"job {job_id}" in refused.stderr, refused.stderr
    run_ok(site, "cancel", job_id)
    removed = run_ok(site, "data", "rm", "scratch:1")
    assert removed.stdout == "scratch:1 deleted\n"
    assert site.run("data", "show", "scratch").returncode == 3
    again = site.run("data", "create", "scratch", "workspace/shapes")
    assert again.stdout == "scratch:2\n"  # numbers are not used again


def test_site_datasets_come_after_ones_own(site, shapes):
    made = run_ok(site, "data", "create", "common", "workspace/shapes", "--site", "--description", "for all")
    assert made.stdout == "common:1\n" and made.stderr.startswith("clusterlab: site dataset common:1: ")
    listing, refused, taken = site.run_all(["data", "ls"], ["data", "rm", "common:1"],
                                           ["data", "create", "common", "workspace/shapes"])
    rows = [row.split() for row in listing.stdout.splitlines()[1:]]
    assert [(r[0], r[7]) for r in rows][-1] == ("common", "site")
    assert refused.returncode == 2 and "clusterlab: error: name: common is a site dataset" in refused.stderr
    assert taken.returncode == 4 and "clusterlab: error: name: a site dataset named common exists" in taken.stderr


def test_an_experiment_takes_inputs_and_a_project(site, shapes):
    (site.workspace / "reporter.py").write_text(
        "from clusterlab_server.training import options, report\nreport(1, 1, score=options().get('x', 0))\n")
    created = run_ok(site, "experiment", "create", "python-script", "--name", "sweep", "-p", "script=reporter.py",
                     "--search", "options.x=1", "--searcher", "grid", "--metric", "score", "--input", "shapes:1",
                     "--project", "vision", "--json")
    experiment = json.loads(created.stdout)
    try:
        assert experiment["project"] == "vision"
        assert [(i["as"], i["dataset"], i["version"]) for i in experiment["inputs"]] == [("shapes", "shapes", 1)]
        listed = run_ok(site, "experiments", "--project", "vision", "--json")
        assert [e["id"] for e in json.loads(listed.stdout)["experiments"]] == [experiment["id"]]
        shown = run_ok(site, "experiment", "show", experiment["id"])
        assert "project:    vision" in shown.stdout and "input:      input/shapes: shapes:1 (" in shown.stdout
    finally:
        site.run("experiment", "cancel", experiment["id"])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            shown = json.loads(site.run("experiment", "show", experiment["id"], "--json").stdout)
            if all(t["status"] in ("completed", "failed", "cancelled", "pruned") for t in shown.get("trials", [])):
                break
            time.sleep(0.5)


# ----- in-process: how --input and dataset refs read ----------------------------------------------


@pytest.mark.parametrize("text, entry", [
    ("shapes", {"dataset": "shapes"}),
    ("shapes:2", {"dataset": "shapes", "version": 2}),
    ("shapes:2:data", {"dataset": "shapes", "version": 2, "as": "data"}),
    ("shapes:data", {"dataset": "shapes", "as": "data"}),  # not a number: the name it is seen under
    ("shapes::data", {"dataset": "shapes", "as": "data"}),
    ("job:20250101-120000-abcdef", {"job": "20250101-120000-abcdef"}),
    ("job:20250101-120000-abcdef:model", {"job": "20250101-120000-abcdef", "as": "model"}),
    (" shapes:1 ", {"dataset": "shapes", "version": 1}),
])
def test_input_refs_become_the_requests_entries(text, entry):
    assert cli.input_ref(text) == entry


@pytest.mark.parametrize("text, why", [
    ("", "no dataset name"), (":2", "no dataset name"), ("job", "no job id"), ("job:", "no job id"),
    ("job::model", "no job id"), ("shapes:", "no name after the last ':'"), ("shapes:2:", "no name after"),
    ("a:b:c:d", "too many parts"), ("shapes:x:data", "the version 'x' is not a number"),
    ("shapes:\u00b2", "is not a number"),  # a superscript two is a digit to str.isdigit, not a version
])
def test_malformed_input_refs_are_usage_errors(text, why):
    with pytest.raises(argparse.ArgumentTypeError) as e:
        cli.input_ref(text)
    assert why in str(e.value) and "NAME[:VERSION][:AS]" in str(e.value)


def test_a_malformed_input_names_the_option(capsys):
    with pytest.raises(SystemExit) as e:
        cli.build_parser().parse_args(["submit", "python-script", "--name", "x", "--input", "a:b:c:d"])
    assert e.value.code == 2 and "argument --input: too many parts" in capsys.readouterr().err


def test_dataset_refs_and_sizes():
    assert cli.dataset_ref("shapes") == ("shapes", None) and cli.dataset_ref("shapes:3") == ("shapes", 3)
    assert cli.dataset_version_ref("shapes:3") == ("shapes", 3)
    for text in ("", "shapes:", "shapes:x", "job:abc", ":1"):
        with pytest.raises(argparse.ArgumentTypeError):
            cli.dataset_ref(text)
    with pytest.raises(argparse.ArgumentTypeError, match="give the version"):
        cli.dataset_version_ref("shapes")
    assert [cli.size_text(n) for n in (0, 999, 1000, 1_234_567, 5e12, 7e15)] == [
        "0 B", "999 B", "1 kB", "1.23 MB", "5 TB", "7e+03 TB"]
    assert cli.size_text(None) == ""
    assert cli.error_text(JobError(400, "inputs.0: no job 'x'", "inputs.0.job")) == "inputs.0.job: no job 'x'"
    assert cli.error_text(JobError(400, "inputs.1: dataset shapes has no version 9", "inputs.1.version")) == (
        "inputs.1.version: dataset shapes has no version 9")


def test_the_docs_examples_and_the_help_agree():
    assert "clusterlab data create shapes" in cli.__doc__ and "--input shapes:1:data" in cli.__doc__
    for line in ("NAME[:VERSION][:AS]", "job:ID[:AS]"):
        assert line in cli.INPUT_EPILOG
    submit = cli.build_parser()._subparsers._group_actions[0].choices["submit"]
    assert "--input" in submit.format_help() and "job:ID[:AS]" in submit.format_help()
