"""What every training template shares: its job context, metrics, checkpoints, TensorBoard.

A template script starts with ``job = TrainingJob.from_environment()`` and gets:

- ``job.params`` (the validated parameters), ``job.output`` (its working folder),
  ``job.cpus`` (the granted cores: data-loading workers), ``job.device``
  (``cuda`` when a GPU is granted, else ``cpu``) and ``job.amp`` (mixed precision
  on GPU);
- ``job.metrics``: ``metrics.jsonl``, one line per epoch (step, epoch, total
  epochs, metrics), which the jobs panel's progress bar and charts read;
- ``job.tensorboard``: a SummaryWriter on ``output/tensorboard``;
- ``job.checkpoints``: the latest state saved atomically each epoch, and
  restored when the job is started again on the same output (after a kill, a
  node failure, a Slurm requeue), so that it ends with the same epoch count and
  its metrics and event files continue where they stopped;
- ``job.given_as(key)`` and ``job.file_in(key, name, made_by)``: a parameter that names a dataset or an
  earlier job's output (mounted read-only at ``input/<key>/``), as the user gave it, and the file a
  template expects in such a folder (``model.pt``);
- ``fail(message)``: stop before any training with a message a user understands.

A user's own script (the ``python-script`` template) takes part with one line
per epoch, ``report(epoch, epochs, val_accuracy=...)``, and reads the values an
experiment chose for it with ``options()``.

Only the standard library is imported here at module level, so a template can
report bad input before paying for ``import torch``.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any


class InputError(Exception):
    """Bad input found before training: the message is for the user."""


def fail(message: str) -> None:
    """Stop the job with a message a user understands (exit status 2)."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def options() -> dict:
    """The ``options`` parameter of a python-script job (an experiment's searched values); {} outside a job."""
    params_file = os.environ.get("CLUSTERLAB_PARAMS")
    return dict(json.loads(Path(params_file).read_text()).get("options") or {}) if params_file else {}


def report(epoch: int, epochs: int, step: int | None = None, **metrics: float) -> None:
    """Append one epoch's metrics to the job's ``metrics.jsonl``: its progress bar and charts, and an
    experiment's early stopping, read them. E.g. ``report(3, 10, val_accuracy=0.81, val_loss=0.52)``.

    The line: ``{"step", "epoch", "epochs", "time", "metrics": {name: number}}``.
    """
    output = Path(os.environ.get("CLUSTERLAB_OUTPUT", os.getcwd()))
    MetricsLog(output / "metrics.jsonl").write(epoch if step is None else step, epoch, epochs, **metrics)


class MetricsLog:
    """``metrics.jsonl``: one JSON object per line, rewritable from a given epoch on."""

    def __init__(self, path: Path):
        self.path = path

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        lines = []
        for line in self.path.read_text().splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                break  # a line cut short by a kill: drop it and what follows
        return lines

    def keep_until(self, epoch: int) -> None:
        """Drop lines after ``epoch`` (they belong to work the checkpoint does not have)."""
        kept = [line for line in self.read() if line.get("epoch", 0) <= epoch]
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(line) + "\n" for line in kept))
        tmp.replace(self.path)

    def write(self, step: int, epoch: int, epochs: int, **metrics: float) -> None:
        line = {"step": step, "epoch": epoch, "epochs": epochs, "time": round(time.time(), 3),
                "metrics": {k: float(v) for k, v in metrics.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(line) + "\n")
            f.flush()


class Checkpoints:
    """``checkpoints/last.pt``: everything needed to continue, written atomically."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.latest = folder / "last.pt"

    def save(self, state: dict[str, Any]) -> None:
        import torch

        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / "last.pt.tmp"
        torch.save(state, tmp)
        os.replace(tmp, self.latest)  # a kill mid-write leaves the previous one intact

    def load(self) -> dict[str, Any] | None:
        import torch

        if not self.latest.exists():
            return None
        return torch.load(self.latest, map_location="cpu", weights_only=False)


class TrainingJob:
    def __init__(self, params: dict, output: Path, cpus: int):
        self.params = params
        self.output = output
        self.cpus = cpus
        self.metrics = MetricsLog(output / "metrics.jsonl")
        self.checkpoints = Checkpoints(output / "checkpoints")
        self._tensorboard = None

    @classmethod
    def from_environment(cls) -> TrainingJob:
        """Inside a ClusterLab job (``CLUSTERLAB_PARAMS``); run by hand, the current folder."""
        params_file = os.environ.get("CLUSTERLAB_PARAMS")
        params = json.loads(Path(params_file).read_text()) if params_file else {}
        output = Path(os.environ.get("CLUSTERLAB_OUTPUT", os.getcwd()))
        cpus = int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)
        return cls(params, output, cpus)

    def path(self, key: str) -> Path:
        """A path parameter: relative ones are in the workspace, as the job service checked."""
        value = Path(self.params[key])
        return value if value.is_absolute() else Path(os.environ.get("CLUSTERLAB_WORKSPACE", ".")) / value

    # ----- inputs: a dataset, an earlier job's output, or a path ----------------------------------
    # A parameter of format dataset or job-output takes a reference (shapes:2, shapes, job:<id>) or a path.
    # For a reference the job service mounts the input read-only at <job>/input/<key>/ and params.json holds
    # that folder; job.json keeps the reference as pinned, which is what messages show. An earlier job's
    # output is a folder, so a parameter that names a file (a model) also takes a folder holding it.
    # Nothing here writes: an input may be read-only.

    def given_as(self, key: str) -> str:
        """The parameter as the user gave it: the pinned reference (``job:<id>``, ``shapes:2``) for a mounted
        input, else the path in params.json."""
        value = str(self.params.get(key))
        folder = os.environ.get("CLUSTERLAB_JOB_DIR")
        if folder:
            try:
                recorded = json.loads((Path(folder) / "job.json").read_text()).get("params", {}).get(key)
            except (OSError, ValueError, AttributeError):
                recorded = None
            if isinstance(recorded, str) and recorded != value:
                return recorded
        return value

    def file_in(self, key: str, name: str, made_by: str) -> tuple[Path, str]:
        """(the file, how to show it) for a parameter that names a file or a folder holding ``name`` (an
        earlier job's output); fail() naming the parameter when there is no such file."""
        if not self.params.get(key):
            fail(f"{key}: missing (give a {made_by} job, job:<id>, or the path of its {name})")
        shown, path = self.given_as(key), self.path(key)
        if path.is_dir():
            if (path / name).is_file():
                return path / name, f"{shown.rstrip('/')}/{name}"
            entries = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir()
                             if not p.name.startswith("."))
            has = f"it has {', '.join(entries[:6])}{', ...' if len(entries) > 6 else ''}" if entries else "it is empty"
            fail(f"{key}: {shown} holds no {name} ({has}): give a {made_by} job that completed (job:<id>; its "
                 f"output has {name}), the folder of such an output, or the path of a {name}")
        if not path.is_file():
            fail(f"{key}: {shown} does not exist (give a {made_by} job, job:<id>, or the path of its {name})")
        return path, shown

    # ----- the device ----------------------------------------------------------------

    @property
    def device(self):
        import torch

        return torch.device("cuda" if torch.cuda.is_available() else "cpu")

    @property
    def amp(self) -> bool:
        return self.device.type == "cuda"

    def seed(self, seed: int) -> None:
        import numpy as np
        import torch

        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    def loader_workers(self) -> int:
        """Data-loading workers: the granted cores but one (for the training loop)."""
        wanted = self.params.get("num_workers")
        return int(wanted) if wanted is not None else max(0, self.cpus - 1)

    # ----- TensorBoard ---------------------------------------------------------------

    def tensorboard(self, resume_step: int = 0):
        """The event writer; on resume, events after ``resume_step`` are purged."""
        if self._tensorboard is None:
            from torch.utils.tensorboard import SummaryWriter

            self._tensorboard = SummaryWriter(
                str(self.output / "tensorboard"), purge_step=resume_step if resume_step else None
            )
        return self._tensorboard

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()

    # ----- resuming --------------------------------------------------------------------

    def resume(self) -> dict | None:
        """The latest checkpoint, with metrics.jsonl cut back to it; None on a fresh start."""
        state = self.checkpoints.load()
        if state is None:
            if self.metrics.path.exists():
                self.metrics.path.unlink()  # a run killed before its first checkpoint
            return None
        self.metrics.keep_until(state["epoch"])
        print(f"resuming after epoch {state['epoch']} from {self.checkpoints.latest}", flush=True)
        return state


# ----- images: what the image templates share ----------------------------------------------

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


def find_images(folder: Path) -> list[Path]:
    """The images under ``folder`` (all depths), sorted; hidden files and folders left out."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(
            Path(dirpath) / name for name in filenames
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES
        )
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def unreadable_image(path: Path) -> str:
    """'' if Pillow reads the whole file, else why not (in words)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.verify()  # reads the whole file: a truncated or corrupt one fails here
        return ""
    except UnidentifiedImageError:
        return "not an image format Pillow knows, or a corrupt file"
    except (OSError, SyntaxError, ValueError) as e:
        return f"corrupt or truncated ({e})"


def inference_inputs(job: TrainingJob, trained_by: str) -> tuple[Path, Path, list[Path]]:
    """An inference job's ``model`` file and ``input`` folder of images, checked: fail() otherwise."""
    for key in ("model", "input"):
        if not job.params.get(key):
            fail(f"{key}: missing (give the model.pt a {trained_by} job wrote, and a folder of images)")
    model, folder = job.path("model"), job.path("input")
    shown = str(job.params["input"]).rstrip("/")
    if not model.is_file():
        fail(f"model: {job.params['model']} is not a file (give the output/model.pt of a {trained_by} job)")
    if not folder.is_dir():
        fail(f"input: {shown} is not a folder of images")
    images = find_images(folder)
    if not images:
        fail(f"input: {shown} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    for path in images:
        reason = unreadable_image(path)
        if reason:
            fail(f"input: {shown}/{path.relative_to(folder).as_posix()} cannot be read: {reason}")
    return model, folder, images
