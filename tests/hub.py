"""A real JupyterHub process on hub_config/jupyterhub_config.py, driven over HTTP.

Tests and benchmarks use :class:`Hub` the way a user or a script would: the
login form, the spawn form and the REST API, through the real proxy.
"""

from __future__ import annotations

import os
import pwd
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import accounts
import requests

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "hub_config" / "jupyterhub_config.py"
ADMIN_PASSWORD = "admin-test-password-1"


def free_port_block(size: int = 3) -> int:
    """A port P such that P..P+size-1 are free (the hub uses PORT, +1, +2)."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + size > 65535:
            continue
        try:
            socks = []
            for p in range(port, port + size):
                sock = socket.socket()
                sock.bind(("127.0.0.1", p))
                socks.append(sock)
            return port
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError("no free block of ports")


def singleuser_by_hand(command: str, port: int, hub_api_url: str, token: str,
                       user: str = "admin") -> tuple[list[str], dict, str]:
    """A user's server as the hub would start it, for starting by hand: argv, environment, its status URL."""
    prefix = f"/user/{user}/"
    env = {
        **os.environ,
        "JUPYTERHUB_API_TOKEN": token, "JUPYTERHUB_API_URL": hub_api_url,
        "JUPYTERHUB_BASE_URL": "/", "JUPYTERHUB_SERVICE_PREFIX": prefix, "JUPYTERHUB_USER": user,
        "JUPYTERHUB_CLIENT_ID": f"jupyterhub-user-{user}", "JUPYTERHUB_SERVER_NAME": "",
        "JUPYTERHUB_OAUTH_ACCESS_SCOPES": f'["access:servers!server={user}/", "access:servers!user={user}"]',
        "JUPYTERHUB_OAUTH_CALLBACK_URL": prefix + "oauth_callback",
        "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port}{prefix}",
    }
    argv = [command, f"--port={port}", "--ip=127.0.0.1", "--allow-root"]
    return argv, env, f"http://127.0.0.1:{port}{prefix}api/status"


class Hub:
    """One hub process with its own data directory and ports."""

    def __init__(self, data_dir: Path, env: dict | None = None, extra_config: str = "", run_as: str = "",
                 db_url: str = ""):
        self.data_dir = Path(data_dir)
        self.run_as = run_as  # a Unix account to run the hub as (default: the tests' own)
        self.port = free_port_block()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "CLUSTERLAB_DATA_DIR": str(self.data_dir),
            "CLUSTERLAB_PORT": str(self.port),
            "CLUSTERLAB_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "CLUSTERLAB_LOCAL_GPUS": "0,1",
            # tests make the accounts they use (accounts.ensure); a test of the switch turns it on
            "CLUSTERLAB_CREATE_UNIX_USERS": "0",
            # its own database (tests/postgres.py), else the SQLite file; never one from the caller's shell
            "CLUSTERLAB_DB_URL": db_url or None,
            **(env or {}),
        }
        self.env = {key: value for key, value in self.env.items() if value is not None}  # None: unset
        self.config = CONFIG
        if extra_config:
            # the real config first, then the test's few overrides
            self.config = self.data_dir / "test_config.py"
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.config.write_text(f"load_subconfig({str(CONFIG)!r})\n{extra_config}\n")
        self.log_path = self.data_dir / "hub.log"
        self.proc: subprocess.Popen | None = None
        self._admin_token: str | None = None

    # ----- process ---------------------------------------------------------------

    @property
    def maps_accounts(self) -> bool:
        """Whether this hub runs each user as the Unix account of their name (a root hub)."""
        return os.geteuid() == 0 and not self.run_as and self.env.get("CLUSTERLAB_BACKEND", "local") != "kubernetes"

    @property
    def creates_accounts(self) -> bool:
        # unset, the embedded default's rule: on for the local backend as root
        local = self.env.get("CLUSTERLAB_BACKEND", "local") == "local"
        return self.env.get("CLUSTERLAB_CREATE_UNIX_USERS", "1" if self.maps_accounts and local else "0") == "1"

    def account_for(self, username: str) -> None:
        """Make the Unix account a user's servers run as, unless the hub is to make it."""
        accounts.track(username)
        if self.maps_accounts and not self.creates_accounts:
            accounts.ensure(username)

    def home_of(self, username: str) -> Path:
        """Where the user's server starts: their account's home, or their folder of the data dir."""
        return accounts.home_of(username) if self.maps_accounts else self.data_dir / "users" / username

    def start(self, timeout: float = 60, argv: list[str] | None = None, **popen) -> "Hub":
        """Start the hub (``argv``: another command that starts it, such as ``make run``; ``popen``: for Popen)."""
        self.account_for("admin")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            argv or [str(Path(sys.executable).parent / "jupyterhub"), "-f", str(self.config)],
            cwd=self.data_dir, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            **(dict(user=self.run_as, group=pwd.getpwnam(self.run_as).pw_gid, extra_groups=[])
               if self.run_as else {}),
            **popen,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hub exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if requests.get(self.url + "/hub/api/", timeout=2).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"hub did not answer in {timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def db_url(self) -> str:
        """The SQLAlchemy URL of the hub's database."""
        return self.env.get("CLUSTERLAB_DB_URL") or f"sqlite:///{self.data_dir / 'hub' / 'jupyterhub.sqlite'}"

    def db_rows(self, sql: str) -> list[tuple]:
        """What a query returns, read straight from the hub's database."""
        import sqlalchemy

        engine = sqlalchemy.create_engine(self.db_url)
        try:
            with engine.connect() as connection:
                return [tuple(row) for row in connection.execute(sqlalchemy.text(sql))]
        finally:
            engine.dispose()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # ----- people -------------------------------------------------------------------

    def login(self, username: str, password: str) -> requests.Response:
        """Log in through /hub/login as a browser does; the session is on the response."""
        session = requests.Session()
        session.get(self.url + "/hub/login")
        response = session.post(
            self.url + "/hub/login",
            data={"username": username, "password": password,
                  "_xsrf": session.cookies.get("_xsrf", path="/hub/")},
            allow_redirects=False,
        )
        response.session = session
        return response

    def browser(self, username: str, password: str) -> requests.Session:
        """A logged-in session with its XSRF token in ``session.xsrf``."""
        response = self.login(username, password)
        assert response.status_code == 302, f"login of {username} failed: {response.status_code}"
        session = response.session
        page = session.get(self.url + "/hub/home").text
        session.xsrf = re.search(r'xsrf_token: "([^"]+)"', page).group(1)
        session.headers["X-XSRFToken"] = session.xsrf
        return session

    def signup(self, username: str, password: str) -> requests.Response:
        session = requests.Session()
        session.get(self.url + "/hub/signup")
        return session.post(
            self.url + "/hub/signup",
            data={"username": username, "signup_password": password,
                  "signup_password_confirmation": password,
                  "_xsrf": session.cookies.get("_xsrf", path="/hub/")},
        )

    @property
    def admin_password(self) -> str:
        """The configured one, or the one the hub generated on its first start."""
        return self.env["CLUSTERLAB_ADMIN_PASSWORD"] or (
            (self.data_dir / "hub" / "admin-password").read_text().strip()
        )

    def admin(self) -> requests.Session:
        return self.browser("admin", self.admin_password)

    def approve(self, username: str) -> None:
        response = self.admin().get(f"{self.url}/hub/authorize/{username}")
        assert response.status_code == 200, response.status_code

    def add_user(self, username: str, password: str = "a-long-test-password", account: bool = True) -> str:
        """Sign a user up, approve them, and return an API token of theirs.

        ``account``: make the Unix account they run as first (where the hub maps
        users to accounts); False for names that must never get one (root, daemon).
        """
        if account:
            self.account_for(username)
        assert self.signup(username, password).status_code == 200
        self.approve(username)
        return self.token(self.browser(username, password), username)

    def token(self, session: requests.Session, username: str) -> str:
        response = session.post(
            f"{self.url}/hub/api/users/{username}/tokens", json={"note": "tests"}
        )
        assert response.status_code == 201, response.text
        return response.json()["token"]

    def api(self, token: str) -> requests.Session:
        session = requests.Session()
        session.headers["Authorization"] = f"token {token}"
        return session

    @property
    def admin_api(self) -> requests.Session:
        if self._admin_token is None:
            self._admin_token = self.token(self.admin(), "admin")
        return self.api(self._admin_token)

    # ----- servers -------------------------------------------------------------------

    def server_url(self, user: str, server: str = "") -> str:
        return f"{self.url}/hub/api/users/{user}/servers/{server}"

    def server_model(self, user: str, server: str = "") -> dict | None:
        model = self.admin_api.get(f"{self.url}/hub/api/users/{user}").json()
        return model["servers"].get(server)

    def wait_ready(self, user: str, server: str = "", timeout: float = 60) -> dict:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            model = self.server_model(user, server)
            if model and model["ready"]:
                return model
            if model is None and time.monotonic() - started > 2:
                raise AssertionError(f"{user}/{server} is not starting:\n{self.log_tail()}")
            time.sleep(0.1)
        raise TimeoutError(f"{user}/{server} not ready in {timeout}s:\n{self.log_tail()}")

    def start_server(self, api: requests.Session, user: str, server: str = "", **options) -> dict:
        response = api.post(self.server_url(user, server), json=options)
        assert response.status_code in (201, 202), response.text
        return self.wait_ready(user, server)

    def stop_server(self, api: requests.Session, user: str, server: str = "") -> None:
        response = api.delete(self.server_url(user, server))
        assert response.status_code in (202, 204), response.text
        deadline = time.monotonic() + 30
        while self.server_model(user, server) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert self.server_model(user, server) is None, f"{user}/{server} did not stop"

    def spawn_form(self, session: requests.Session, path: str = "") -> str:
        """The spawn form page (``path``: ``user/server`` for a named server's)."""
        url = f"{self.url}/hub/spawn/{path}" if path else f"{self.url}/hub/spawn"
        return session.get(url).content.decode("utf-8")


def terminal_run(hub: Hub, user: str, token: str, command: str, until: str, timeout: float = 60) -> str:
    """Type ``command`` into a new JupyterLab terminal of ``user`` (its websocket); the screen once ``until`` shows."""
    import asyncio
    import json

    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    api = hub.api(token)
    name = api.post(f"{hub.url}/user/{user}/api/terminals").json()["name"]

    async def talk() -> str:
        url = f"ws://127.0.0.1:{hub.port}/user/{user}/terminals/websocket/{name}"
        socket = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"token {token}"}))
        await socket.write_message(json.dumps(["stdin", command + "\r"]))
        screen, deadline = "", time.monotonic() + timeout
        while until not in screen and time.monotonic() < deadline:
            try:
                message = await asyncio.wait_for(socket.read_message(), deadline - time.monotonic())
            except asyncio.TimeoutError:
                break
            if message is None:
                break
            kind, *payload = json.loads(message)
            if kind == "stdout":
                screen += payload[0]
        socket.close()
        return screen

    try:
        return asyncio.run(talk())
    finally:
        api.delete(f"{hub.url}/user/{user}/api/terminals/{name}")


def process_facts(pid: int) -> dict:
    """What the kernel says of a server process: cores, environment, memory cap."""
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    env = dict(item.decode().split("=", 1) for item in environ if b"=" in item)
    limits = Path(f"/proc/{pid}/limits").read_text()
    data = re.search(r"Max data size\s+(\S+)", limits).group(1)
    return {
        "cores": sorted(os.sched_getaffinity(pid)),
        "env": env,
        "rlimit_data": int(data) if data.isdigit() else data,
        "cwd": os.readlink(f"/proc/{pid}/cwd"),
    }


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()
