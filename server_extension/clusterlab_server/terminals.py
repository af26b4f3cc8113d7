"""JupyterLab terminals that find ``clusterlab`` and this environment's ``python``.

jupyter_server_terminals starts ``$SHELL -l`` when the server has no terminal
of its own (as under JupyterHub): a login shell, so that ``/etc/profile`` and
the user's ``~/.profile`` set the user up. But Debian's ``/etc/profile`` (and
most others) *sets* ``PATH``, which drops the environment the hub started the
server in: ``clusterlab`` is then "command not found" and ``python`` is
missing or the system one, on every backend.

So the terminal is a login shell that, once the profiles have run, puts the
server's environment first on ``PATH`` again and becomes the user's
interactive shell (which reads ``~/.bashrc`` and the like as usual). A
``shell_command`` the site configured is left as it is.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# after the login profiles: this environment first, then the user's interactive shell
_AFTER_LOGIN = 'PATH="$1:$PATH" exec "$2" -i'


def shell_command(env_bin: str | Path, shell: str) -> list[str]:
    """A terminal's command: a login shell, then ``env_bin`` first on PATH, then ``shell``."""
    return ["/bin/bash", "-l", "-c", _AFTER_LOGIN, "clusterlab-terminal", str(env_bin), shell]


def keep_environment_in_terminals(serverapp) -> None:
    """Give the server's terminals :func:`shell_command`, unless one is configured."""
    settings = serverapp.terminado_settings
    if settings.get("shell_command") is None:
        shell = os.environ.get("SHELL") or "/bin/bash"
        serverapp.terminado_settings = {**settings, "shell_command": shell_command(Path(sys.executable).parent, shell)}
