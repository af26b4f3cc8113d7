"""One TensorBoard per user (that is, per jupyter server), over their jobs' ``output/tensorboard`` folders.

Started on demand for one job, several, or all of them, so runs can be
compared; stopped when nobody has used it for ``idle_timeout`` seconds, and
with the server.

Only the owner reaches it. It listens on 127.0.0.1 and the browser gets it
through jupyter-server-proxy's ``<base_url>proxy/<port>/`` route of the user's
own server, which applies that server's authentication. Another user of a
shared node could still connect to the port itself (or through their own
server's proxy), so TensorBoard also serves everything under a random path
prefix that only the owner's API answers give out: without it, 404. The
prefix never appears on a command line (which ``ps`` shows to everyone):
TensorBoard reads its arguments from a pipe (:data:`LAUNCHER`).

Each run is named ``<job name>-<job id>``: TensorBoard reads one folder of
symbolic links, one link per chosen job to its ``output/tensorboard`` folder
(``--logdir_spec`` would name them ``<name>/.`` and splits its value on commas
and colons, which a path may hold). A job that has not written its folder
yet is a dangling link; TensorBoard picks the folder up when it appears.
That folder (with TensorBoard's log) is made in the temp folder for each
TensorBoard and removed when it stops, when the server stops, and at the
server process's exit if it ends without stopping its extensions.

Use is seen two ways: a POST of the API (the panel opening, or re-posting as
a keep-alive) and proxied traffic. The proxy opens a new connection to
TensorBoard for every request and the closing end stays in TIME_WAIT for a
minute, so a look at the kernel's TCP table every ``min(30 s,
idle_timeout / 4)`` sees every request: a connection to the port that was not
there at the previous look, or one open now, is use.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib.util
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from tornado.httpclient import AsyncHTTPClient

from .service import JobError, JobService

MAX_JOBS = 1000
# TensorBoard's entry point, with its arguments read from standard input, not argv, and its
# page's fonts named relative to the page (see tensorboard_launch)
LAUNCHER = "from clusterlab_server.tensorboard_launch import main; main()"
STOP_SECONDS = 5

try:  # Linux: TensorBoard gets SIGTERM when the server dies without cleaning up (SIGKILL)
    import ctypes

    _LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
except OSError:  # pragma: no cover
    _LIBC = None


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_name(job) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{job.name}-{job.id}")


def tcp_connections(port: int, pid: int | None) -> tuple[set, bool]:
    """(the connections to or from ``port`` other than its listener, whether one is established now)."""
    tables = [Path("/proc/net/tcp"), Path("/proc/net/tcp6")]
    if any(t.exists() for t in tables):
        seen, established = set(), False
        for table in tables:
            try:
                lines = table.read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                fields = line.split()
                local, remote, state = fields[1], fields[2], fields[3]
                if state == "0A":  # LISTEN
                    continue
                if int(local.rsplit(":", 1)[1], 16) == port or int(remote.rsplit(":", 1)[1], 16) == port:
                    seen.add((local, remote))
                    established = established or state == "01"
        return seen, established
    # elsewhere (macOS: the whole table needs root), TensorBoard's own open connections
    try:
        connections = psutil.Process(pid).net_connections("tcp") if pid else []
    except psutil.Error:
        connections = []
    seen = {(c.laddr, c.raddr) for c in connections if c.raddr}
    return seen, any(c.status == psutil.CONN_ESTABLISHED for c in connections if c.raddr)


class TensorBoardManager:
    def __init__(self, service: JobService, base_url: str = "/", idle_timeout: float = 900,
                 reload_interval: float = 5, start_timeout: float = 20, log: logging.Logger | None = None):
        self.service = service
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.idle_timeout, self.reload_interval, self.start_timeout = idle_timeout, reload_interval, start_timeout
        self.log = log or logging.getLogger(__name__)
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.prefix = ""
        self.selection: frozenset | None = None  # the jobs asked for; None: all of them
        self.jobs: list = []
        self.last_used = 0.0
        self._workdir: Path | None = None  # in the temp folder, while a TensorBoard runs or starts
        self._removed_at_exit = False
        self._seen: set = set()
        self._watcher: asyncio.Task | None = None
        self._lock = asyncio.Lock()

    # ----- what the API says ---------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def status(self) -> dict[str, Any]:
        running = self.running
        return {
            "running": running,
            "url": f"{self.base_url}proxy/{self.port}/{self.prefix}/" if running else None,
            "port": self.port if running else None,
            "pid": self.proc.pid if running else None,
            "jobs": [job.id for job in self.jobs] if running else [],
            "runs": [{"job": job.id, "run": run_name(job)} for job in self.jobs] if running else [],
            "idle_timeout": self.idle_timeout,
        }

    # ----- which jobs ----------------------------------------------------------------------

    def choose(self, request: Any) -> frozenset | None:
        """The body's job ids, checked against the job store (None: all jobs)."""
        if request is None:
            request = {}
        if not isinstance(request, dict):
            raise JobError(400, "the body must be a JSON object, e.g. {\"jobs\": [\"<job id>\"]}")
        unknown = sorted(set(request) - {"jobs"})
        if unknown:
            raise JobError(400, f"unknown field {unknown[0]!r}", unknown[0])
        ids = request.get("jobs")
        if ids is None or ids == []:
            return None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise JobError(400, "jobs must be a list of job ids", "jobs")
        if len(ids) > MAX_JOBS:
            raise JobError(400, f"at most {MAX_JOBS} jobs at once", "jobs")
        for job_id in ids:
            try:
                self.service.get(job_id)
            except JobError as e:
                raise JobError(e.status, e.message, "jobs") from None
        return frozenset(ids)

    def _jobs_for(self, selection: frozenset | None) -> list:
        if selection is None:
            return self.service.list(limit=MAX_JOBS)[0]
        return sorted((self.service.get(i) for i in selection), key=lambda j: j.submit_time, reverse=True)

    def _link(self, jobs: list) -> None:
        runs = self._workdir / "runs"
        runs.mkdir(parents=True, exist_ok=True)
        for job in jobs:
            link = runs / run_name(job)
            if not link.is_symlink():
                link.symlink_to(Path(job.folder) / "output" / "tensorboard", target_is_directory=True)

    # ----- starting and stopping -----------------------------------------------------------

    async def start(self, request: Any = None) -> dict[str, Any]:
        """Start TensorBoard over the chosen jobs, or reuse the one running over them."""
        selection = self.choose(request)
        if importlib.util.find_spec("tensorboard") is None:
            raise JobError(502, "TensorBoard is not installed in this server's environment (pip install tensorboard)",
                           "jobs")
        async with self._lock:
            self.last_used = time.monotonic()
            if self.running and selection == self.selection:
                if selection is None:  # all jobs: new ones become new runs, no restart needed
                    self.jobs = self._jobs_for(None)
                    self._link(self.jobs)
                return self.status()
            await self._stop()
            for attempt in range(2):  # a second go if another program took the free port meanwhile
                try:
                    await self._start(selection)
                    break
                except _Exited as e:
                    if attempt:
                        raise JobError(502, f"TensorBoard did not start: {e}", "jobs") from None
            return self.status()

    async def _start(self, selection: frozenset | None) -> None:
        # a folder of its own for each TensorBoard, gone when it stops (see _remove_workdir)
        self._remove_workdir()
        self._workdir = Path(tempfile.mkdtemp(prefix="clusterlab-tensorboard-"))
        if not self._removed_at_exit:  # also when the server ends without stopping its extensions
            atexit.register(self._remove_workdir)
            self._removed_at_exit = True
        try:
            await self._start_in_workdir(selection)
        except BaseException:
            self._remove_workdir()
            raise

    async def _start_in_workdir(self, selection: frozenset | None) -> None:
        jobs = self._jobs_for(selection)
        self._link(jobs)
        port, prefix = free_port(), secrets.token_hex(16)
        arguments = [
            "--logdir", str(self._workdir / "runs"),
            "--host", "127.0.0.1", "--port", str(port), "--path_prefix", f"/{prefix}",
            "--reload_interval", str(self.reload_interval),
            "--load_fast", "false",  # no second (Rust) server process to look after
            "--window_title", "ClusterLab TensorBoard",
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTERHUB_", "JPY_", "JUPYTER_TOKEN"))}
        log_path = self._workdir / "tensorboard.log"
        with open(log_path, "wb") as log:
            # spawned on the event loop's thread: PR_SET_PDEATHSIG follows the thread that forks
            proc = subprocess.Popen([sys.executable, "-c", LAUNCHER], cwd=self._workdir, env=env,
                                    stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, preexec_fn=_die_with_parent if _LIBC is not None else None)
        try:
            with proc.stdin:
                proc.stdin.write((json.dumps(arguments) + "\n").encode())
        except BrokenPipeError:
            pass  # it died at once: the wait below reports its log
        self.log.info("ClusterLab: TensorBoard (pid %d) on port %d over %d jobs", proc.pid, port, len(jobs))
        url = f"http://127.0.0.1:{port}/{prefix}/data/environment"
        client = AsyncHTTPClient()
        deadline = time.monotonic() + self.start_timeout
        while True:
            if proc.poll() is not None:
                raise _Exited(self._log_tail(log_path) or f"it exited with status {proc.returncode}")
            try:
                response = await client.fetch(url, raise_error=False, connect_timeout=2, request_timeout=2)
                if response.code == 200:
                    break
            except OSError:  # not listening yet (raise_error=False covers HTTP errors only)
                pass
            if time.monotonic() > deadline:
                await self._end(proc)
                raise JobError(502, f"TensorBoard did not answer in {self.start_timeout:g} s: "
                                    f"{self._log_tail(log_path)}", "jobs")
            await asyncio.sleep(0.2)
        self.proc, self.port, self.prefix, self.selection, self.jobs = proc, port, prefix, selection, jobs
        self._seen = tcp_connections(port, proc.pid)[0]  # our own probes are not use
        self.last_used = time.monotonic()
        self._watcher = asyncio.ensure_future(self._watch(proc))

    @staticmethod
    def _log_tail(path: Path) -> str:
        try:
            lines = path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(lines[-5:])[-1000:]

    async def stop(self) -> dict[str, Any]:
        async with self._lock:
            await self._stop()
            return self.status()

    async def _stop(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None and watcher is not asyncio.current_task():
            watcher.cancel()
        proc, self.proc = self.proc, None
        self.jobs, self.selection = [], None
        if proc is not None:
            self.log.info("ClusterLab: stopping TensorBoard (pid %d)", proc.pid)
            await self._end(proc)
        self._remove_workdir()

    def _remove_workdir(self) -> None:
        """Remove TensorBoard's folder of links and its log (never what the links point to)."""
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    @staticmethod
    async def _end(proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.terminate()
            deadline = time.monotonic() + STOP_SECONDS
            while proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    async def shutdown(self) -> None:
        """With the server: stop TensorBoard (which removes its folder of links and its log)."""
        await self.stop()

    # ----- use -----------------------------------------------------------------------------

    def _check_interval(self) -> float:
        # under a minute apart, so no request's TIME_WAIT is missed
        return max(0.2, min(30.0, self.idle_timeout / 4)) if self.idle_timeout > 0 else 30.0

    async def _watch(self, proc: subprocess.Popen) -> None:
        while True:
            await asyncio.sleep(self._check_interval())
            if proc is not self.proc:
                return
            if proc.poll() is not None:
                self.log.warning("ClusterLab: TensorBoard exited (%s): %s", proc.returncode,
                                 self._log_tail(self._workdir / "tensorboard.log"))
                async with self._lock:
                    if proc is self.proc:
                        await self._stop()
                return
            try:
                seen, established = await asyncio.to_thread(tcp_connections, self.port, proc.pid)
                if established or seen - self._seen:
                    self.last_used = time.monotonic()
                self._seen = seen
                if self.selection is None:  # all jobs: link the new ones
                    self.jobs = self._jobs_for(None)
                    self._link(self.jobs)
            except Exception:  # a bad look must not end watching
                self.log.exception("ClusterLab: watching TensorBoard failed")
            if self.idle_timeout > 0 and time.monotonic() - self.last_used > self.idle_timeout:
                async with self._lock:
                    if proc is not self.proc:
                        return
                    if time.monotonic() - self.last_used > self.idle_timeout:  # no POST meanwhile
                        self.log.info("ClusterLab: TensorBoard unused for %g s", self.idle_timeout)
                        await self._stop()
                        return


class _Exited(Exception):
    """TensorBoard ended before it answered."""
