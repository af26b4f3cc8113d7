"""`clusterlab-singleuser`: JupyterHub's single-user server, without the imports that are waste for it.

The hub starts every user's JupyterLab with this command on every backend. It is
``jupyterhub-singleuser`` itself (JupyterHub's ``main``), run after three changes
to what gets imported, which together take about half of its start-up on a
small machine (docs/performance.md has the measurements):

- ``rfc3987_syntax`` builds some 35 Lark parsers when imported. jsonschema's
  format checker imports it to check the ``iri`` and ``iri-reference`` formats,
  which no schema of Jupyter's or ours uses (jupyter_server#1559). Here it is
  imported the first time such a string is really checked, and not before: the
  check itself is unchanged.
- ``jupyterhub.log`` (the request logger the single-user server uses) imports
  the hub's page handlers only to log ``/hub/health`` at debug level; that pulls
  in the hub's handlers, its ORM, alembic's autogenerate and cryptography, none
  of which a single-user server runs. A single-user server has no health-check
  handler of the hub, so a class that nothing is an instance of is exactly
  right for it.
- ``jupyterhub.orm`` (which the single-user server's auth imports for its scope
  rules) imports alembic's migration commands at the top, for the hub's
  database upgrades. Here those names are bound to stand-ins that import
  alembic the first time they are used, which in a single-user server is never.

On Slurm the job's first step is batchspawner's port report (the job picks its
port on the node and tells the hub). ``batchspawner-singleuser`` imports the
hub's auth module for it, which brings back all of the above before this
launcher runs; ``clusterlab-batch-singleuser`` (:func:`batch_main`) speaks the
same protocol with the standard library, then runs the server command.

tests/test_startup_imports.py fails if one comes back, or if any other
import of the start-up grows past its threshold.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import socket
import ssl
import sys
import types
import urllib.request
from runpy import run_path
from urllib.parse import urlparse, urlunparse


def defer_rfc3987_syntax() -> None:
    """Make ``from rfc3987_syntax import is_valid_syntax`` cheap: the grammar is built on the first call."""
    if "rfc3987_syntax" in sys.modules:
        return
    deferred = types.ModuleType("rfc3987_syntax", "rfc3987_syntax, imported on first use (clusterlab)")

    def load():
        del sys.modules["rfc3987_syntax"]  # the stand-in steps aside for the real package
        try:
            real = importlib.import_module("rfc3987_syntax")
        except BaseException:
            sys.modules["rfc3987_syntax"] = deferred
            raise
        deferred.__dict__.update(real.__dict__)  # whoever holds the stand-in now holds the real thing
        return real

    def is_valid_syntax(term, value):
        return load().is_valid_syntax(term, value)

    def __getattr__(name):  # anything else asked for: the real module, now
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(load(), name)

    deferred.is_valid_syntax = is_valid_syntax
    deferred.__getattr__ = __getattr__
    sys.modules["rfc3987_syntax"] = deferred


class _Deferred(types.ModuleType):
    """A module, or a name imported from one, that imports the real one when first used."""

    def __init__(self, module: str, attribute: str = ""):
        super().__init__(f"{module}.{attribute}" if attribute else module)
        self._target = (module, attribute)
        self.__path__ = []  # a package to the import system, so that its submodules can be stand-ins too

    def _real(self):
        module, attribute = self._target
        real = importlib.import_module(module)
        return getattr(real, attribute) if attribute else real

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        real = self._real()
        try:
            return getattr(real, name)
        except AttributeError:
            if self._target[1]:
                raise
            return importlib.import_module(f"{self._target[0]}.{name}")  # `alembic.config`, as `import` binds it

    def __call__(self, *args, **kwargs):
        return self._real()(*args, **kwargs)


def import_deferring(module: str, deferred: dict[str, tuple[str, ...]]) -> None:
    """Import ``module`` with each of ``deferred`` (module: names imported from it) bound to a stand-in.

    The stand-ins are in ``sys.modules`` only while ``module`` is imported: a
    later import of those modules gets the real ones, and so does ``module``'s
    first use of them.
    """
    if module in sys.modules or any(name in sys.modules for name in deferred):
        return
    stand_ins = {}
    for name, attributes in deferred.items():
        stand_ins[name] = _Deferred(name)
        for attribute in attributes:
            setattr(stand_ins[name], attribute, _Deferred(name, attribute))
    sys.modules.update(stand_ins)
    try:
        importlib.import_module(module)
    finally:
        for name in stand_ins:
            del sys.modules[name]


def defer_alembic_in_hub_orm() -> None:
    """Import ``jupyterhub.orm`` without alembic, which only its database upgrades use."""
    import_deferring("jupyterhub.orm", {"alembic": (), "alembic.command": (), "alembic.config": (),
                                        "alembic.script": ("ScriptDirectory",)})


def import_hub_log_without_hub_handlers() -> None:
    """Import ``jupyterhub.log`` with a stand-in for the hub's page handlers, then take the stand-in away."""
    if "jupyterhub.log" in sys.modules or "jupyterhub.handlers" in sys.modules:
        return
    import jupyterhub

    class HealthCheckHandler:  # the hub's /hub/health; a single-user server serves none
        pass

    handlers = types.ModuleType("jupyterhub.handlers")
    handlers.__path__ = []  # a package, so that the import system resolves .pages inside it
    pages = types.ModuleType("jupyterhub.handlers.pages")
    pages.HealthCheckHandler = HealthCheckHandler
    handlers.pages = pages
    sys.modules.update({"jupyterhub.handlers": handlers, "jupyterhub.handlers.pages": pages})
    try:
        importlib.import_module("jupyterhub.log")
    finally:
        # whatever imports them later gets the real modules
        del sys.modules["jupyterhub.handlers"], sys.modules["jupyterhub.handlers.pages"]
        if getattr(jupyterhub, "handlers", None) is handlers:
            del jupyterhub.handlers


def main(argv=None):
    defer_rfc3987_syntax()
    defer_alembic_in_hub_orm()
    import_hub_log_without_hub_handlers()
    from jupyterhub.singleuser import main as singleuser_main

    return singleuser_main(argv)


def report_port_to_hub() -> int:
    """Pick a free port here and tell the hub (``POST <hub API>/batchspawner {"port": N}``), as batchspawner does."""
    with socket.socket() as probe:
        probe.bind(("", 0))
        port = probe.getsockname()[1]
    request = urllib.request.Request(
        os.environ["JUPYTERHUB_API_URL"].rstrip("/") + "/batchspawner", method="POST",
        data=json.dumps({"port": port}).encode(),
        headers={"Authorization": f"token {os.environ['JUPYTERHUB_API_TOKEN']}", "Content-Type": "application/json"},
    )
    context = None
    if os.environ.get("JUPYTERHUB_SSL_CLIENT_CA"):  # the hub's internal SSL, as HubAuth would use it
        context = ssl.create_default_context(cafile=os.environ["JUPYTERHUB_SSL_CLIENT_CA"])
        if os.environ.get("JUPYTERHUB_SSL_CERTFILE"):
            context.load_cert_chain(os.environ["JUPYTERHUB_SSL_CERTFILE"], os.environ.get("JUPYTERHUB_SSL_KEYFILE"))
    with urllib.request.urlopen(request, timeout=60, context=context):
        pass
    # the server's own URL, which the hub's OAuth checks, with the port picked here
    service_url = urlparse(os.environ["JUPYTERHUB_SERVICE_URL"])
    os.environ["JUPYTERHUB_SERVICE_URL"] = urlunparse(service_url._replace(netloc=f"{service_url.hostname}:{port}"))
    return port


def batch_main() -> None:
    """``clusterlab-batch-singleuser CMD ARGS...``: report a port to the hub, then run CMD in this process."""
    report_port_to_hub()
    command = shutil.which(sys.argv[1])
    if command is None:
        sys.exit(f"clusterlab-batch-singleuser: {sys.argv[1]}: command not found")
    sys.argv = sys.argv[1:]
    run_path(command, run_name="__main__")


if __name__ == "__main__":
    sys.exit(main())
