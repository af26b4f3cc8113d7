"""Unix accounts for the hub users of the tests, made before use and removed after.

A root hub runs each user's server and jobs as the Unix account of their name
(local and Slurm backends), so tests as root create the accounts they use
(:func:`ensure`), and the accounts a test or a hub created are removed at the
end of the session (:func:`remove_created`), with their homes and whatever
still runs as them. An account that existed before the session is left alone.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path

_existed: dict[str, bool] = {}  # name -> whether it existed before the tests first used it


def exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def track(name: str) -> None:
    """Note that the tests use ``name``: removed after the session unless it existed before."""
    _existed.setdefault(name, exists(name))


def made_by_tests(name: str) -> bool:
    """Whether the tests (or their hubs) made ``name``: it did not exist when they first used it."""
    track(name)
    return not _existed[name]


def ensure(name: str) -> pwd.struct_passwd:
    """The account ``name``, created (home mode 0700) if it is missing."""
    track(name)
    if not exists(name):
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", "--key", "HOME_MODE=0700", name],
                       check=True)
        os.chmod(pwd.getpwnam(name).pw_dir, 0o700)  # whatever login.defs says
    return pwd.getpwnam(name)


def home_of(name: str) -> Path:
    return Path(pwd.getpwnam(name).pw_dir)


def give(name: str, path: Path) -> Path:
    """Make ``path`` (a file or a whole folder the test wrote as root) belong to ``name``."""
    if os.geteuid() != 0 or not exists(name):
        return path  # not root: the tests' files are the hub's own, as are the servers
    account = pwd.getpwnam(name)
    # a link is given itself, never what it points to (another user's home, say)
    paths = [path] if path.is_symlink() or not path.is_dir() else [path, *path.rglob("*")]
    for item in paths:
        os.chown(item, account.pw_uid, account.pw_gid, follow_symlinks=False)
    return path


def write_as(name: str, path: Path, text: str) -> Path:
    """Write a file into a user's folder as the user would: theirs, and only theirs to read."""
    path.write_text(text)
    path.chmod(0o600)
    return give(name, path)


def remove_created() -> None:
    """Remove every account the tests created, with its processes, Slurm jobs and home."""
    for name, existed in list(_existed.items()):
        if existed or not exists(name):
            continue
        if shutil.which("scancel"):
            subprocess.run(["scancel", f"--user={name}"], capture_output=True, check=False)
        # a chance to stop as the hub stops them (a server's SIGTERM: its kernels, its TensorBoard and that
        # one's folder in the shared temp folder, which outlives the account), then whatever is left
        subprocess.run(["pkill", "-TERM", "-u", name], capture_output=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if subprocess.run(["pgrep", "-u", name], capture_output=True).returncode != 0:
                break
            time.sleep(0.1)
        for _ in range(50):  # jobs and servers it left, and their children
            if subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True).returncode != 0:
                break
            time.sleep(0.1)
        subprocess.run(["userdel", "--remove", "--force", name], capture_output=True, check=False)
    _existed.clear()
