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
- ``fail(message)``: stop before any training with a message a user understands;
- ``job.distributed``: this process's place in a data-parallel job across nodes (``srun``
  starts one process per GPU, or per node on CPU; the rendezvous comes from Slurm's
  environment, or torchrun's): ``job.distributed.start()`` joins the process group (NCCL
  on GPUs, gloo on CPU). Only rank 0 writes metrics, checkpoints, TensorBoard events and
  the log's progress lines; the other ranks' writes are dropped here, once for every
  template.

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

    def __init__(self, path: Path, enabled: bool = True):
        self.path = path
        self.enabled = enabled  # False on ranks other than 0: one writer

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
        if not self.enabled:
            return
        kept = [line for line in self.read() if line.get("epoch", 0) <= epoch]
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(line) + "\n" for line in kept))
        tmp.replace(self.path)

    def write(self, step: int, epoch: int, epochs: int, **metrics: float) -> None:
        if not self.enabled:
            return
        line = {"step": step, "epoch": epoch, "epochs": epochs, "time": round(time.time(), 3),
                "metrics": {k: float(v) for k, v in metrics.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(line) + "\n")
            f.flush()


class Checkpoints:
    """``checkpoints/last.pt``: everything needed to continue, written atomically (by rank 0 alone:
    ``enabled`` is False on the other ranks of a distributed job, which read it but never write)."""

    def __init__(self, folder: Path, enabled: bool = True):
        self.folder = folder
        self.latest = folder / "last.pt"
        self.enabled = enabled

    def save(self, state: dict[str, Any]) -> None:
        if not self.enabled:
            return
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


def expand_nodelist(nodelist: str) -> list[str]:
    """Slurm's compressed host list -> names: ``node[1-3,7],gpu-a`` -> node1, node2, node3, node7, gpu-a
    (zero padding kept: ``n[08-10]`` -> n08, n09, n10). The same as ``scontrol show hostnames``."""
    names, i = [], 0
    while i < len(nodelist):
        end = i
        depth = 0
        while end < len(nodelist) and (depth or nodelist[end] != ","):
            depth += {"[": 1, "]": -1}.get(nodelist[end], 0)
            end += 1
        part, i = nodelist[i:end].strip(), end + 1
        if "[" not in part:
            if part:
                names.append(part)
            continue
        prefix, ranges = part[:part.index("[")], part[part.index("[") + 1:part.rindex("]")]
        suffix = part[part.rindex("]") + 1:]
        for piece in ranges.split(","):
            low, _, high = piece.partition("-")
            width = len(low) if low.startswith("0") else 0
            for number in range(int(low), int(high or low) + 1):
                names.append(f"{prefix}{number:0{width}d}{suffix}")
    return names


class Distributed:
    """This process's rank in a job of several processes, from Slurm's environment (``srun`` sets
    SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_JOB_NODELIST) or torchrun's (RANK, WORLD_SIZE,
    LOCAL_RANK, MASTER_ADDR, MASTER_PORT). One process alone is rank 0 of 1, and start() does nothing."""

    def __init__(self, environ: dict | None = None):
        env = os.environ if environ is None else environ
        if "RANK" in env and "WORLD_SIZE" in env:  # torchrun, or a launcher that speaks its variables
            self.rank, self.world_size = int(env["RANK"]), int(env["WORLD_SIZE"])
            self.local_rank = int(env.get("LOCAL_RANK", 0))
            self.master = env.get("MASTER_ADDR", "127.0.0.1")
            self.port = int(env.get("MASTER_PORT", 29500))
        elif int(env.get("SLURM_NTASKS", 1)) > 1 and "SLURM_PROCID" in env:
            self.rank, self.world_size = int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"])
            self.local_rank = int(env.get("SLURM_LOCALID", 0))
            self.master = expand_nodelist(env.get("SLURM_JOB_NODELIST", "127.0.0.1"))[0]
            # one port per job (a requeued job keeps its id, and its last run is gone): away from ephemeral ports
            self.port = 20000 + int(env.get("SLURM_JOB_ID", 0)) % 10000
        else:
            self.rank, self.world_size, self.local_rank, self.master, self.port = 0, 1, 0, "", 0
        self.started = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes what the job keeps."""
        return self.rank == 0

    def start(self, device) -> None:
        """Join the process group: NCCL between GPUs, gloo between CPUs."""
        if not self.enabled or self.started:
            return
        import datetime

        import torch.distributed as dist

        if device.type == "cuda":
            import torch

            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                init_method=f"tcp://{self.master}:{self.port}", rank=self.rank,
                                world_size=self.world_size, timeout=datetime.timedelta(minutes=10))
        self.started = True

    def sum(self, *values: float) -> list[float]:
        """Each value summed over every rank (one all_reduce)."""
        if not self.started:
            return list(values)
        import torch
        import torch.distributed as dist

        tensor = torch.tensor(values, dtype=torch.float64,
                              device="cuda" if dist.get_backend() == "nccl" else "cpu")
        dist.all_reduce(tensor)
        return tensor.tolist()

    def barrier(self) -> None:
        if self.started:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.started:
            import torch.distributed as dist

            dist.destroy_process_group()
            self.started = False


class _Discard:
    """What a rank other than 0 gets for a TensorBoard writer: every call does nothing."""

    def __getattr__(self, _name):
        return lambda *args, **kwargs: None


class TrainingJob:
    def __init__(self, params: dict, output: Path, cpus: int, distributed: Distributed | None = None):
        self.params = params
        self.output = output
        self.cpus = cpus
        self.distributed = distributed or Distributed({})
        self.metrics = MetricsLog(output / "metrics.jsonl", enabled=self.distributed.main)
        self.checkpoints = Checkpoints(output / "checkpoints", enabled=self.distributed.main)
        self._tensorboard = None

    @classmethod
    def from_environment(cls) -> TrainingJob:
        """Inside a ClusterLab job (``CLUSTERLAB_PARAMS``); run by hand, the current folder."""
        params_file = os.environ.get("CLUSTERLAB_PARAMS")
        params = json.loads(Path(params_file).read_text()) if params_file else {}
        output = Path(os.environ.get("CLUSTERLAB_OUTPUT", os.getcwd()))
        cpus = int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)
        distributed = Distributed()
        if not distributed.main:
            sys.stdout = open(os.devnull, "w")  # one copy of the progress lines in the log: rank 0's (errors stay)
        return cls(params, output, cpus, distributed)

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
        """The GPU (this rank's own, in a distributed job) when one is granted, else the CPU."""
        import torch

        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", self.distributed.local_rank % torch.cuda.device_count())

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
        if not self.distributed.main:
            return _Discard()
        if self._tensorboard is None:
            from torch.utils.tensorboard import SummaryWriter

            self._tensorboard = SummaryWriter(
                str(self.output / "tensorboard"), purge_step=resume_step if resume_step else None
            )
        return self._tensorboard

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()
        self.distributed.close()

    # ----- resuming --------------------------------------------------------------------

    def resume(self) -> dict | None:
        """The latest checkpoint, with metrics.jsonl cut back to it; None on a fresh start."""
        state = self.checkpoints.load()
        if state is None:
            if self.distributed.main and self.metrics.path.exists():
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
