"""Parameters that name an input: a dataset, an earlier job's output, or a path the user typed.

A parameter of ``format: dataset`` or ``format: job-output`` takes a reference
(``shapes:2``, ``shapes`` for its latest version, ``job:<id>``) or a path. For a
reference the job service mounts the input read-only at ``<job>/input/<key>/``
and ``params.json`` holds that folder; ``job.json`` keeps the reference as it
was pinned, which is what the messages show. An earlier job's output is a
folder, so a parameter that names a file (a model) also takes a folder that
holds it. Nothing here writes: an input may be read-only.

The same file is in each training template's folder (each template stays
self-contained); the template tests check that the copies match.
Only the standard library: bad input is reported before ``import torch``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from clusterlab_server.training import TrainingJob, fail


def given_as(job: TrainingJob, key: str) -> str:
    """The parameter as the user gave it: the pinned reference (``job:<id>``, ``shapes:2``) for a mounted
    input, else the path in params.json."""
    value = str(job.params.get(key))
    folder = os.environ.get("CLUSTERLAB_JOB_DIR")
    if folder:
        try:
            recorded = json.loads((Path(folder) / "job.json").read_text()).get("params", {}).get(key)
        except (OSError, ValueError, AttributeError):
            recorded = None
        if isinstance(recorded, str) and recorded != value:
            return recorded
    return value


def file_in(job: TrainingJob, key: str, name: str, made_by: str) -> tuple[Path, str]:
    """(the file, how to show it) for a parameter that names a file or a folder holding ``name`` (an earlier
    job's output); fail() naming the parameter when there is no such file."""
    if not job.params.get(key):
        fail(f"{key}: missing (give a {made_by} job, job:<id>, or the path of its {name})")
    shown, path = given_as(job, key), job.path(key)
    if path.is_dir():
        if (path / name).is_file():
            return path / name, f"{shown.rstrip('/')}/{name}"
        entries = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir() if not p.name.startswith("."))
        has = f"it has {', '.join(entries[:6])}{', ...' if len(entries) > 6 else ''}" if entries else "it is empty"
        fail(f"{key}: {shown} holds no {name} ({has}): give a {made_by} job that completed (job:<id>; its output "
             f"has {name}), the folder of such an output, or the path of a {name}")
    if not path.is_file():
        fail(f"{key}: {shown} does not exist (give a {made_by} job, job:<id>, or the path of its {name})")
    return path, shown
