"""Where jobs run: one small translator per scheduler, one file each.

- :mod:`.local`: detached local processes (the embedded default);
- :mod:`.slurm`: ``sbatch`` / one ``squeue`` per poll / ``scancel``;
- :mod:`.kubernetes`: batch/v1 Jobs through the API server (kubernetes_asyncio).

All three run the same ``job.sh`` the service writes (every value in it quoted,
no user text), and learn how a job ended the same way: the script writes its
exit status to ``exit_code`` in the job folder, and a cancel leaves a
``cancelled`` mark first (a prune, ``pruned``). So a job's end is known even
after the scheduler has forgotten it, or after the JupyterLab that started it
was restarted.

Each also says which sizes a job could get now (``availability``), and whether
a job that ended did so by its own error or was killed from outside (a node
failure, a preemption, an OOM kill): :func:`ended_status` and the backends'
``statuses`` set ``restartable`` on the latter, which the job service restarts
from its checkpoint.
"""

from __future__ import annotations

from pathlib import Path

from .common import BackendError, ended_status
from .local import LocalBackend, local_availability, server_cores
from .slurm import SlurmBackend

__all__ = ["BackendError", "LocalBackend", "SlurmBackend", "ended_status", "local_availability", "make_backend",
           "server_cores"]


def make_backend(name: str, slurm_bin_dir: str = "/usr/bin", profiles_file: Path | None = None):
    """The backend ``name`` names: ``local`` (the default), ``slurm`` or ``kubernetes``."""
    if name == "slurm":
        return SlurmBackend(slurm_bin_dir)
    if name == "kubernetes":
        from .kubernetes import KubernetesBackend  # kubernetes_asyncio only where it is used

        return KubernetesBackend(profiles_file)
    return LocalBackend()
