"""The local backend: JupyterLab as a process on this machine (the embedded default).

A profile is applied as far as one machine honestly can without root-owned
cgroups:

- CPU: the process is pinned (``sched_setaffinity``) to the least used cores,
  ``min(cpus, cores here)`` of them, and the thread-count variables say so.
  Cores are shared once all are pinned, as on any workstation, unless
  ``oversubscribe_cpus`` is off.
- Memory: ``RLIMIT_DATA`` caps each process's private writable memory (heap
  and anonymous maps). It is per process, not a total across the kernels a
  server starts; a cgroup would give that, but needs a writable cgroup tree.
- GPUs: handed out exclusively from a pool the hub keeps (``CUDA_VISIBLE_DEVICES``);
  two servers never share one, and a request that cannot be met is refused.
- Wall time: the server is stopped when the hours asked for are over.

Accounts: when the hub runs as root, each server (and every job it starts)
runs as the user's own Unix account (uid, gid, supplementary groups, HOME),
in that account's home folder; system accounts are refused and a missing
account is made only if ``create_unix_users`` is on (see :mod:`.accounts`).
A hub that is not root cannot switch accounts: every server then runs as the
hub's own user, in its own folder under the data directory, which separates
users' folders and devices but not their privileges (the hub says so, see
:func:`.accounts.shared_account_notice`).
"""

from __future__ import annotations

import os
import pwd
import re
import resource
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psutil
from jupyterhub.spawner import LocalProcessSpawner, set_user_setuid
from traitlets import Bool, List, Unicode, default

from . import accounts
from .options import Choice, OptionsError
from .pool import DevicePool, PoolExhausted
from .spawner import Availability, ClusterSpawner

THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)

# one pool per machine, shared by every spawner of this hub process
_pools: dict[tuple, DevicePool] = {}


def _pool(kind: str, ids: list[str], exclusive: bool) -> DevicePool:
    key = (kind, tuple(ids))
    if key not in _pools:
        _pools[key] = DevicePool(ids, exclusive=exclusive)
    return _pools[key]


def detect_gpus() -> list[str]:
    """Indices of the NVIDIA GPUs here, from nvidia-smi; [] when there are none."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        out = subprocess.run(
            [smi, "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip().isdigit()]


def local_limits(choice: Choice, cores: list[str], gpus: list[str]) -> dict:
    """The pure part of this backend: a choice and its devices -> process limits."""
    threads = str(len(cores))
    env = {name: threads for name in THREAD_VARIABLES}
    env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    return {
        "affinity": sorted(int(c) for c in cores),
        "rlimit_data": choice.profile.memory_bytes,
        "env": env,
        "deadline_seconds": choice.seconds,
    }


class LocalClusterSpawner(ClusterSpawner, LocalProcessSpawner):
    """ClusterSpawner on local processes."""

    users_root = Unicode(
        config=True,
        help="""Where servers run as the hub's own account (a hub that is not root):
        the folder that holds one folder per user; a user's server starts in
        (and has HOME set to) ``<users_root>/<username>``. A root hub runs each
        server in its user's own home instead.""",
    )

    @default("users_root")
    def _users_root_default(self):
        return str(Path(os.environ.get("CLUSTERLAB_DATA_DIR", ".clusterlab")).resolve() / "users")

    gpu_ids = List(
        Unicode(),
        config=True,
        help="""GPU ids this machine lends out (as CUDA_VISIBLE_DEVICES values).

        Default: the GPUs nvidia-smi lists. On a machine without GPUs, a list
        of fake ids (e.g. ["0", "1"]) exercises the same allocation.
        """,
    )

    @default("gpu_ids")
    def _gpu_ids_default(self):
        return detect_gpus()

    cpu_ids = List(
        Unicode(),
        config=True,
        help="Cores servers may be pinned to. Default: the cores the hub may run on.",
    )

    @default("cpu_ids")
    def _cpu_ids_default(self):
        return [str(c) for c in sorted(os.sched_getaffinity(0))]

    oversubscribe_cpus = Bool(
        True,
        config=True,
        help="""Let servers share cores once every core is pinned. If False, a
        size that needs more free cores than there are is refused.""",
    )

    @default("max_concurrent_starts")
    def _max_concurrent_starts_default(self):
        return len(os.sched_getaffinity(0))  # the cores this machine gives the hub and its servers

    # A turn's wait counts in the hub's start_timeout, and a busy machine starts
    # slowly: the hub must not give up on a server that is still starting
    # (JupyterHub's defaults are 60 s and 30 s).
    @default("start_timeout")
    def _start_timeout_default(self):
        return 600

    @default("http_timeout")
    def _http_timeout_default(self):
        return 120

    # state kept across hub restarts (with the pid the parent class keeps)
    pid_create_time = None
    deadline = None

    @property
    def gpu_pool(self) -> DevicePool:
        return _pool("gpu", self.gpu_ids, exclusive=True)

    @property
    def cpu_pool(self) -> DevicePool:
        return _pool("cpu", self.cpu_ids, exclusive=not self.oversubscribe_cpus)

    @property
    def holder(self) -> tuple[str, str]:
        return (self.user.name, self.name)

    @property
    def runs_as_user_account(self) -> bool:
        # only root can start a process as another account
        return os.geteuid() == 0

    @property
    def home_dir(self) -> Path:
        if self.runs_as_user_account:
            return Path((self.account or pwd.getpwnam(self.user.name)).pw_dir)
        return Path(self.users_root) / self.user.name

    # ----- availability and devices ---------------------------------------------

    def availability(self) -> Availability:
        free_gpus = len(self.gpu_pool.free())
        free_cpus = len(self.cpu_pool.free())
        blocked, impossible, notes = {}, {}, {}
        machine_cpus = len(self.cpu_ids)
        for profile in self.profiles.values():
            cores = min(profile.cpus, machine_cpus)  # what reserve() pins
            if profile.multi_node:
                impossible[profile.id] = f"needs {profile.nodes} nodes; this is one machine"
            elif profile.gpus > len(self.gpu_ids):
                impossible[profile.id] = (
                    f"needs {profile.gpus} GPU(s); this machine has {len(self.gpu_ids)}"
                )
            elif profile.gpus > free_gpus:
                blocked[profile.id] = f"needs {profile.gpus} GPU(s); {free_gpus} free now"
            elif not self.oversubscribe_cpus and cores > free_cpus:
                blocked[profile.id] = f"needs {profile.cpus} cores; {free_cpus} free now"
            else:
                # what it really gets: a size larger than the machine gets the machine
                said = []
                if profile.cpus > machine_cpus:
                    said.append(f"gets {cores} of the {profile.cpus} cores it asks for "
                                f"(this machine has {machine_cpus})")
                if cores > free_cpus:
                    said.append(f"shares cores with running servers ({free_cpus} free)")
                if said:
                    notes[profile.id] = "; ".join(said)
        return Availability(free_cpus, machine_cpus, free_gpus, len(self.gpu_ids), blocked, impossible, notes)

    def reserve(self, choice: Choice) -> None:
        try:
            self.gpu_pool.allocate(self.holder, choice.profile.gpus)
        except PoolExhausted as e:
            raise OptionsError("profile", f"{choice.profile.id}: GPUs: {e}") from None
        try:
            self.cpu_pool.allocate(self.holder, min(choice.profile.cpus, len(self.cpu_ids)))
        except PoolExhausted as e:
            self.gpu_pool.release(self.holder)
            raise OptionsError("profile", f"{choice.profile.id}: cores: {e}") from None

    def release(self) -> None:
        self.gpu_pool.release(self.holder)
        self.cpu_pool.release(self.holder)

    @property
    def limits(self) -> dict:
        return local_limits(
            self.choice, self.cpu_pool.held_by(self.holder), self.gpu_pool.held_by(self.holder)
        )

    # ----- the process ---------------------------------------------------------------

    def user_env(self, env):
        if self.runs_as_user_account:
            return super().user_env(env)  # USER, HOME and SHELL of the account
        # the hub's own account runs every server: HOME is the user's folder of the data dir
        env["USER"] = self.user.name
        env["HOME"] = str(self.home_dir)
        env["SHELL"] = "/bin/bash"
        return env

    def get_env(self):
        env = super().get_env()
        if self.choice is not None:
            env.update(self.limits["env"])
        return env

    def make_preexec_fn(self, name):
        limits = self.limits
        if self.runs_as_user_account:
            home = accounts.ensure_home(self.account)
            # JupyterHub's own: setgid, the account's groups, setuid, chdir home
            become_user = set_user_setuid(name, chdir=False)
        else:
            home = self.home_dir
            home.mkdir(parents=True, exist_ok=True)
            become_user = None

        def preexec():  # runs in the child, between fork and exec
            os.sched_setaffinity(0, limits["affinity"])
            data = limits["rlimit_data"]
            resource.setrlimit(resource.RLIMIT_DATA, (data, data))
            if become_user is not None:
                become_user()
            os.chdir(home)  # as the user: a home they cannot enter fails the spawn here

        return preexec

    async def move_certs(self, paths):
        if self.runs_as_user_account:
            return await super().move_certs(paths)  # into the account's home, owned by it
        return paths  # internal SSL certs stay where the hub made them

    async def start(self):
        url = await super().start()
        self.pid_create_time = psutil.Process(self.pid).create_time()
        self.deadline = time.time() + self.limits["deadline_seconds"]
        return url

    async def stop(self, now=False):
        """SIGTERM, then SIGKILL after ``term_timeout``; not JupyterHub's SIGINT first.

        jupyter server takes SIGINT as "stop" only with a terminal on its stdin.
        Without one (a hub in the background, under systemd, in the tests) SIGINT
        ends it at once and skips its shutdown: kernels, and extensions such as
        ClusterLab's TensorBoard, which left its folder in the temp folder.
        SIGTERM always runs that shutdown.
        """
        if now:
            return await super().stop(now=True)  # JupyterHub's own: SIGTERM, then SIGKILL
        if await self.poll() is not None:
            return
        self.log.debug("Terminating %i", self.pid)
        await self._signal(signal.SIGTERM)
        if await self.wait_for_death(self.term_timeout):
            return
        self.log.warning("%s did not stop in %d s of SIGTERM; killing it", self._log_name, self.term_timeout)
        await self._signal(signal.SIGKILL)
        await self.wait_for_death(self.kill_timeout)

    # ----- state across hub restarts ----------------------------------------------------

    def get_state(self):
        state = super().get_state()
        if self.pid:
            state.update(
                pid_create_time=self.pid_create_time,
                deadline=self.deadline,
                cores=self.cpu_pool.held_by(self.holder),
                gpus=self.gpu_pool.held_by(self.holder),
            )
        return state

    def load_state(self, state):
        super().load_state(state)
        self.pid_create_time = state.get("pid_create_time")
        self.deadline = state.get("deadline")
        if self.pid:
            self.cpu_pool.claim(self.holder, state.get("cores", []))
            self.gpu_pool.claim(self.holder, state.get("gpus", []))

    def clear_state(self):
        super().clear_state()
        self.pid = 0
        self.pid_create_time = self.deadline = None
        self.release()

    def _is_our_process(self) -> bool:
        # after a restart a bare pid may have been reused by another process
        try:
            proc = psutil.Process(self.pid)
            return self.pid_create_time is None or abs(proc.create_time() - self.pid_create_time) < 1
        except psutil.NoSuchProcess:
            return False

    async def poll(self):
        if self.proc is None and self.pid and not self._is_our_process():
            self.clear_state()
            return 0
        status = await super().poll()
        if status is None and self.deadline and time.time() > self.deadline:
            self.log.info("%s reached its wall time; stopping it", self._log_name)
            self.deadline = None  # stop() polls again: do not come back here
            await self.stop()
            return 0
        return status


def parse_gpu_list(text: str) -> list[str]:
    """'0,1' or '0 1' -> ['0', '1'] (for CLUSTERLAB_LOCAL_GPUS)."""
    return [g for g in re.split(r"[,\s]+", text.strip()) if g]
