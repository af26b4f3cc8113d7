"""Early stopping against the full grid, side by side in one run, on the same configurations and data.

1. Experiments of image-classification-train on the demo shapes, on the local
   backend, over the same 16-point grid (learning rate x optimizer x model size)
   and the same number of epochs: one without early stopping (every configuration
   to the last epoch), then a few with ASHA (``early_stopping: asha``; each walks
   the grid in its own order, and asynchronous halving depends on which trials
   reach a rung first). Prints the ratio of the epochs trained in all (goal <=
   0.33; Luminide claims 5-10x fewer) and the ratio of the best metric found
   (goal >= 0.99), for each ASHA run and their median.
2. Scheduler calls per controller round with 16 trials on the real Slurm (goal 1):
   the controller is run in-process for one round after another, and the Slurm
   backend counts its calls.

2 needs root and a running Slurm (`make slurm`); 1 runs anywhere (about 6 minutes on 2 cores).

    .venv/bin/python tests/benchmarks/search_efficiency.py [--epochs 9] [--concurrent 2] [--divisor 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROFILES = REPO / "hub_config" / "profiles.yaml"

GRID = {"learning_rate": [0.0003, 0.003, 0.03, 0.3], "optimizer": ["adamw", "sgd"], "model_size": ["small", "medium"]}


def services(root: Path, workspace: Path, backend: str = "local"):
    from clusterlab_server.experiments.service import ExperimentService
    from clusterlab_server.service import JobService, Settings

    jobs = JobService(Settings(jobs_root=root / "jobs", workspace=workspace, template_paths=[REPO / "templates"],
                               profiles_file=PROFILES, backend=backend))
    return jobs, ExperimentService(jobs, max_concurrent_trials=16, poll_interval=0.25)


def run_experiment(root: Path, workspace: Path, epochs: int, concurrent: int, early_stopping: str,
                   divisor: int) -> dict:
    jobs, experiments = services(root, workspace)
    experiment = experiments.create({
        "template": "image-classification-train", "name": f"grid_{early_stopping}",
        "params": {"dataset": "demo/shapes", "epochs": epochs, "image_size": 32, "batch_size": 32, "seed": 0},
        "search": GRID, "searcher": "grid", "early_stopping": early_stopping, "divisor": divisor, "max_rungs": 3,
        "metric": "val_loss", "maximize": False, "max_concurrent_trials": concurrent, "profile": "cpu-small",
    })
    started = time.monotonic()
    while True:
        jobs.refresh()  # as the user's JupyterLab does (and restarts what dies)
        shown = experiments.get(experiment["id"])
        if shown["status"] != "running":
            break
        time.sleep(1)
    assert shown["status"] == "completed", shown
    # the epochs each trial really trained: the lines of its metrics.jsonl
    trained = sum(len((Path(jobs.get(t["job_id"]).folder) / "output" / "metrics.jsonl").read_text().splitlines())
                  for t in shown["trials"])
    # and up to each verdict: a pruned trial trains on until its cancel lands (a poll, then SIGTERM)
    verdicts = [re.search(r"at epoch (\d+)", t["reason"]) for t in shown["trials"] if t["status"] == "pruned"]
    decided = sum(t["epoch"] for t in shown["trials"] if t["status"] != "pruned") + sum(
        int(m.group(1)) for m in verdicts if m)
    return {"epochs": trained, "decided": decided, "best": shown["best"], "seconds": time.monotonic() - started,
            "pruned": shown["counts"]["pruned"], "trials": shown["counts"]["trials"]}


def bench_search(tmp: Path, epochs: int, concurrent: int, divisor: int, repeats: int) -> None:
    """The full grid once; ASHA ``repeats`` times (asynchronous halving depends on the order in which trials
    reach a rung, and each experiment walks the grid in an order of its own)."""
    from clusterlab_server.demo_data import generate

    workspace = tmp / "workspace"
    generate(workspace / "demo")
    full = run_experiment(tmp / "full", workspace, epochs, concurrent, "none", divisor)
    print(f"1. 16-point grid, {epochs} epochs, {concurrent} at once, val_loss (smaller is better); "
          f"ASHA with divisor {divisor}, 3 rungs:")
    print(f"   full grid: {full['epochs']} epochs trained, best val_loss {full['best']['value']:.4f} "
          f"({json.dumps(full['best']['params'])}), {full['seconds']:.0f} s")
    ratios = []
    for run in range(repeats):
        asha = run_experiment(tmp / f"asha{run}", workspace, epochs, concurrent, "asha", divisor)
        # val_loss: smaller is better, so the ratio of the metric found is full / asha (1.0: as good)
        quality = full["best"]["value"] / asha["best"]["value"]
        ratios.append((asha["epochs"] / full["epochs"], quality, asha["seconds"] / full["seconds"]))
        print(f"   ASHA run {run + 1}: {asha['epochs']} epochs trained ({asha['decided']} up to each trial's "
              f"verdict), {asha['pruned']} of {asha['trials']} pruned, best val_loss {asha['best']['value']:.4f} "
              f"({json.dumps(asha['best']['params'])}), {asha['seconds']:.0f} s")
    epochs_ratio, quality, time_ratio = (statistics.median(r[i] for r in ratios) for i in range(3))
    print(f"   median over {repeats} ASHA runs: epochs ratio ASHA / full {epochs_ratio:.2f} (goal <= 0.33; "
          f"each: {', '.join(f'{r[0]:.2f}' for r in ratios)}); best metric ratio {quality:.3f} (goal >= 0.99; "
          f"each: {', '.join(f'{r[1]:.3f}' for r in ratios)}); time ratio {time_ratio:.2f}")


def bench_scheduler_calls(tmp: Path, trials: int = 16, rounds: int = 3) -> None:
    from clusterlab_server.experiments.controller import Controller

    workspace = tmp / "slurm-workspace"
    workspace.mkdir(parents=True)
    (workspace / "sleepy.py").write_text("import time\ntime.sleep(600)\n")
    jobs, experiments = services(tmp / "slurm", workspace, backend="slurm")
    experiment = experiments.create({
        "template": "python-script", "name": "calls", "params": {"script": "sleepy.py"},
        "search": {"options.lr": [10 ** -i for i in range(trials)]}, "searcher": "grid",
        "max_concurrent_trials": trials, "metric": "val_accuracy", "profile": "cpu-small", "hours": 0.25,
    })
    # this benchmark drives the controller itself, so that its calls are the ones counted
    jobs.cancel(experiment["controller"]["job_id"])
    controller = Controller(Path(experiments.get_row(experiment["id"]).folder), poll_interval=0)
    try:
        controller.step()  # submits the 16 trials
        assert len(jobs.list(experiment_id=experiment["id"])[0]) == trials
        before = controller.jobs.backend.commands_run
        for _ in range(rounds):
            controller.step()
        per_round = (controller.jobs.backend.commands_run - before) / rounds
        print(f"2. controller rounds with {trials} Slurm trials: {per_round:.0f} scheduler call(s) per round "
              f"(goal 1); a per-trial poller would make {trials}")
    finally:
        experiments.cancel(experiment["id"])


def slurm_here() -> bool:
    return os.geteuid() == 0 and subprocess.run(["sinfo"], capture_output=True).returncode == 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument("--concurrent", type=int, default=2)
    parser.add_argument("--divisor", type=int, default=4, help="ASHA's (Determined's default: 4)")
    parser.add_argument("--repeats", type=int, default=3, help="ASHA runs against the one full grid")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="clusterlab-search-") as tmp:
        bench_search(Path(tmp), args.epochs, args.concurrent, args.divisor, args.repeats)
        if slurm_here():
            bench_scheduler_calls(Path(tmp))
        else:
            print("2. skipped: needs root and a running Slurm (`make slurm`)")


if __name__ == "__main__":
    sys.exit(main())
