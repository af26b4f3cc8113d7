"""The Slurm backend's knowledge: a validated choice -> ``#SBATCH`` lines.

A pure function, so it is tested with plain asserts and needs no cluster. The
Slurm spawner (batchspawner underneath) only calls it: nothing a user typed
reaches the batch script except through a validated :class:`~.options.Choice`,
whose profile extras were checked against a strict pattern when
``profiles.yaml`` was loaded.
"""

from __future__ import annotations

import math
import re

from .options import Choice

_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")


def slurm_time(hours: float) -> str:
    """Wall time as Slurm's D-HH:MM:SS, rounded up to the minute."""
    minutes = max(1, math.ceil(hours * 60 - 1e-9))
    days, minutes = divmod(minutes, 24 * 60)
    return f"{days}-{minutes // 60:02d}:{minutes % 60:02d}:00"


def job_name(username: str, server_name: str = "") -> str:
    """``clusterlab-<user>-<server>`` with anything unusual made safe."""
    parts = ["clusterlab", username] + ([server_name] if server_name else [])
    return _SAFE_NAME.sub("_", "-".join(parts))[:100]


def sbatch_directives(choice: Choice, name: str, output: str, requeue: bool | None = None) -> list[str]:
    """The ``#SBATCH`` lines for one server (or job) of this size.

    ``requeue``: whether Slurm may requeue it when its node fails (a job, which resumes
    from its checkpoint) or must not (a server: a JupyterLab started again elsewhere
    would not be the one the hub knows); None leaves it to the cluster's JobRequeue.
    A size of several nodes gets one task per GPU (or one per node on CPU) on each node,
    its cores shared among them; cores, memory and GPUs are per node, as Slurm counts them.
    """
    profile = choice.profile
    tasks = profile.tasks_per_node if profile.multi_node else 1
    lines = [
        f"--job-name={name}",
        f"--output={output}",
        f"--nodes={profile.nodes}",
        *([f"--ntasks-per-node={tasks}"] if profile.multi_node else ["--ntasks=1"]),
        f"--cpus-per-task={max(1, profile.cpus // tasks)}",
        f"--mem={math.ceil(profile.memory_gb * 1024)}M",
        f"--time={slurm_time(choice.hours)}",
    ]
    if profile.gpus:
        gres = f"gpu:{profile.gpu_type}:{profile.gpus}" if profile.gpu_type else f"gpu:{profile.gpus}"
        lines.append(f"--gres={gres}")
    for key in ("partition", "account", "qos", "constraint"):
        if profile.slurm.get(key):
            lines.append(f"--{key}={profile.slurm[key]}")
    if requeue is not None:
        lines.append("--requeue" if requeue else "--no-requeue")
    return [f"#SBATCH {line}" for line in lines]
