"""Hub users as Unix accounts: which account a server and its jobs run as.

Wherever the hub runs as root, each hub user's servers and jobs run as the
Unix account of the same name: on Slurm (jobs must run as someone) and on
the local backend (users of one machine must not read each other's files,
tokens or processes). One function, :func:`check_account`, decides whether a
hub user may have such an account; both backends call it before anything is
submitted or created, so the spawn form, the REST API and a hub restart all
get the same answer.

Refused, always:

- names that cannot be Unix accounts (useradd's rule, no dots);
- ``root``, ``nobody`` and the site's deny list, and any account with uid 0
  or the overflow uid 65534;
- accounts below ``min_uid`` (1000, as Open OnDemand's default): ``daemon``,
  ``www-data``, the ``slurm`` and ``munge`` service accounts...;
- creating an account whose name is already a group (``useradd`` would make
  the new user a member of it: ``staff``, ``docker``, ``sudo``...).

A hub that is not root cannot switch accounts at all: every user's server
runs as the hub's own account. :func:`shared_account_notice` is what the hub
then says, in its log and on its pages.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import re
import subprocess
from pathlib import Path

from .options import OptionsError

# Unix account names we accept (useradd's default rule, without dots)
UNIX_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")

#: never used, whatever the configuration says
ALWAYS_DENIED = frozenset({"root", "nobody"})
#: uid 0, and the kernel's overflow uid (nobody's, above any min_uid)
SYSTEM_UIDS = frozenset({0, 65534})

USERADD = "/usr/sbin/useradd"


def check_account(name: str, *, min_uid: int, denied: set[str] | frozenset[str],
                  may_create: bool) -> pwd.struct_passwd | None:
    """The account ``name``'s servers run as, or None if it may be created.

    Raises :class:`OptionsError` (field ``user``) with the reason if the hub
    user may not have a server as a Unix account.
    """
    if not UNIX_NAME.match(name):
        raise OptionsError(
            "user", f"user name {name!r} cannot be a Unix account, and servers here run as the "
                    "account of the user's name (lower-case letters, digits, _ and -)")
    if name in ALWAYS_DENIED or name in denied:
        raise OptionsError("user", f"{name!r} is a system account: no server or job ever runs as it")
    try:
        account = pwd.getpwnam(name)
    except KeyError:
        account = None
    if account is not None:
        if account.pw_uid in SYSTEM_UIDS or account.pw_uid < min_uid:
            raise OptionsError(
                "user", f"the Unix account {name!r} is a system account (uid {account.pw_uid}, below "
                        f"min_uid {min_uid}): no server or job ever runs as it")
        return account
    try:
        group = grp.getgrnam(name)
    except KeyError:
        group = None
    if group is not None:
        raise OptionsError(
            "user", f"there is no Unix account {name!r}, and one cannot be made: a group of that name "
                    f"exists (gid {group.gr_gid}), which the new account would join")
    if not may_create:
        raise OptionsError(
            "user", f"there is no Unix account {name!r} on this machine, and servers run as it: ask an "
                    "administrator to create it (or to switch on ClusterLab's create_unix_users)")
    return None


def create_account(name: str, *, min_uid: int) -> pwd.struct_passwd:
    """``useradd`` the account (home mode 0700), after :func:`check_account` said it may."""
    result = subprocess.run(
        [USERADD, "--create-home", "--shell", "/bin/bash", "--key", "HOME_MODE=0700", "--", name],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0 and "already exists" not in result.stderr:
        raise OptionsError("user", f"useradd {name} failed: {result.stderr.strip()}")
    account = pwd.getpwnam(name)
    if account.pw_uid < min_uid:  # a site whose UID_MIN is below ours
        raise OptionsError("user", f"useradd gave {name!r} uid {account.pw_uid}, below min_uid {min_uid}")
    ensure_home(account)
    os.chmod(account.pw_dir, 0o700)  # login.defs may say otherwise (Debian 12: 0755)
    return account


def ensure_home(account: pwd.struct_passwd) -> Path:
    """The account's home folder, made (owned by it, mode 0700) if it is missing."""
    home = Path(account.pw_dir)
    if not home.is_dir():
        home.mkdir(mode=0o700, parents=True)
        os.chown(home, account.pw_uid, account.pw_gid)
    return home


def groups_of(account: pwd.struct_passwd) -> list[int]:
    """The account's primary and supplementary groups, as login gives them."""
    return os.getgrouplist(account.pw_name, account.pw_gid)


def hub_account() -> str:
    """The Unix account this hub runs as."""
    return pwd.getpwuid(os.geteuid()).pw_name


def shared_account_notice(account: str) -> str:
    """What users must be told when every server runs as one account."""
    return (
        f"This hub is not running as root, so it runs every user's server and jobs as one and the "
        f"same Unix account ({account}): anyone with a server here can read and change the others' "
        f"files, jobs and tokens. Use it only among people who trust each other, or run the hub as "
        f"root to give each user their own account."
    )


def warn_if_unreachable_by_users(venv_bin: Path) -> None:
    """Servers and jobs run the hub's virtual environment as each user: say so at start if they cannot.

    Both the environment and the interpreter it links to must be reachable (a
    venv made from a pyenv Python under /root is not).
    """
    if os.geteuid() != 0:
        return  # servers run as the hub's own account
    interpreter = (Path(venv_bin) / "python").resolve()
    for target in (Path(venv_bin).absolute(), interpreter.parent):
        for folder in [*reversed(target.parents), target]:
            mode = folder.stat().st_mode
            if not mode & 0o001:
                logging.getLogger("JupyterHub").error(
                    "%s is mode %o: servers and jobs, which run as each user, cannot reach %s. Build the "
                    "environment with /usr/bin/python3 in a world-readable place (make does).",
                    folder, mode & 0o777, target,
                )
                return
