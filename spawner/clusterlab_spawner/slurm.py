"""The Slurm backend: each server is a Slurm batch job of the size the user chose.

Built on batchspawner's ``SlurmSpawner`` (its traits, saved state, user
environment, and its port-reporting protocol: the job's wrapper picks a port on
the node and tells the hub through ``/hub/api/batchspawner``; ours,
``clusterlab-batch-singleuser``, does it without batchspawner's import of the
hub's auth, a third of a second before JupyterLab can start). What batchspawner 1.3.0 gets wrong is fixed
here, at the method where it goes wrong:

- It merges raw ``user_options`` into its batch-script template, so anyone
  with the REST API can add ``gres``, ``partition``, ``options`` or ``cmd``.
  :class:`FixedSlurmSpawner` never renders that template: its script is built
  from :meth:`~FixedSlurmSpawner.batch_directives`, which
  :class:`SlurmClusterSpawner` makes from the validated profile only.
- It runs every command through a shell (``sudo -E -u {username} ...``). Here
  they are argument lists with absolute paths: no shell, and a PATH that
  JupyterHub >= 5 no longer passes and Debian's sudo resets is not needed.
- It runs one ``squeue`` per server per poll and takes any error as "job
  gone" (upstream #315). Here all spawners share one :class:`SlurmQueue`, and
  a scheduler that does not answer leaves every server as it was.
- Its ``start`` commits the deprecated shared ``Spawner.db``; this one does not.
- Its API handler sets *any* attribute of the spawner from the job's POST
  (``exec_prefix``, then run by the hub through a shell, included).
  :class:`PortReportHandler` takes a port and nothing else.

While a job waits, the spawn page says why in words (Slurm's pending reason,
the position in the partition's queue, and when Slurm's backfill expects it to
start, from the same one squeue), then on which node it starts; a
job that ends before JupyterLab answers fails the spawn with the tail of its
Slurm log.
"""

from __future__ import annotations

import asyncio
import html
import json
import os
import shlex
import sys
import time
from pathlib import Path

import batchspawner
import batchspawner.api
from batchspawner.batchspawner import JobStatus
from jupyterhub import apihandlers
from jupyterhub.apihandlers import APIHandler
from tornado import web
from traitlets import Bool, Float, Unicode, default

from .availability import Availability, availability_from_nodes
from .slurm_directives import job_name, sbatch_directives
from .slurm_queue import SlurmJob, SlurmNodes, SlurmQueue, reason_in_words, run, start_in_words
from .spawner import ClusterSpawner

VENV_BIN = Path(sys.executable).parent

# one view of the queue and of the nodes per hub process, whatever the number of servers
_queues: dict[str, SlurmQueue] = {}
_node_views: dict[str, SlurmNodes] = {}


class SlurmJobFailed(RuntimeError):
    """The job ended before JupyterLab answered; the message carries its log tail."""

    def __init__(self, summary: str, log_path: str, log_tail: str):
        detail = f"\nLast lines of {log_path}:\n{log_tail}" if log_tail else ""
        super().__init__(summary + detail)
        # JupyterHub shows these on the spawn page and in the progress events
        self.jupyterhub_message = summary + detail
        self.jupyterhub_html_message = html.escape(summary) + (
            f"<br>Last lines of <code>{html.escape(log_path)}</code>:"
            f"<pre>{html.escape(log_tail)}</pre>" if log_tail else ""
        )


class PortReportHandler(APIHandler):
    """``POST /hub/api/batchspawner``: the job tells the hub its port. Nothing else.

    batchspawner's handler does ``setattr(spawner, key, value)`` for every key
    the job posts; the job runs the user's code with the server's token, so a
    user could rewrite any attribute of their spawner in the hub.
    """

    @web.authenticated
    def post(self):
        token = self.get_auth_token()
        spawner = next(
            (s for s in self.current_user.spawners.values() if s.api_token == token), None
        )
        if spawner is None:
            raise web.HTTPError(403, "this token belongs to no server")
        data = self.get_json_body()
        port = data.get("port") if isinstance(data, dict) else None
        if not isinstance(data, dict) or set(data) != {"port"}:
            raise web.HTTPError(400, "only {\"port\": <int>} may be reported")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise web.HTTPError(400, "port must be an integer from 1 to 65535")
        spawner.port = port
        self.set_status(201)
        self.finish(json.dumps({"message": "port recorded"}))


# Put ours where batchspawner's import appended its own (JupyterHub reads this
# list when it builds its handlers, after the config that imports this module).
apihandlers.default_handlers[:] = [
    (path, PortReportHandler if handler is batchspawner.api.BatchSpawnerAPIHandler else handler)
    for path, handler in apihandlers.default_handlers
]


class FixedSlurmSpawner(batchspawner.SlurmSpawner):
    """batchspawner's SlurmSpawner with its weak points replaced (see the module doc)."""

    slurm_bin_dir = Unicode(
        "/usr/bin", config=True, help="Folder holding sbatch, squeue, scancel and sinfo."
    )
    sudo = Unicode("/usr/bin/sudo", config=True, help="sudo, by its full path.")
    submit_as_user = Bool(
        config=True,
        help="""Submit and cancel jobs as the user's Unix account, through sudo.
        Default: when the hub runs as root. Otherwise jobs run as the hub's account.""",
    )

    slurm_conf = Unicode(
        config=True,
        help="""The slurm.conf of the cluster to use (SLURM_CONF), for every Slurm command and for the
        servers' jobs. Default: the hub's own SLURM_CONF, else Slurm's default file.""",
    )

    @default("slurm_conf")
    def _slurm_conf_default(self):
        return os.environ.get("SLURM_CONF", "")

    @default("ip")
    def _listen_everywhere(self):
        # the server listens on its node's addresses, since the hub and the proxy reach it from another
        # machine (at the node's name, once Slurm says which); JupyterHub's token guards every request
        return "0.0.0.0"

    @default("submit_as_user")
    def _submit_as_user_default(self):
        return os.geteuid() == 0

    startup_poll_interval = Float(
        0.2, config=True, help="Seconds between looks at the queue while a job starts."
    )

    @default("batchspawner_singleuser_cmd")
    def _singleuser_wrapper_default(self):
        # batchspawner's port report, without importing the hub's auth first (clusterlab_server/singleuser.py)
        return str(VENV_BIN / "clusterlab-batch-singleuser")

    @default("req_srun")
    def _srun_default(self):
        # the server is the batch step's own process (exec): one process less to start
        return ""

    slurm_job: SlurmJob | None = None
    # why the last server ended when it was not stopped (its node failed, its time ran out): the spawn
    # page and the "not running" page say it; kept through the state JupyterHub saves, until the next start
    lost_message = ""
    submitted_at = float("-inf")  # time.monotonic() of this process's sbatch
    last_job_id = ""

    # ----- the parts a subclass provides ---------------------------------------------

    def batch_directives(self) -> list[str]:
        """The ``#SBATCH`` lines of this server's job."""
        raise NotImplementedError

    @property
    def output_path(self) -> str:
        """Slurm's output file for the job (``%j``: the job id)."""
        return str(Path(self.req_homedir) / f"jupyterhub_slurm_{self.name or 'default'}_%j.log")

    async def prepare_submission(self) -> None:
        """Anything to do before sbatch (accounts, folders)."""

    # ----- commands --------------------------------------------------------------------

    @property
    def queue(self) -> SlurmQueue:
        squeue = f"{self.slurm_bin_dir}/squeue"
        if squeue not in _queues:
            _queues[squeue] = SlurmQueue(squeue)
        return _queues[squeue]

    def as_user(self, argv: list[str], keep_env: bool = False) -> list[str]:
        if not self.submit_as_user:
            return argv
        # sudo resets the environment: the cluster's slurm.conf goes through by name, whatever sudoers keeps
        conf = ["/usr/bin/env", f"SLURM_CONF={self.slurm_conf}"] if self.slurm_conf else []
        return [self.sudo, *(["--preserve-env"] if keep_env else []), "-u", self.user.name, "--", *conf, *argv]

    def get_env(self):
        env = super().get_env()
        if self.slurm_conf:
            env["SLURM_CONF"] = self.slurm_conf  # the server's own jobs go to the same cluster
        return env

    def cmd_formatted_for_batch(self):
        return shlex.join([self.batchspawner_singleuser_cmd, *self.cmd, *self.get_args()])

    def batch_script_text(self) -> str:
        srun = f"{shlex.quote(self.req_srun)} " if self.req_srun else ""
        path = f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin"
        return "\n".join([
            "#!/bin/bash",
            *self.batch_directives(),
            "#SBATCH --export=ALL",
            "",
            "set -euo pipefail",
            f"export PATH={shlex.quote(path)}",
            'echo "ClusterLab: JupyterLab in Slurm job $SLURM_JOB_ID on $(hostname)"',
            self.req_prologue,
            f"exec {srun}{self.cmd_formatted_for_batch()}",
            "",
        ])

    async def submit_batch_script(self):
        argv = self.as_user([f"{self.slurm_bin_dir}/sbatch", "--parsable"], keep_env=True)
        script = self.batch_script_text()
        self.log.debug("Submitting for %s:\n%s", self._log_name, script)
        status, out, err = await run(argv, input=script, env=self.get_env())
        if status != 0:
            raise web.HTTPError(400, f"Slurm refused the job: {err.strip() or out.strip()}")
        self.job_id = self.parse_job_id(out.strip())
        self.submitted_at = time.monotonic()
        self.log.info("Slurm job %s submitted for %s", self.job_id, self._log_name)
        return self.job_id

    async def cancel_batch_job(self):
        if not self.job_id:
            return
        status, _, err = await run(self.as_user([f"{self.slurm_bin_dir}/scancel", self.job_id]))
        if status != 0:
            # an already finished job is fine; anything else is logged, stop() then waits
            self.log.warning("scancel %s: %s", self.job_id, err.strip())

    # ----- the job's state, from the shared view of the queue ---------------------------

    async def query_job_status(self, max_age: float | None = None):
        if not self.job_id:
            self.slurm_job = None
            return JobStatus.NOTFOUND
        queue = self.queue
        # never judge a job by a view of the queue taken before it was submitted
        await queue.refresh(self.poll_interval if max_age is None else max_age, since=self.submitted_at)
        if not queue.answered:
            return JobStatus.UNKNOWN  # keep job_status: not knowing is not "gone"
        job = queue.jobs.get(self.job_id)
        self.slurm_job = job
        if job is None or job.ended:
            self.job_status = job.state if job else "GONE"
            return JobStatus.NOTFOUND
        self.job_status = f"{job.state} {job.first_node}".strip()
        return JobStatus.RUNNING if job.running else JobStatus.PENDING

    async def poll(self):
        """None while the job waits or runs; else 1, with what ended it put in words for the user."""
        if not self.job_id:
            return 1  # nothing to ask Slurm (JupyterHub polls again when it stops one); keep what ended it
        status = await self.query_job_status()
        if status in (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.UNKNOWN):
            return None
        self.lost_message = self.why_it_ended(self.slurm_job)
        if self.lost_message:
            self.log.warning("%s: %s", self._log_name, self.lost_message)
        self.clear_state()
        return 1

    def why_it_ended(self, job: SlurmJob | None) -> str:
        """What the user is told about a server that ended without being stopped ('' when nothing is known)."""
        if job is None:
            return ""
        when = time.strftime("%H:%M")
        what = f"Your server{' ' + self.name if self.name else ''} (Slurm job {job.job_id})"
        node = job.first_node or "its node"
        if job.state == "NODE_FAIL":
            return (f"{what} was lost at {when}: its node {node} failed. Your jobs are Slurm jobs of their own and "
                    "keep running (a job on that node is requeued and continues from its checkpoint). "
                    "Start a new server: it goes to a node that is up.")
        if job.state == "TIMEOUT":
            return f"{what} ended at {when}: it reached the wall time you asked for. Start a new one to go on."
        if job.state == "OUT_OF_MEMORY":
            return f"{what} ended at {when}: it ran out of memory. A larger size has more."
        if job.state in ("PREEMPTED", "BOOT_FAIL", "FAILED"):
            return f"{what} ended at {when} on {node}: Slurm says {job.state}. Start a new one to go on."
        return ""

    def get_state(self):
        state = super().get_state()
        if self.lost_message:
            state["lost_message"] = self.lost_message
        return state

    def load_state(self, state):
        super().load_state(state)
        self.lost_message = state.get("lost_message", "")

    def state_ispending(self):
        return self.slurm_job is not None and self.slurm_job.pending

    def state_isrunning(self):
        return self.slurm_job is not None and self.slurm_job.running

    def state_gethost(self):
        return self.slurm_job.first_node if self.slurm_job else None

    # ----- start, stop, progress --------------------------------------------------------

    async def start(self):
        self.lost_message = ""
        self.port = 0  # until the job reports the one it picked on its node
        self.progress_message = "Submitting the Slurm job"
        await self.prepare_submission()
        await self.submit_batch_script()
        fresh = self.startup_poll_interval
        while True:
            status = await self.query_job_status(max_age=fresh)
            if status == JobStatus.RUNNING:
                break
            if status == JobStatus.NOTFOUND:
                raise await self.failure("ended before it started")
            self.progress_message = self.describe_waiting()
            await asyncio.sleep(fresh)
        self.ip = self.state_gethost()
        self.progress_message = f"Slurm job {self.job_id} is running on {self.ip}: starting JupyterLab"
        last_check = time.monotonic()
        while self.port == 0:  # set by PortReportHandler when the job reports it
            await asyncio.sleep(0.05)
            if time.monotonic() - last_check > 1:
                last_check = time.monotonic()
                if await self.query_job_status(max_age=fresh) == JobStatus.NOTFOUND:
                    raise await self.failure("ended before JupyterLab started")
        self.progress_message = f"JupyterLab is up on {self.ip}:{self.port}; connecting"
        self.log.info("%s: Slurm job %s serves on %s:%s", self._log_name, self.job_id, self.ip, self.port)
        return self.ip, self.port

    def describe_waiting(self) -> str:
        job = self.slurm_job
        if not self.queue.answered:
            return f"Slurm job {self.job_id}: Slurm is not answering ({self.queue.error}); still waiting"
        if job is None:
            return f"Slurm job {self.job_id} submitted"
        if job.state == "PENDING":
            position, pending = self.queue.position(job)
            where = f"partition {job.partition}" if job.partition else "the queue"
            place = f", position {position} of {pending}" if position else ""
            expected = f"; Slurm expects it to start at {start_in_words(job.expected_start)}" \
                if job.expected_start else ""
            return f"Slurm job {self.job_id} is pending in {where}{place}: {reason_in_words(job.reason)}{expected}"
        if job.state == "CONFIGURING":
            return f"Slurm job {self.job_id}: node {job.first_node} is being prepared"
        return f"Slurm job {self.job_id} is {job.state.lower()}"

    def progress_percent(self, message: str = "") -> int:
        """How far along the spawn page's bar is: submitted, queued, running, answering."""
        if self.port:
            return 90
        if self.state_isrunning():
            return 60
        return 30 if self.job_id else 10

    async def stop(self, now=False):
        if not self.job_id:
            return
        self.log.info("Cancelling Slurm job %s of %s", self.job_id, self._log_name)
        await self.cancel_batch_job()
        if now:
            return
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if await self.query_job_status(max_age=0.2) == JobStatus.NOTFOUND:
                return
            await asyncio.sleep(0.2)
        self.log.warning("Slurm job %s of %s has not ended 15 s after scancel", self.job_id, self._log_name)

    # ----- when a job ends early ------------------------------------------------------------

    def log_file(self) -> str:
        return self.output_path.replace("%j", self.job_id or self.last_job_id)

    def log_tail(self, lines: int = 20) -> str:
        try:
            with open(self.log_file(), "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 16384))
                text = f.read().decode(errors="replace")
        except OSError as e:
            return f"(the log could not be read: {e.strerror})"
        return "\n".join(text.splitlines()[-lines:])

    def clear_state(self):
        self.last_job_id = self.job_id or self.last_job_id  # its log still tells what happened
        super().clear_state()

    async def ended_early(self) -> bool:
        """Raise with the log's tail if the job has ended (while JupyterLab starts)."""
        if await self.query_job_status(max_age=1.0) == JobStatus.NOTFOUND:
            raise await self.failure("ended before JupyterLab answered")
        return False

    async def failure(self, what: str) -> SlurmJobFailed:
        job_id = self.job_id or self.last_job_id
        state = self.slurm_job.state if self.slurm_job else "no longer in the queue"
        error = SlurmJobFailed(f"Slurm job {job_id} {what} ({state}).", self.log_file(), self.log_tail())
        await self.cancel_batch_job()  # in case it lingers: nothing may run unwatched
        self.clear_state()
        return error


class SlurmClusterSpawner(ClusterSpawner, FixedSlurmSpawner):
    """ClusterSpawner on Slurm: the chosen profile becomes the job's #SBATCH lines."""

    queues_when_busy = True  # Slurm queues a job that does not fit now; the page says why
    job_backend = "slurm"

    logs_dir = Unicode(
        ".clusterlab/logs",
        config=True,
        help="Where each job's Slurm output goes, relative to the user's home (or absolute).",
    )

    availability_max_age = Float(
        10, config=True, help="Seconds the size form may show a sinfo answer before asking again."
    )

    def batch_directives(self) -> list[str]:
        name = job_name(self.user.name, self.name)
        return [
            # not requeued when its node fails: the hub reports that server as lost instead
            *sbatch_directives(self.choice, name, self.output_path, requeue=False),
            f"#SBATCH --chdir={self.req_homedir}",
        ]

    @property
    def output_path(self) -> str:
        label = self.name or "default"
        return str(Path(self.req_homedir) / self.logs_dir / f"jupyterlab-{label}-%j.log")

    # ----- the user's Unix account and log folder ---------------------------------------

    @property
    def runs_as_user_account(self) -> bool:
        return self.submit_as_user

    async def prepare_submission(self) -> None:
        if self.account is not None:
            # checked (and made, where it may be) by ClusterSpawner.start; batchspawner's
            # default read passwd before a new account existed
            self.req_homedir = self.account.pw_dir
        logs = Path(self.output_path).parent
        if not logs.is_dir():
            # the user's alone: JupyterLab's log is theirs to read (0700, as the job service's folders)
            mkdir = ["/bin/mkdir", "-p", "-m", "0700", "--", str(logs.parent), str(logs)]
            status, _, err = await run(self.as_user(mkdir))
            if status != 0:
                raise web.HTTPError(500, f"could not create {logs}: {err.strip()}")

    # ----- live availability from sinfo ---------------------------------------------------

    @property
    def nodes(self) -> SlurmNodes:
        sinfo = f"{self.slurm_bin_dir}/sinfo"
        if sinfo not in _node_views:
            _node_views[sinfo] = SlurmNodes(sinfo, max_age=self.availability_max_age)
        return _node_views[sinfo]

    def availability(self) -> Availability:
        view = self.nodes
        view.refresh_soon()
        if view.nodes is None:
            return Availability(None, None, None, None)
        return availability_from_nodes(view.nodes, self.profiles.values())

    async def get_options_form(self):
        # only the first form after the hub starts waits, and briefly; then the cache serves
        await self.nodes.first_answer(timeout=1.5)
        return await super().get_options_form()

    async def ended_while_starting(self) -> bool:
        return await self.ended_early()

    def describe_waiting(self) -> str:
        message = super().describe_waiting()
        choice = self.choice
        return f"{message} (asked for {choice.profile.summary})" if choice else message
