"""Login for the embedded default: NativeAuthenticator, mended for JupyterHub 6.

NativeAuthenticator gives what a small site needs: sign-up, admin approval
(``/hub/authorize``), bcrypt-hashed passwords, password changes, lock-out
after failed attempts. Its 1.3.0 login handler, though, breaks on JupyterHub
6: it calls ``self.statsd`` (removed from the hub) so every POST to
``/hub/login`` answers 500, and its ``_render`` refuses the keywords the hub
now passes when it renders an error on the login form. We keep everything of
NativeAuthenticator and replace only that handler: the hub's own ``post``,
with NativeAuthenticator's page and its "not approved yet" message.

The allow rule (JupyterHub >= 5 lets nobody in without one) is the admin's
approval: a user may log in once an admin has approved the sign-up, or is in
``allowed_users``/``admin_users``. ``admin`` is created at start with
``admin_password`` so that scripted set-ups can log in through the form; with
none given, a generated one is written to ``first_admin_password_file``.

Where every user's server runs as one Unix account (a hub that is not root),
users could read each other's files and tokens: ``shared_unix_account`` names
that account, the hub says so in its log, and sign-up is off (the sign-up page
says why) unless ``allow_signup_with_shared_account`` allows it knowingly.

NativeAuthenticator checks a password with bcrypt on the hub's event loop: about
0.3 s of CPU each, during which the hub answers nobody, so twenty people logging
in at once stalled every API request for seconds. :meth:`authenticate` runs
that check in a thread (bcrypt releases the GIL) and is otherwise NativeAuthenticator's.
The checks share one core less than the machine has, so that a crowd's logins
leave the event loop a core of its own.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bcrypt
from jinja2 import ChoiceLoader, FileSystemLoader
from jupyterhub.handlers.login import LoginHandler as HubLoginHandler
from nativeauthenticator import NativeAuthenticator
from nativeauthenticator.handlers import LoginHandler as NativeLoginHandler
from nativeauthenticator.handlers import SignUpHandler as NativeSignUpHandler
from nativeauthenticator.orm import UserInfo
from tornado.escape import url_escape
from tornado.httputil import url_concat
from traitlets import Bool, Unicode, default

from .accounts import shared_account_notice

TEMPLATES = Path(__file__).parent / "templates"

# the password checks' threads: one core less than this machine gives the hub
_password_checks = ThreadPoolExecutor(max_workers=max(1, len(os.sched_getaffinity(0)) - 1),
                                      thread_name_prefix="bcrypt")


class LoginHandler(NativeLoginHandler):
    """NativeAuthenticator's login page on the hub's own login logic."""

    # the hub's post: NativeAuthenticator's calls self.statsd, gone in JupyterHub 6
    post = HubLoginHandler.post

    def _not_approved_message(self, username: str | None) -> str | None:
        if not username or self.request.method != "POST":
            return None
        info = self.authenticator.get_user(username)
        password = self.get_body_argument("password", default="", strip=False)
        if info is not None and not info.is_authorized and info.is_valid_password(password):
            return f"User {username} has not been approved by an administrator yet."
        return None

    def _render(self, login_error=None, username=None, **kwargs):
        # the hub passes extra template keywords (NativeAuthenticator's took none)
        login_error = self._not_approved_message(username) or login_error
        return self.render_template(
            "native-login.html",
            next=url_escape(self.get_argument("next", default="")),
            username=username,
            login_error=login_error,
            custom_html=self.authenticator.custom_html,
            login_url=self.settings["login_url"],
            enable_signup=self.authenticator.enable_signup,
            two_factor_auth=self.authenticator.allow_2fa,
            authenticator_login_url=url_concat(
                self.authenticator.login_url(self.hub.base_url),
                {"next": self.get_argument("next", "")},
            ),
            **{k: v for k, v in kwargs.items() if k not in {"login_error", "username"}},
        )


class SignUpHandler(NativeSignUpHandler):
    """NativeAuthenticator's sign-up, which says why it is closed when one account serves all."""

    _template_dir_registered = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not SignUpHandler._template_dir_registered:  # as NativeAuthenticator adds its own
            env = self.settings["jinja2_env"]
            env.loader = ChoiceLoader([env.loader, FileSystemLoader([str(TEMPLATES)])])
            SignUpHandler._template_dir_registered = True

    @property
    def closed(self) -> bool:
        authenticator = self.authenticator
        return bool(authenticator.shared_unix_account and not authenticator.allow_signup_with_shared_account)

    async def _closed_page(self):
        self.set_status(403)
        self.finish(await self.render_template(
            "signup-closed.html", account=self.authenticator.shared_unix_account,
            login_url=self.settings["login_url"]))

    async def get(self):
        if self.closed:
            return await self._closed_page()
        return await super().get()

    async def post(self):
        if self.closed:
            return await self._closed_page()
        return await super().post()


class ClusterLabAuthenticator(NativeAuthenticator):
    """NativeAuthenticator with a working login form and a bootstrapped admin."""

    admin_password = Unicode(
        "",
        config=True,
        help="""If set, the `admin` account exists with this password at hub start
        (created, or its password reset). The default config reads it from
        CLUSTERLAB_ADMIN_PASSWORD.""",
    )

    first_admin_password_file = Unicode(
        "",
        config=True,
        help="""Where to write a generated password for `admin` when neither
        admin_password is set nor an `admin` account exists yet (mode 0600), so
        that no stranger can claim `admin` by signing up first. Empty: do not.""",
    )

    shared_unix_account = Unicode(
        "",
        config=True,
        help="""The Unix account every user's server and jobs run as, when the
        spawner cannot give each user their own (a local or Slurm hub that is
        not root); empty where users are separated. Then the hub warns at
        start, and sign-up is off unless allow_signup_with_shared_account.""",
    )

    allow_signup_with_shared_account = Bool(
        False,
        config=True,
        help="""Let people sign up although all users share shared_unix_account,
        and so can read and change each other's files, jobs and tokens: for a
        group who trust each other. The default config reads it from
        CLUSTERLAB_ALLOW_SIGNUP_WITH_SHARED_ACCOUNT=1.""",
    )

    @default("any_allow_config")
    def _any_allow_config_default(self):
        return True  # admin approval is the allow rule (see check_allowed)

    @default("admin_users")
    def _admin_users_default(self):
        return {"admin"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.shared_unix_account:
            self.log.warning("%s Sign-up is %s.", shared_account_notice(self.shared_unix_account),
                             "open (allow_signup_with_shared_account)" if self.allow_signup_with_shared_account
                             else "off (allow_signup_with_shared_account opens it)")
            if not self.allow_signup_with_shared_account:
                self.enable_signup = False  # and the login page offers no sign-up link
        if self.admin_password:
            self._ensure_admin(self.admin_password)
        elif self.first_admin_password_file and self.get_user("admin") is None:
            password = secrets.token_urlsafe(12)
            path = Path(self.first_admin_password_file)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(password + "\n")
            os.chmod(path, 0o600)
            self._ensure_admin(password)
            self.log.warning("Created the `admin` account; its password is in %s", path)

    def _ensure_admin(self, password: str) -> None:
        info = self.get_user("admin")
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt())
        if info is None:
            self.db.add(UserInfo(username="admin", password=hashed, is_authorized=True))
        elif not (info.is_valid_password(password) and info.is_authorized):
            info.password = hashed
            info.is_authorized = True
        self.db.commit()

    async def authenticate(self, handler, data):
        """NativeAuthenticator's checks, in its order, with bcrypt off the event loop."""
        username = self.normalize_username(data["username"])
        user = self.get_user(username)
        if not user or (self.allowed_failed_logins and self.is_blocked(username)):
            return None
        password_ok = await asyncio.get_running_loop().run_in_executor(
            _password_checks, bcrypt.checkpw, data["password"].encode(), user.password)
        if user.is_authorized and password_ok and (not user.has_2fa or user.is_valid_token(data.get("2fa"))):
            self.successful_login(username)
            return username
        self.add_login_attempt(username)
        return None

    def check_allowed(self, username, authentication=None):
        if super().check_allowed(username, authentication) or username in self.admin_users:
            return True
        info = self.get_user(username)
        return bool(info is not None and info.is_authorized)

    def get_handlers(self, app):
        ours = {r"/login": LoginHandler, r"/signup": SignUpHandler}
        return [(path, ours.get(path, handler)) for path, handler in super().get_handlers(app)]
