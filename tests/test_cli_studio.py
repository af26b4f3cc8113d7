"""AI Studio from a terminal: ``clusterlab labelling|studio|model`` in-process over a real jobs root.

The same chain as tests/test_studio_chain.py's REST one, command by command as the README shows it,
with the user's real Label Studio (labelled through its API, as the editor's clicks do), local jobs, and
a local bare git repository. The CLI refuses what the API refuses, naming the field, with its exit code.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
from pathlib import Path

import pytest
from clusterlab_server import cli
from label_studio_helpers import annotate, need_label_studio
from studio_helpers import label_studio_of, unlabelled_shapes
from test_jobs_service import PROFILES

CLASSES = "circle,square,triangle"


class Terminal:
    def __init__(self, workspace: Path):
        self.workspace = workspace
        self.jobs_root = workspace / ".clusterlab" / "jobs"
        self.base = ["--jobs-root", str(self.jobs_root), "--workspace", str(workspace), "--profiles", str(PROFILES),
                     "--backend", "local"]

    def run(self, *args: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main([*self.base, *args])
            except SystemExit as e:
                code = e.code
        return code, out.getvalue(), err.getvalue()

    def ok(self, *args: str) -> str:
        code, out, err = self.run(*args)
        assert code == 0, (args, code, out, err)
        return out.strip()


@pytest.fixture(scope="module")
def terminal(tmp_path_factory):
    need_label_studio()
    workspace = tmp_path_factory.mktemp("cli-studio") / "home"
    workspace.mkdir()
    shell = Terminal(workspace)
    try:
        yield shell
    finally:  # the CLI leaves Label Studio running for the next command: the test's ends here
        label_studio_of(shell.jobs_root).stop()


def test_the_chain_from_a_terminal(terminal):
    t = terminal
    truth = unlabelled_shapes(t.workspace, per_class=6)
    labelling = t.ok("labelling", "create", "shapes_raw", "--classes", CLASSES, "--images",
                     str(t.workspace / "unlabelled"), "--project", "vision")
    url = t.ok("labelling", "open", labelling)
    assert url.startswith("/proxy/absolute/") and "/projects/" in url  # the page, through the server
    shown = json.loads(t.ok("labelling", "show", labelling, "--json"))
    annotate(label_studio_of(t.jobs_root), shown["label_studio_project"],
             {f"{labelling}/images/{path}": label for path, label in truth.items()})
    assert f"{len(truth)}/{len(truth)} labelled" in t.ok("labelling", "show", labelling)
    assert t.ok("labelling", "export", labelling, "--dataset", "shapes_cli", "--val-fraction", "0.34",
                "--seed", "1") == "shapes_cli:1"

    experiment = t.ok("studio", "train", "shapes_cli:1", "-p", "epochs=1", "-p", "image_size=16",
                      "-p", "num_workers=0", "--search", "learning_rate=0.001,0.01")
    code, out, err = t.run("experiment", "wait", experiment)
    assert code == 0, out + err
    validated = t.ok("studio", "validate", "--experiment", experiment, "--wait")
    assert " done " in validated and "accuracy" in validated and "report.md" in validated
    assert t.ok("model", "register", "shapes_cli_model", "--experiment", experiment) == "shapes_cli_model:1"

    bare = t.workspace / "shapes-model.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    commit = t.ok("model", "publish", "shapes_cli_model", "1", "--repository", f"file://{bare}")
    head = subprocess.run(["git", "-C", str(bare), "rev-parse", "main"], capture_output=True, text=True, check=True)
    assert head.stdout.strip() == commit
    assert "published file://" in t.ok("model", "list")
    chains = json.loads(t.ok("studio", "chains", "--project", "vision", "--json"))
    assert [s["state"] for s in chains[0]["steps"]] == ["done"] * 6
    assert "publish   done" in t.ok("studio", "chains")


@pytest.mark.parametrize("args, code, field", [
    (["labelling", "create", "one", "--classes", "circle", "--images", "unlabelled"], 2, "classes"),
    (["labelling", "create", "none", "--classes", CLASSES, "--images", "empty"], 2, "images"),
    (["labelling", "create", "bad name", "--classes", CLASSES, "--images", "unlabelled"], 2, "name"),
    (["labelling", "export", "20250101-000000-abcdef", "--dataset", "d"], 3, "labelling"),
    (["studio", "validate", "--job", "20250101-000000-abcdef"], 3, "job"),
    (["model", "register", "m", "--job", "20250101-000000-abcdef"], 3, "job"),
    (["model", "publish", "nothing", "1", "--repository", "file:///tmp"], 3, "model"),
])
def test_the_cli_refuses_what_the_api_refuses(terminal, args, code, field):
    (terminal.workspace / "empty").mkdir(exist_ok=True)
    (terminal.workspace / "unlabelled").mkdir(exist_ok=True)
    got, out, err = terminal.run(*args)
    assert got == code and err.startswith(f"clusterlab: error: {field}: "), (got, out, err)
    assert out == ""


def test_a_split_fraction_of_0_or_1_and_other_urls_are_refused(terminal):
    labellings = json.loads(terminal.ok("labelling", "list", "--json"))
    labelling = labellings[0]["id"]
    for fraction in ("0", "1"):
        code, _, err = terminal.run("labelling", "export", labelling, "--dataset", "d", "--val-fraction", fraction)
        assert code == 2 and err.startswith("clusterlab: error: val_fraction: "), err
    for url in ("git://example.org/m.git", "http://example.org/m.git"):
        code, _, err = terminal.run("model", "publish", "shapes_cli_model", "1", "--repository", url)
        assert code == 2 and "repository: only https://" in err, err
