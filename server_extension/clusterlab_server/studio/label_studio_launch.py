"""Label Studio's own entry point, as :mod:`.label_studio` starts it: one user, a secret prefix, offline, idle stop.

Run by the Label Studio virtual environment's python (``python label_studio_launch.py``), so it imports
nothing of ClusterLab: Label Studio's pinned dependencies (Django, DRF, ...) are not ours.

- Its settings come from the first line of standard input (a JSON object), never argv, which ``ps``
  shows to everyone: they hold the secret path prefix and the API token.
- It serves Label Studio only under ``mount``, ``<base_url>proxy/absolute/<port>/<secret>``, the path
  the browser asks jupyter-server-proxy's ``proxy/absolute/<port>/`` route for (that route passes the
  whole path on and leaves redirects alone). Anything else is 404. Label Studio makes its links, its
  page's assets and its redirects under that path (``HOSTNAME``, ``FORCE_SCRIPT_NAME``).
- Every request without ClusterLab's API token is logged in as the single local user (:class:`AutoLogin`;
  any other ``Authorization`` header, such as the jupyter server's token, is dropped first): the
  user's jupyter server (its token or the hub's cookie) and the secret prefix are the gate, so Label
  Studio's login page is never shown. That user has no usable password.
- Its page learns its origin from the browser (:func:`page_at_origin`), and its fonts come from under the
  mount (:func:`fonts_under_mount`).
- Every request counts as use; after ``idle_timeout`` seconds without one the process exits by itself.
- Offline: no Sentry (backend or page), no analytics (``tele.labelstud.io``), no PyPI version check; the
  page's assets are Label Studio's own files, served by it.
- A first start (no database yet) copies a template database, migrated and empty, made once by
  ``make setup`` (``python label_studio_launch.py --template PATH``), instead of running Label Studio's
  migrations (3 s, as a later start, not half a minute or more); without one of this version it migrates.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import socketserver
import sqlite3
import sys
import tempfile
import threading
import time
from urllib.parse import unquote

# run as a script, its folder comes first on sys.path, and there label_studio.py is ClusterLab's manager,
# not the package of that name
_HERE = pathlib.Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if pathlib.Path(p or ".").resolve() != _HERE]

LAST_REQUEST = [time.monotonic()]
# pages of Label Studio's that fetch from the internet: answered 404 here (heidi-tips: raw.githubusercontent.com)
ONLINE_ONLY = ("/heidi-tips/",)

# Label Studio's settings read these (with or without a LABEL_STUDIO_ prefix) when they are imported
OFFLINE_ENV = {
    "SENTRY_DSN": "",  # label_studio.py's default is Label Studio's own Sentry project
    "FRONTEND_SENTRY_DSN": "",  # the same for the page
    "COLLECT_ANALYTICS": "false",  # contextlog's POSTs to tele.labelstud.io, and the page's analytics
    "LATEST_VERSION_CHECK": "false",  # a request to pypi.org at import
    "FEATURE_FLAGS_OFFLINE": "true",
    "DEBUG": "false",
    "LOG_LEVEL": "WARNING",
    "INACTIVITY_SESSION_TIMEOUT_ENABLED": "0",  # its logout would show its login page
    "DISABLE_SIGNUP_WITHOUT_LINK": "true",
    "LOCAL_FILES_SERVING_ENABLED": "true",
    "ENABLE_LOCAL_FILES_STORAGE": "true",
    "APP_WEBSERVER": "django",
}


class AutoLogin:
    """Django middleware: a request without an API token is the single local user's (see the module's doc)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if "HTTP_AUTHORIZATION" not in request.META and not request.user.is_authenticated:
            from django.contrib.auth import login
            from users.models import User

            user = User.objects.filter(email=CONFIG["email"]).first()
            if user is not None:
                login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return self.get_response(request)


CONFIG: dict = {}

# beside this python's virtual environment (.venv-label-studio), made by make setup; its Label Studio version
# in clusterlab-template.sqlite3.version beside it
TEMPLATE = pathlib.Path(sys.prefix) / "clusterlab-template.sqlite3"
# the tables Label Studio's migrations fill: what Django and its apps know of themselves, nobody's data
TEMPLATE_ROWS = {"django_migrations", "django_content_type", "auth_permission", "core_asyncmigrationstatus",
                 "sqlite_sequence"}


def under_mount(app, mount: str):
    """A WSGI app serving ``app`` only under ``mount`` (404 elsewhere), and noting each request's time."""
    mount = unquote(mount.rstrip("/"))

    def serve(environ, start_response):
        LAST_REQUEST[0] = time.monotonic()
        path = environ.get("PATH_INFO", "")
        if path != mount and not path.startswith(mount + "/"):
            start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "10")])
            return [b"Not Found\n"]
        environ["SCRIPT_NAME"], environ["PATH_INFO"] = mount, path[len(mount):] or "/"
        if environ.get("HTTP_AUTHORIZATION") != f"Token {CONFIG['token']}":
            # not ClusterLab's own calls: the jupyter server's token (the proxy passes the header on) is no
            # business of Label Studio's, which would read "token <it>" as a bad token of its own
            environ.pop("HTTP_AUTHORIZATION", None)
        if environ["PATH_INFO"].startswith(ONLINE_ONLY):
            start_response("404 Not Found", [("Content-Type", "application/json"), ("Content-Length", "2")])
            return [b"{}"]
        page = {}

        def start(status, headers, exc_info=None):
            kind = next((v.split(";")[0] for k, v in headers if k.lower() == "content-type"), "")
            if kind in REWRITTEN:
                page.update(status=status, headers=headers, exc_info=exc_info, rewrite=REWRITTEN[kind])
                return lambda data: None  # (Django writes through the iterable only)
            return start_response(status, headers, exc_info)

        body = app(environ, start)
        if not page:
            return body
        try:
            html = page["rewrite"](b"".join(body), mount)
        finally:
            getattr(body, "close", lambda: None)()
        headers = [(k, v) for k, v in page["headers"] if k.lower() != "content-length"]
        start_response(page["status"], headers + [("Content-Length", str(len(html)))], page["exc_info"])
        return [html]

    return serve


def page_at_origin(html: bytes, mount: str) -> bytes:
    """Label Studio's page, its ``APP_SETTINGS.hostname`` a whole URL at the browser's own origin.

    Its app takes ``new URL(hostname)`` (for its router's base path) and throws, leaving a blank page, when
    ``hostname`` is a path alone; but the origin the browser sees (the hub's) is not Label Studio's to know.
    """
    return html.replace(f'hostname: "{mount}",'.encode(), f'hostname: window.location.origin + "{mount}",'.encode())


def fonts_under_mount(css: bytes, mount: str) -> bytes:
    """Its app's style sheet with its fonts under the mount: it names them ``url(/static/fonts/…)``, from the
    site's root, which is the hub's (two 404s per page, and the page in a fallback font)."""
    return css.replace(b"url(/static/", f"url({mount}/static/".encode())


REWRITTEN = {"text/html": page_at_origin, "text/css": fonts_under_mount}


def database(home: pathlib.Path) -> pathlib.Path:
    """Label Studio's SQLite database in a user's Label Studio ``home``."""
    return home / "data" / "label_studio.sqlite3"


def _setup(config: dict) -> None:
    home = pathlib.Path(config["home"])
    os.environ.update(OFFLINE_ENV)
    os.environ.update({
        "LABEL_STUDIO_BASE_DATA_DIR": str(home / "data"),
        "DATABASE_NAME": str(database(home)),
        "LOCAL_FILES_DOCUMENT_ROOT": str(config["document_root"]),
        "DJANGO_SETTINGS_MODULE": "label_studio.core.settings.label_studio",
    })
    os.environ.pop("LABEL_STUDIO_HOST", None)
    os.environ.pop("HOST", None)
    import label_studio

    sys.path.insert(0, str(pathlib.Path(label_studio.__file__).parent))  # as label_studio.server does
    import django

    django.setup()
    from django.conf import settings

    # links, assets and redirects under the mount, as the browser asks for them (through the proxy)
    settings.HOSTNAME = settings.FRONTEND_HOSTNAME = settings.FORCE_SCRIPT_NAME = config["mount"].rstrip("/")
    settings.INTERNAL_PORT = str(config["port"])
    # its cookies on its own path, not on the whole site (the hub's, other users' servers)
    settings.SESSION_COOKIE_PATH = settings.CSRF_COOKIE_PATH = config["mount"].rstrip("/") + "/"
    middleware = list(settings.MIDDLEWARE)
    middleware.insert(middleware.index("django.contrib.auth.middleware.AuthenticationMiddleware") + 1,
                      f"{__name__}.AutoLogin")
    settings.MIDDLEWARE = middleware


def _version_path(template: pathlib.Path) -> pathlib.Path:
    return template.with_name(template.name + ".version")


def template_refusal(template: pathlib.Path, version: str) -> str | None:
    """Why ``template`` cannot be a first start's database under Label Studio ``version``; None: it can."""
    if not template.is_file():
        return f"no template {template}"
    try:
        made_by = _version_path(template).read_text().strip()
    except OSError:
        return f"no {_version_path(template).name} beside the template"
    if made_by != version:
        return f"the template is Label Studio {made_by}'s, this is {version}"
    return None


def seed_database(database: pathlib.Path, template: pathlib.Path, version: str) -> bool:
    """A first start's database: a copy of the template (the user's own file, 0600), unless there is one
    already or the template does not fit (:func:`template_refusal`: then Label Studio migrates)."""
    if database.exists():
        return False
    why = template_refusal(template, version)
    if why is not None:
        print(f"ClusterLab: a first start, migrating Label Studio's database ({why})", file=sys.stderr, flush=True)
        return False
    database.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    part = database.with_name(database.name + ".part")  # a whole copy or none, should this process die
    with open(template, "rb") as source, open(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
        os.fchmod(f.fileno(), 0o600)
        shutil.copyfileobj(source, f)
    os.replace(part, database)
    print(f"ClusterLab: a first start, its database copied from {template}", file=sys.stderr, flush=True)
    return True


def make_template(template: pathlib.Path) -> None:
    """Label Studio's database, migrated and empty, to ``template`` (0444) and its version beside it.

    Migrated in a scratch home, which is removed with its secret key; it refuses a database with rows in any
    table but :data:`TEMPLATE_ROWS` (a user, a token, an organization, a session) or holding that key.
    """
    import importlib.metadata

    os.umask(0o022)
    with tempfile.TemporaryDirectory(prefix="clusterlab-template-") as home:
        _setup({"home": home, "document_root": home, "mount": "/", "port": 0})
        from django.conf import settings
        from django.db import connection
        from label_studio.server import _apply_database_migrations

        _apply_database_migrations()
        connection.close()
        migrated = sqlite3.connect(database(pathlib.Path(home)))
        part = template.with_name(template.name + ".part")
        part.unlink(missing_ok=True)
        copy = sqlite3.connect(part)
        with migrated, copy:
            migrated.backup(copy)
        copy.execute("VACUUM")
        tables = [t for (t,) in copy.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        filled = sorted(t for t in tables if copy.execute(f'SELECT 1 FROM "{t}" LIMIT 1').fetchone())
        copy.close()
        migrated.close()
        wrong = [f"rows in {t}" for t in filled if t not in TEMPLATE_ROWS]
        if settings.SECRET_KEY.encode() in part.read_bytes():
            wrong.append("its secret key")
        if wrong:
            part.unlink()
            sys.exit(f"ClusterLab: no template: a database shared by all users must not hold {', '.join(wrong)}")
    os.chmod(part, 0o444)
    os.replace(part, template)
    _version_path(template).write_text(importlib.metadata.version("label-studio") + "\n")
    print(f"ClusterLab: Label Studio's migrated, empty database in {template} (rows in {', '.join(filled)})")


def _migrate_and_init(config: dict) -> None:
    from label_studio.server import _apply_database_migrations

    _apply_database_migrations()
    from organizations.models import Organization
    from rest_framework.authtoken.models import Token
    from users.models import User

    user = User.objects.filter(email=config["email"]).first()
    if user is None:
        user = User.objects.create_user(email=config["email"], password=None)
        user.set_unusable_password()
        user.is_staff = user.is_superuser = True
        user.save()
    org = Organization.objects.first()
    if org is None:
        org = Organization.create_organization(created_by=user, title="ClusterLab", legacy_api_tokens_enabled=True)
    elif not org.has_user(user):
        org.add_user(user)
    jwt = getattr(org, "jwt", None)  # legacy API tokens (Authorization: Token ...) for ClusterLab's calls
    if jwt is not None and not jwt.legacy_api_tokens_enabled:
        jwt.legacy_api_tokens_enabled = True
        jwt.save()
    user.active_organization = org
    user.save(update_fields=["active_organization"])
    Token.objects.filter(user=user).delete()
    Token.objects.create(user=user, key=config["token"])
    _move_task_urls(config.get("old_mount"), config["mount"])


def _move_task_urls(old_mount: str | None, mount: str) -> None:
    """Tasks name their picture by its URL, which holds the mount: a new port or base URL moves them."""
    if not old_mount or old_mount.rstrip("/") == mount.rstrip("/"):
        return
    from tasks.models import Task

    old, new = old_mount.rstrip("/") + "/data/", mount.rstrip("/") + "/data/"
    for task in Task.objects.all().iterator():
        data = {k: new + v[len(old):] if isinstance(v, str) and v.startswith(old) else v
                for k, v in task.data.items()}
        if data != task.data:
            task.data = data
            task.save(update_fields=["data"])


def _stop_when_idle(server, idle_timeout: float) -> None:
    interval = max(0.2, min(5.0, idle_timeout / 4))
    while True:
        time.sleep(interval)
        if time.monotonic() - LAST_REQUEST[0] > idle_timeout:
            print(f"ClusterLab: no request for {idle_timeout:g} s, stopping", file=sys.stderr, flush=True)
            server.shutdown()
            return


def main() -> None:
    if sys.argv[1:2] == ["--template"]:
        return make_template(pathlib.Path(sys.argv[2]).resolve() if sys.argv[2:] else TEMPLATE)
    config = json.loads(sys.stdin.readline())
    sys.stdin.close()
    CONFIG.update(config)
    os.umask(0o077)  # its database, media and secret key: the user's only
    import importlib.metadata

    seed_database(database(pathlib.Path(config["home"])), TEMPLATE, importlib.metadata.version("label-studio"))
    _setup(config)
    _migrate_and_init(config)

    from django.core.servers.basehttp import WSGIRequestHandler, WSGIServer
    from django.core.wsgi import get_wsgi_application

    class Server(socketserver.ThreadingMixIn, WSGIServer):
        daemon_threads = True

    server = Server(("127.0.0.1", int(config["port"])), WSGIRequestHandler, ipv6=False)
    server.set_app(under_mount(get_wsgi_application(), config["mount"]))
    LAST_REQUEST[0] = time.monotonic()
    if float(config.get("idle_timeout") or 0) > 0:
        threading.Thread(target=_stop_when_idle, args=(server, float(config["idle_timeout"])), daemon=True).start()
    print(f"ClusterLab: Label Studio listening on 127.0.0.1:{config['port']}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
