"""AI Studio's own steps against the training they wrap, measured in one run on the demo data.

The demo shapes (all of ``clusterlab demo-data``'s 240: 80 of each class, 64 px, without their class
folders) are frozen as a labelling and
labelled in a real Label Studio through its API (the user's clicks: not timed), then the chain runs as
the REST API runs it, through :class:`StudioService` on the local backend:

- the chain's own steps, timed one by one: freezing the pictures (create labelling), export (Label Studio's
  export, the split, the layout, the dataset version), starting the grid, starting the validation,
  registration (the model and report frozen in the registry) and publishing (the model card and a push to
  a local bare repository);
- the training it wraps, two ways: the trials' span (the first trial's start to the last one's end, both
  running at once on this machine's cores), and the experiment's wall time as its user waits for it
  (from "Train a grid" to the experiment's end: its controller job and the trials' launches included).
  The validation's inference job is printed beside them, for scale.

Goal: the chain's steps add <= 5 % to the training's wall time; the ratio is printed against both. Label Studio's first start (its database
migrated) is printed apart: it happens once per user, not once per chain.

    .venv/bin/python tests/benchmarks/ai_studio.py [--per-class 60] [--epochs 10] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "server_extension"))
sys.path.insert(0, str(REPO / "tests"))
from clusterlab_server.experiments.service import ExperimentService  # noqa: E402
from clusterlab_server.service import JobService, Settings  # noqa: E402
from clusterlab_server.studio.service import StudioService  # noqa: E402
from label_studio_helpers import annotate  # noqa: E402
from studio_helpers import unlabelled_shapes  # noqa: E402


def timed(steps: dict, name: str, call, *args):
    start = time.perf_counter()
    result = call(*args)
    steps[name] = time.perf_counter() - start
    return result


def wait(jobs: JobService, check, what: str, timeout: float = 3600) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs.refresh()
        found = check()
        if found is not None:
            return found
        time.sleep(0.5)
    raise TimeoutError(what)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-class", type=int, default=80, help="pictures of each of the 3 shapes (default: 80, "
                                                                  "as many as the demo data has)")
    parser.add_argument("--epochs", type=int, default=10, help="each trial's epochs (default: the template's 10)")
    parser.add_argument("--dir", type=Path, default=None, help="where to work (default: a temp folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ai-studio-bench-", dir=args.dir) as scratch:
        root = Path(scratch)
        workspace = root / "workspace"
        workspace.mkdir()
        jobs = JobService(Settings(jobs_root=root / "jobs", workspace=workspace, template_paths=[REPO / "templates"],
                                   profiles_file=REPO / "hub_config" / "profiles.yaml", backend="local"))
        experiments = ExperimentService(jobs, poll_interval=0.5)
        studio = StudioService(jobs, experiments)
        truth = unlabelled_shapes(workspace, per_class=args.per_class, size=64)
        steps: dict[str, float] = {}
        try:
            labelling = timed(steps, "create labelling", studio.create_labelling, {
                "name": "shapes", "classes": ["circle", "square", "triangle"], "images": "unlabelled"})
            start = time.perf_counter()
            opened = studio.open_labelling(labelling["id"])
            first_start = time.perf_counter() - start
            prefix = f"{labelling['id']}/images/"
            annotate(studio.label_studio, opened["label_studio_project"],
                     {prefix + path: label for path, label in truth.items()})
            version = timed(steps, "export", studio.export, labelling["id"], {"dataset": "shapes"})
            asked = time.monotonic()
            experiment = timed(steps, "start the grid", studio.start_experiment, {
                "dataset": f"shapes:{version['version']}", "params": {"epochs": args.epochs, "num_workers": 0},
                "search": {"learning_rate": [0.001, 0.003]}})
            ended = wait(jobs, lambda: (e if (e := experiments.get(experiment["id"]))["status"] != "running"
                                        else None), "the experiment")
            waited = time.monotonic() - asked
            trials = [jobs.get(t["job_id"]) for t in ended["trials"]]
            training = (max(j.end_time for j in trials) - min(j.start_time for j in trials)).total_seconds()
            best = ended["best"]["job_id"]
            validation = timed(steps, "start the validation", studio.validate, {"job": best})
            validated = wait(jobs, lambda: (v if (v := studio.get_validation(validation["id"]))["status"] != "running"
                                            else None), "the validation")
            inference = jobs.get(validated["inference_job"])
            inferring = (inference.end_time - inference.start_time).total_seconds()
            timed(steps, "register", studio.register, {"name": "shapes_classifier", "job": best})
            bare = workspace / "shapes.git"
            subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
            timed(steps, "publish", studio.publish, "shapes_classifier", 1, {"repository": f"file://{bare}"})
        finally:
            studio.shutdown()
        own = sum(steps.values())
        print(f"AI Studio on {len(truth)} demo pictures, a grid of 2 trials of {args.epochs} epochs (local backend)")
        print(f"  Label Studio's first start (once per user): {first_start:.2f} s")
        for name, seconds in steps.items():
            print(f"  {name:<22} {seconds * 1000:8.1f} ms")
        print(f"  the chain's own steps  {own:8.3f} s")
        print(f"  training: the trials' span {training:6.1f} s, the experiment as waited for {waited:6.1f} s")
        print(f"  (the validation's inference job: {inferring:.1f} s; accuracy {validated['report']['accuracy']:.3f})")
        for what, seconds in (("the trials' span", training), ("the experiment's wall time", waited)):
            ratio = own / seconds
            print(f"chain / {what} = {ratio:.4f}  (goal <= 0.05: {'met' if ratio <= 0.05 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
