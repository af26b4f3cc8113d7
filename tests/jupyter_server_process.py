"""A real ``jupyter server`` process with the clusterlab extension, for tests and benchmarks.

It runs in its own HOME and workspace under ``root`` (nothing of the real home
or /etc/clusterlab leaks in) and is driven over HTTP with its token.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import requests

REPO = Path(__file__).resolve().parents[1]
JUPYTER = Path(sys.executable).parent / "jupyter"
PROFILES = REPO / "hub_config" / "profiles.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]



def _default_sigint() -> None:  # in the child, between fork and exec
    signal.signal(signal.SIGINT, signal.SIG_DFL)

class JupyterServer:
    """One ``jupyter server`` with the clusterlab extension, in its own HOME."""

    def __init__(self, root: Path, backend: str = "local", poll_interval: float = 0.5, log_level: str = "INFO",
                 ip: str = "127.0.0.1", wrap=None):
        """``ip``, ``wrap``: elsewhere than here, e.g. on a node of the multi-node test cluster: the address it
        listens on, and a function that makes its argv one that runs there (``multinode.on_node``)."""
        self.root = root
        self.backend, self.poll_interval, self.log_level = backend, poll_interval, log_level
        self.ip, self.wrap = ip, wrap
        self.workspace = root / "workspace"
        self.token = secrets.token_hex(16)
        self.port = free_port()
        self.url = f"http://{ip}:{self.port}"
        self.api = f"{self.url}/clusterlab/api"
        self.headers = {"Authorization": f"token {self.token}"}
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> JupyterServer:
        self.workspace.mkdir(parents=True, exist_ok=True)
        (self.root / "site-templates").mkdir(exist_ok=True)
        argv = [
            str(JUPYTER), "server",
            f"--ServerApp.token={self.token}", f"--ServerApp.port={self.port}", f"--ServerApp.ip={self.ip}",
            f"--ServerApp.root_dir={self.workspace}", "--ServerApp.open_browser=False",
            "--ServerApp.port_retries=0", f"--ServerApp.log_level={self.log_level}",
            f"--ClusterLabApp.backend={self.backend}", f"--ClusterLabApp.jobs_root={self.root / 'jobs'}",
            f"--ClusterLabApp.profiles_file={PROFILES}", f"--ClusterLabApp.poll_interval={self.poll_interval}",
        ]
        if os.geteuid() == 0:
            argv.append("--allow-root")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CLUSTERLAB_", "JUPYTER", "JPY_", "SLURM_"))}
        env.update(HOME=str(self.root), CLUSTERLAB_SITE_TEMPLATES=str(self.root / "site-templates"))
        if self.wrap is not None:
            argv = self.wrap(argv)
        self.log = open(self.root / "server.log", "ab")
        # no terminal on stdin, as under a hub (with one, jupyter server asks before it stops on SIGINT),
        # and SIGINT's default action, as the hub's children get it (hub_config restores it), even when
        # the tests run where SIGINT is ignored (make in the background, `bash .ci/run &`)
        self.proc = subprocess.Popen(argv, cwd=self.workspace, env=env, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, preexec_fn=_default_sigint)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code, self.proc = self.proc.returncode, None
                self.log.close()
                raise RuntimeError(f"jupyter server exited ({code}):\n{self.log_text()}")
            try:
                if requests.get(f"{self.url}/api/status", headers=self.headers, timeout=2).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"jupyter server did not answer in {timeout} s:\n{self.log_text()}")

    def log_text(self) -> str:
        return (self.root / "server.log").read_text(errors="replace")[-5000:]

    def request_times_ms(self, path_fragment: str) -> list[float]:
        """The server's own time for each 200 GET of /clusterlab/api/<path_fragment>... (needs DEBUG)."""
        pattern = re.compile(rf"200 GET /clusterlab/api/{re.escape(path_fragment)}\S* .* ([\d.]+)ms")
        return [float(m.group(1)) for m in pattern.finditer((self.root / "server.log").read_text(errors="replace"))]

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(method, f"{self.api}/{path}", headers=self.headers, timeout=30, **kwargs)

    def cancel_unfinished(self) -> None:
        """Jobs are detached process groups: cancel the ones the run started, so none outlives the test.

        Experiments first: a running one's controller would launch new trials for the cancelled ones.
        """
        for experiment in self.call("GET", "experiments", params={"status": "running", "limit": 1000}).json()[
                "experiments"]:
            self.call("POST", f"experiments/{experiment['id']}/cancel")
        for status in ("queued", "running"):
            for job in self.call("GET", "jobs", params={"status": status, "limit": 1000}).json()["jobs"]:
                self.call("DELETE", f"jobs/{job['id']}")

    def close(self) -> None:
        """The end of a test's server: its unfinished jobs cancelled, then the server stopped (whatever fails)."""
        try:
            self.cancel_unfinished()
        finally:
            self.stop()

    def stop(self, kill_jobs: bool = True) -> None:
        """Stop the server; unless told otherwise, also any job process it left behind."""
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
            self.log.close()
            self.proc = None
        if not kill_jobs:
            return
        # any job process the cancel missed: they run in their job folder, under this root
        leftovers = []
        for proc in psutil.process_iter():
            try:
                if Path(proc.cwd()).is_relative_to(self.root):
                    proc.kill()
                    leftovers.append(proc)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                pass
        psutil.wait_procs(leftovers, timeout=5)
