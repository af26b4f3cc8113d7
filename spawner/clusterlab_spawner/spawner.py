"""ClusterSpawner: the instance-size form and its rules, shared by every backend.

A backend is a subclass that mixes this class in front of a real spawner
(``LocalProcessSpawner``, batchspawner's ``SlurmSpawner``, ``KubeSpawner``) and
adds only what is native to it: how a :class:`~.options.Choice` becomes
process limits, sbatch lines or a pod spec, and how much is free right now.
Everything here is backend-agnostic:

- the options form, rendered from ``profiles.yaml`` with live availability;
- validation of ``user_options`` (form or REST API) and the per-user quotas,
  enforced again in :meth:`start`, so that no path can start an unchecked size;
- on backends that run each user as their Unix account (local as root,
  Slurm), which account that is: system accounts are refused, a missing one
  is created only where ``create_unix_users`` says so (see :mod:`.accounts`);
- waiting for the server to answer before handing it to the hub, so that the
  hub's own backing-off readiness poll does not add seconds to every spawn;
- turns to start (:mod:`.start_queue`): where the hub's own machine starts the
  servers, only so many start at once, and the spawn page says who is ahead.
"""

from __future__ import annotations

import asyncio
import functools
import os
import pwd
import time
from pathlib import Path

import jinja2
from jupyterhub.spawner import Spawner
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from traitlets import Bool, Float, Integer, Set, Unicode, default

from . import accounts
from .availability import Availability
from .options import (
    Choice,
    OptionsError,
    check_quota,
    options_from_form_data,
    server_profiles,
    validate_user_options,
)
from .profiles import Profile, load_profiles
from .start_queue import StartQueue

HERE = Path(__file__).parent
DEFAULT_PROFILES = HERE.parents[1] / "hub_config" / "profiles.yaml"

_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True
)


# one line for the whole hub process: its servers share the machine that starts them
START_QUEUE = StartQueue()


@functools.lru_cache(maxsize=8)
def _cached_profiles(path: str) -> dict[str, Profile]:
    return {p.id: p for p in load_profiles(path)}


class ClusterSpawner(Spawner):
    """Instance sizes from profiles.yaml, validated and within quota."""

    profiles_file = Unicode(
        str(DEFAULT_PROFILES),
        config=True,
        help="""The instance sizes offered, as a YAML file (see hub_config/profiles.yaml).

        Read once per hub process and validated; a wrong file stops the hub at
        start with a message naming the profile and field.
        """,
    )

    max_servers_per_user = Integer(
        3,
        config=True,
        help="How many servers (default plus named) one user may run at once. 0: no limit.",
    )

    max_gpus_per_user = Integer(
        4,
        config=True,
        help="How many GPUs one user's running servers may hold together. 0: no limit.",
    )

    min_uid = Integer(
        1000,
        config=True,
        help="""Lowest uid a hub user's Unix account may have. Where servers run as
        each user's account (the local backend as root, Slurm), a user whose
        account is below it (daemon, nobody, the service accounts) gets an error
        naming the reason, and nothing is submitted. uid 0 is never used.""",
    )

    denied_unix_users = Set(
        Unicode(),
        config=True,
        help="""Unix accounts no server or job may run as, whatever their uid (root
        always is one).""",
    )

    create_unix_users = Bool(
        False,
        config=True,
        help="""Create a missing Unix account (useradd, home mode 0700) for a hub
        user before their first server, where servers run as each user's
        account. Off by default: sites get accounts from their directory
        (LDAP/SSSD). The embedded default switches it on when the hub runs as
        root, and says so in its log. Never creates a name that is already a
        group, or one that check_account refuses.""",
    )

    readiness_poll_interval = Float(
        0.05,
        config=True,
        help="""Seconds between checks that a just-started server answers HTTP.

        start() returns only once the server answers, polling at this fixed
        short interval; JupyterHub's own check would otherwise back off
        exponentially and find a ready server up to seconds late.
        """,
    )

    max_concurrent_starts = Integer(
        0,
        config=True,
        help="""How many servers may be starting at once; the others wait their turn, in the
        order they were asked for, and the spawn page says how many are ahead. 0: no limit.
        The local backend's default is the number of cores: a JupyterLab's start-up
        is a core's work for a second or two, and twenty at once on two cores each
        took twenty times as long.""",
    )

    @default("apply_user_options")
    def _apply_user_options_default(self):
        # user_options are validated and applied by start() itself, where no
        # configuration can skip the check; this only marks them as handled.
        return lambda spawner, user_options: None

    @default("options_form")
    def _options_form_default(self):
        # non-empty, so that JupyterHub shows the form; get_options_form renders it
        return "clusterlab"

    # ----- profiles and the user's choice -------------------------------------

    @property
    def profiles(self) -> dict[str, Profile]:
        """The sizes a server may have: a JupyterLab runs on one node, so several-node sizes are left out."""
        return server_profiles(_cached_profiles(str(self.profiles_file)))

    @property
    def choice(self) -> Choice | None:
        """The validated size of this server, or None if it has none (yet)."""
        try:
            return validate_user_options(self.user_options or {}, self.profiles)
        except OptionsError:
            return None

    def _other_active_choices(self) -> list[Choice]:
        others = []
        for name, spawner in self.user.spawners.items():
            if spawner is self or name == self.name or not spawner.active:
                continue
            choice = getattr(spawner, "choice", None)
            if choice is not None:
                others.append(choice)
        return others

    def check_options(self, user_options) -> Choice:
        """Validate the account, options, quotas and what the backend can give now."""
        self.check_account()
        every_size = _cached_profiles(str(self.profiles_file))
        asked = every_size.get(user_options.get("profile")) if isinstance(user_options, dict) else None
        if asked is not None and asked.multi_node:
            raise OptionsError("profile", f"{asked.id} spans {asked.nodes} nodes: it is for distributed jobs, "
                                          "and a JupyterLab runs on one node; choose a one-node size")
        choice = validate_user_options(user_options, self.profiles)
        check_quota(
            choice,
            self._other_active_choices(),
            max_servers_per_user=self.max_servers_per_user,
            max_gpus_per_user=self.max_gpus_per_user,
        )
        availability = self.availability()
        never = availability.impossible.get(choice.profile.id)
        if never:
            raise OptionsError("profile", f"{choice.profile.display_name} can never start here: {never}")
        reason = availability.blocked.get(choice.profile.id)
        if reason and not self.queues_when_busy:
            raise OptionsError("profile", f"{choice.profile.display_name} cannot start now: {reason}")
        return choice

    # ----- the Unix account servers run as ---------------------------------------

    #: the Unix account of the server being started (None where accounts are not used)
    account: pwd.struct_passwd | None = None

    @property
    def runs_as_user_account(self) -> bool:
        """Whether this backend runs the server as the user's own Unix account."""
        return False

    def check_account(self) -> pwd.struct_passwd | None:
        """The user's Unix account (None if it is to be created, or not used).

        Raises OptionsError where the user may not have one (see :mod:`.accounts`).
        """
        if not self.runs_as_user_account:
            return None
        return accounts.check_account(
            self.user.name, min_uid=self.min_uid, denied=self.denied_unix_users,
            may_create=self.create_unix_users and os.geteuid() == 0,
        )

    async def user_account(self) -> pwd.struct_passwd | None:
        """The user's checked Unix account, created first if it is missing and may be."""
        account = self.check_account()
        if account is None and self.runs_as_user_account:
            account = await asyncio.to_thread(accounts.create_account, self.user.name, min_uid=self.min_uid)
            self.log.info("Created the Unix account %s (uid %d, home %s)",
                          account.pw_name, account.pw_uid, account.pw_dir)
        return account

    # ----- backend hooks --------------------------------------------------------

    #: True for backends whose scheduler queues a request that does not fit now
    queues_when_busy = False

    def availability(self) -> Availability:
        """Free resources now; backends override. Must not block."""
        return Availability(None, None, None, None)

    def reserve(self, choice: Choice) -> None:
        """Take what the choice needs before start (e.g. GPUs); raise OptionsError if unable."""

    def release(self) -> None:
        """Give back what reserve() took."""

    # ----- the form ---------------------------------------------------------------

    async def get_options_form(self):
        try:
            self.check_account()
            account_error = ""
        except OptionsError as e:
            account_error = e.message  # said up front; a submitted form gets the same refusal
        availability = self.availability()
        previous = self.choice
        selected = previous.profile.id if previous else next(iter(self.profiles))
        return _templates.get_template("options_form.html").render(
            account_error=account_error,
            profiles=list(self.profiles.values()),
            selected=selected,
            hours=previous.hours if previous else None,
            availability=availability,
            queues_when_busy=self.queues_when_busy,
            lost_message=getattr(self, "lost_message", ""),  # the Slurm spawner's: why the last one ended
        )

    def run_options_from_form(self, form_data):
        try:
            options = options_from_form_data(form_data)
            return self.check_options(options).to_user_options()
        except OptionsError as e:
            # JupyterHub shows the message on the form
            raise web.HTTPError(400, e.message) from None

    # ----- start, with the checks no path can skip ------------------------------------

    def _options_http_error(self, e: OptionsError) -> web.HTTPError:
        field = f" ({e.field})" if e.field else ""
        return web.HTTPError(400, f"Server options refused{field}: {e.message}")

    #: where the user's own jobs (the clusterlab server extension) run from this server
    job_backend = "local"

    def get_env(self):
        env = super().get_env()
        # the job service in the user's JupyterLab offers the same sizes, on the same backend
        env.update(CLUSTERLAB_PROFILES=str(self.profiles_file), CLUSTERLAB_JOB_BACKEND=self.job_backend)
        choice = self.choice
        if choice is not None:
            env.update(
                CLUSTERLAB_PROFILE=choice.profile.id,
                CLUSTERLAB_HOURS=f"{choice.hours:g}",
                CLUSTERLAB_CPUS=str(choice.profile.cpus),
                CLUSTERLAB_MEMORY_GB=f"{choice.profile.memory_gb:g}",
                CLUSTERLAB_GPUS=str(choice.profile.gpus),
            )
        return env

    async def start(self):
        self.__dict__["_progress_steps"] = []  # this start's steps, for the spawn page
        try:
            choice = self.check_options(self.user_options or {})
        except OptionsError as e:
            raise self._options_http_error(e) from None
        # keep the normalized form (default hours filled in) for the record
        self.user_options = choice.to_user_options()
        self.mem_limit = choice.profile.memory_bytes
        self.cpu_limit = float(choice.profile.cpus)
        try:
            self.account = await self.user_account()
            self.reserve(choice)
        except OptionsError as e:
            raise self._options_http_error(e) from None
        try:
            async with START_QUEUE.turn(self.max_concurrent_starts, self._say_waiting):
                self.progress_message = "Starting JupyterLab"
                url = await super().start()
                await self._wait_until_answering(url)
        except BaseException:
            self.release()
            raise
        return url

    def _say_waiting(self, ahead: int) -> None:
        message = (f"Waiting for a turn to start: {ahead} server{'s' if ahead != 1 else ''} ahead of yours "
                   f"(this machine starts {self.max_concurrent_starts} at a time, so that each starts quickly)")
        if message != self.progress_message:
            if not self.progress_message.startswith("Waiting for a turn"):
                self.log.info("%s waits for a turn to start: %d ahead", self._log_name, ahead)
            self.progress_message = message

    # ----- what the spawn page shows while it waits -----------------------------------

    # Every step of the start is kept, not only the latest: a step can be over
    # sooner than the spawn page's next look (a Slurm job reports its port
    # within a tenth of a second of starting), and the page still shows it.
    @property
    def progress_message(self) -> str:
        """The latest step of the start, for the spawn page; backends set it as they go."""
        steps = self.__dict__.get("_progress_steps")
        return steps[-1][0] if steps else ""

    @progress_message.setter
    def progress_message(self, message: str) -> None:
        steps = self.__dict__.setdefault("_progress_steps", [])
        if message and (not steps or steps[-1][0] != message):
            steps.append((message, self.progress_percent(message)))

    def progress_percent(self, message: str = "") -> int:
        """How far along the spawn page's bar is at this step."""
        return 10 if (message or self.progress_message).startswith("Waiting for a turn") else 50

    async def progress(self):
        shown = 0
        while True:
            steps = self.__dict__.get("_progress_steps", [])
            for message, percent in steps[shown:]:
                yield {"message": message, "progress": percent}
            shown = len(steps)
            await asyncio.sleep(0.2)

    # JupyterHub insists that every Spawner subclass define these; the backend's do the work
    async def stop(self, now=False):
        return await super().stop(now=now)

    async def poll(self):
        return await super().poll()

    async def _wait_until_answering(self, url) -> None:
        if not isinstance(url, str):
            ip, port = url
            url = f"http://{ip}:{port}"
        target = url.rstrip("/") + self.server.base_url if self.server else url
        client = AsyncHTTPClient()
        deadline = time.monotonic() + self.http_timeout
        next_check = time.monotonic()
        while time.monotonic() < deadline:
            try:
                await client.fetch(target, follow_redirects=False, request_timeout=2)
                return
            except HTTPClientError as e:
                if e.code < 500 and e.code != 599:
                    return  # a redirect or 4xx still means it answers
            except OSError:
                pass
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + 0.5
                if await self.ended_while_starting():
                    return  # died: let the hub report it as it does
            await asyncio.sleep(self.readiness_poll_interval)

    async def ended_while_starting(self) -> bool:
        """Whether the server is gone before it answered (a backend may raise with details)."""
        return await self.poll() is not None
