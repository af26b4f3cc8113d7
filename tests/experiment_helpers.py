"""What the experiments' tests share, whatever the backend (local here, Slurm in its own test).

- ``FAKE_TRAINER``: a python-script job that trains nothing, fast: its metric
  depends on ``options.lr`` (best at 0.01), one line per epoch through
  ``report()``, continuing after the epochs already in its metrics.jsonl when
  started again; ``options.fail`` makes it raise (a user's error, exit 1);
- ``HOSTILE``: requests an experiment must refuse (a 400 naming the field), for
  ``ExperimentService.create`` and the REST API alike;
- waiting for an experiment, killing a job's processes as a node failure would,
  and stopping everything a test started.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import psutil

FAKE_TRAINER = """\
import json, math, os, time
from pathlib import Path
from clusterlab_server.training import options, report

o = options()
lr = float(o.get("lr", 0.01))
epochs = int(o.get("epochs", 5))
delay = float(o.get("delay", 0.2))
if o.get("fail"):
    raise ValueError("a bug in the user's script")
done = 0
metrics = Path(os.environ["CLUSTERLAB_OUTPUT"]) / "metrics.jsonl"
if metrics.exists():
    done = len([line for line in metrics.read_text().splitlines() if line.strip()])
quality = max(0.05, 1 - abs(math.log10(lr) + 2) / 4)  # best at lr = 0.01
print(f"fake trainer: lr {lr}, epochs {done + 1}..{epochs}", flush=True)
for epoch in range(done + 1, epochs + 1):
    time.sleep(delay)
    accuracy = quality * (0.5 + 0.5 * epoch / epochs)
    report(epoch, epochs, val_accuracy=accuracy, val_loss=1 - accuracy)
"""

FAKE_SCRIPT = "fake_trainer.py"


def write_fake_trainer(workspace: Path) -> str:
    """The fake trainer in ``workspace``; returns its path there (the python-script's ``script``)."""
    workspace.mkdir(parents=True, exist_ok=True)
    (workspace / FAKE_SCRIPT).write_text(FAKE_TRAINER)
    return FAKE_SCRIPT


def fake_request(name: str, search: dict, epochs: int = 4, delay: float = 0.2, **fields) -> dict:
    """An experiment of the fake trainer, its metric val_accuracy (maximized)."""
    return {
        "template": "python-script", "name": name,
        "params": {"script": FAKE_SCRIPT, "options": {"epochs": epochs, "delay": delay}},
        "search": search, "metric": "val_accuracy", "maximize": True, **fields,
    }


DEMO_PARAMS = {"dataset": "demo/shapes", "epochs": 2, "image_size": 16, "batch_size": 32, "model_size": "small"}

# a request that passes, which each hostile case spoils in one place
VALID = {"template": "image-classification-train", "name": "hostile", "params": dict(DEMO_PARAMS),
         "search": {"learning_rate": [0.01, 0.001]}, "searcher": "grid", "metric": "val_accuracy"}

# (what it is, the request's changes (None: remove the key), the field named, words in the message)
HOSTILE = [
    ("unknown parameter", {"search": {"nope": [1, 2]}}, "search.nope", "no parameter 'nope'"),
    ("range above the schema's maximum", {"search": {"learning_rate": {"min": 0.001, "max": 100}},
                                          "searcher": "tpe"}, "search.learning_rate", "100"),
    ("range below the schema's minimum", {"search": {"seed": {"min": -5, "max": 3}}, "searcher": "random"},
     "search.seed", "minimum of 0"),
    ("a min that is not a number", {"search": {"learning_rate": {"min": "a", "max": 0.1}}, "searcher": "tpe"},
     "search.learning_rate", "must be numbers"),
    ("a float range of an integer", {"search": {"seed": {"min": 0.5, "max": 4}}, "searcher": "tpe"},
     "search.seed", "integers"),
    ("a listed value of the wrong type", {"search": {"num_workers": [1, "many"]}}, "search.num_workers", "many"),
    ("a log range from 0", {"search": {"learning_rate": {"min": 0, "max": 0.1, "log": True}}, "searcher": "tpe"},
     "search.learning_rate", "min > 0"),
    ("an empty list", {"search": {"learning_rate": []}}, "search.learning_rate", "at least one value"),
    ("no search at all", {"search": {}}, "search", "at least one parameter"),
    ("a huge grid", {"search": {"learning_rate": [round(0.001 * (i + 1), 4) for i in range(50)],
                                "seed": list(range(40))}}, "search", "2,000 points"),
    ("a grid over a range without count", {"search": {"learning_rate": {"min": 0.001, "max": 0.1}}},
     "search.learning_rate", "count"),
    ("max_concurrent_trials over the quota", {"max_concurrent_trials": 9}, "max_concurrent_trials", "quota of 8"),
    ("max_concurrent_trials of 0", {"max_concurrent_trials": 0}, "max_concurrent_trials", "1 or more"),
    ("an unknown metric", {"metric": "f1_score"}, "metric", "f1_score"),
    ("an inference template", {"template": "image-classification-infer", "search": {"batch_size": [1, 2]}},
     "template", "inference"),
    ("an unknown template", {"template": "nope"}, "template", "unknown template"),
    ("a name with a space", {"name": "my sweep"}, "name", "letters, digits or underscores"),
    ("an unknown top-level field", {"budget": 3}, "budget", "unknown field"),
    ("an unknown searcher", {"searcher": "bayes"}, "searcher", "grid, random, tpe"),
    ("a searched and fixed parameter", {"params": {**DEMO_PARAMS, "learning_rate": 0.1}},
     "search.learning_rate", "both fixed"),
    ("too many restarts", {"max_restarts": 99}, "max_restarts", "0 to 20"),
    ("a non-object body", "not an object", "", "JSON object"),
]


def hostile_request(changes) -> object:
    if not isinstance(changes, dict):
        return changes
    request = json.loads(json.dumps(VALID))
    request.update(changes)
    return request


def wait_for(what, check, timeout: float, interval: float = 0.3, refresh=None):
    """Poll ``check()`` until it returns something true; ``refresh()`` first each time (e.g. JobService.refresh)."""
    deadline = time.monotonic() + timeout
    while True:
        if refresh is not None:
            refresh()
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {timeout} s")
        time.sleep(interval)


def wait_experiment_end(experiments, experiment_id: str, timeout: float = 120, refresh: bool = True) -> dict:
    """Wait until the experiment ended (its row), its controller and trials too; returns it with its trials.

    ``refresh``: the test looks at the scheduler as a JupyterLab would (which also restarts killed jobs).
    """
    def ended():
        experiment = experiments.get(experiment_id)
        controller = experiments.jobs.store.get(f"{experiment_id}-controller")
        if experiment["status"] != "running" and all(t["status"] in FINAL for t in experiment["trials"]) \
                and (controller is None or controller.final):
            return experiment
        return None

    try:
        return wait_for(f"experiment {experiment_id}", ended, timeout,
                        refresh=experiments.jobs.refresh if refresh else None)
    except TimeoutError:
        raise TimeoutError(f"experiment {experiment_id} did not end: {describe(experiments, experiment_id)}") from None


FINAL = ("completed", "failed", "cancelled", "pruned")


def describe(experiments, experiment_id: str) -> str:
    """The experiment, its trials and its controller's log, for an assertion message."""
    experiment = experiments.get(experiment_id)
    trials = [(t["trial"], t["status"], t["epoch"], t["reason"]) for t in experiment["trials"]]
    log = Path(experiments.get_row(experiment_id).folder) / "log.txt"
    text = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    return (f"{experiment['status']} {experiment['reason']!r} counts {experiment['counts']} "
            f"controller {experiment['controller']}\ntrials {trials}\ncontroller log:\n{text}")


def metrics_lines(folder) -> list[dict]:
    path = Path(folder) / "output" / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def kill_local_job(job) -> None:
    """SIGKILL a local job's process group (its scheduler_id is "pid:create_time"), as a node failure would."""
    os.killpg(int(job.scheduler_id.split(":")[0]), signal.SIGKILL)


def stop_everything(experiments, root: Path | None = None) -> None:
    """Cancel every running experiment and unfinished job of the store; then kill any process left under ``root``."""
    for row in experiments.store.list("running", 1000, 0)[0]:
        try:
            experiments.cancel(row.id)
        except Exception:  # noqa: BLE001 - teardown: go on with the rest
            pass
    for job in experiments.jobs.store.unfinished():
        try:
            experiments.jobs.backend.cancel(job)
        except Exception:  # noqa: BLE001
            pass
    if root is None:
        return
    leftovers = []
    for proc in psutil.process_iter():
        try:
            if Path(proc.cwd()).is_relative_to(root):
                proc.kill()
                leftovers.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, FileNotFoundError):
            pass
    psutil.wait_procs(leftovers, timeout=5)
