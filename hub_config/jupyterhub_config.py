# ClusterLab hub: the embedded default.
#
# `make run` starts JupyterHub with this file. Out of the box it needs nothing
# but this checkout: SQLite, NativeAuthenticator, servers as local processes.
# Everything it writes at run time lives under one data directory, so that
# deleting that directory resets the hub.
#
# Environment variables read here (all optional):
#   CLUSTERLAB_DATA_DIR        runtime state (default: .clusterlab/ in the checkout)
#   CLUSTERLAB_DB_URL          the hub's database as an SQLAlchemy URL (default: SQLite in the
#                              data directory); a site's PostgreSQL, e.g.
#                              postgresql+pg8000://hub:PASSWORD@dbhost/jupyterhub (docs/hub-database.md)
#   CLUSTERLAB_PORT            public port (default 8000); the hub's own API
#                              takes PORT+1 and the proxy's API PORT+2
#   CLUSTERLAB_IP              address to listen on (default 127.0.0.1)
#   CLUSTERLAB_BACKEND         where servers run: local (default), slurm or kubernetes
#   CLUSTERLAB_HUB_IP          address the hub's API listens on for servers
#                              (default 127.0.0.1; on a Slurm cluster, one the
#                              compute nodes can reach)
#   CLUSTERLAB_POLL_INTERVAL   seconds between checks that each server still runs (30);
#                              on Slurm one squeue answers them all
#   CLUSTERLAB_CREATE_UNIX_USERS  "1" creates a missing Unix account for a hub user
#                              before their first server, where servers run as each
#                              user's account (a root hub: local or slurm). Default:
#                              on for the local backend as root (said in the log),
#                              off otherwise
#   CLUSTERLAB_ALLOW_SIGNUP_WITH_SHARED_ACCOUNT  a hub not run as root runs every user
#                              as its own Unix account, so sign-up is off; "1" opens it
#                              knowingly, for people who trust each other
#   CLUSTERLAB_ADMIN_PASSWORD  create/reset the `admin` account with this password
#                              (unset on the first start: a random one is written
#                              to <data dir>/hub/admin-password)
#   CLUSTERLAB_LOCAL_GPUS      local backend: GPU ids to lend, e.g. "0,1"
#                              (default: the GPUs nvidia-smi lists)
#   CLUSTERLAB_IDLE_TIMEOUT    seconds of inactivity before a server is culled (3600)
#   CLUSTERLAB_MAX_SERVERS_PER_USER, CLUSTERLAB_MAX_GPUS_PER_USER   quotas (3, 4; 0: none)
#   CLUSTERLAB_MAX_CONCURRENT_TRIALS  quota: trials one experiment may run at once (8); passed to the servers
#   CLUSTERLAB_DATASETS_QUOTA_GB  quota: GB a user's datasets may hold (none); passed to the servers
#   CLUSTERLAB_SITE_DATASETS   the site's shared datasets (/etc/clusterlab/datasets); passed to the servers
#   CLUSTERLAB_K8S_USER_NAMESPACES  kubernetes: 1 (default): each user in a namespace of their own,
#                              <hub namespace>-<user>, the boundary between users; 0: one shared
#                              namespace, where users can reach each other's jobs and home volumes
#   CLUSTERLAB_K8S_NAMESPACE   kubernetes, shared namespace only: the users' namespace (default: the hub pod's own)
#   CLUSTERLAB_K8S_IMAGE       kubernetes: the single-user image, with ClusterLab installed
#                              (a profile's kubernetes.image replaces it for that size)
#   CLUSTERLAB_PROFILES        instance sizes file (default: profiles.yaml beside this file;
#                              on slurm, /etc/clusterlab/profiles.yaml if `make slurm` wrote it)
import logging
import os
import signal
import sys
from pathlib import Path

from clusterlab_spawner.accounts import hub_account, shared_account_notice, warn_if_unreachable_by_users
from clusterlab_spawner.auth import TEMPLATES as HUB_TEMPLATES
from clusterlab_spawner.hub_db import use_write_ahead_log
from clusterlab_spawner.local import parse_gpu_list
from clusterlab_spawner.profiles import load_profiles

c = get_config()  # noqa: F821 (provided by JupyterHub)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = Path(os.environ.get("CLUSTERLAB_DATA_DIR", REPO / ".clusterlab")).resolve()
PORT = int(os.environ.get("CLUSTERLAB_PORT", "8000"))
IP = os.environ.get("CLUSTERLAB_IP", "127.0.0.1")
BACKEND = os.environ.get("CLUSTERLAB_BACKEND", "local")
# `make slurm` writes sizes that fit its cluster's nodes to /etc/clusterlab/profiles.yaml
SITE_PROFILES = Path("/etc/clusterlab/profiles.yaml")
DEFAULT_PROFILES = SITE_PROFILES if BACKEND == "slurm" and SITE_PROFILES.exists() else HERE / "profiles.yaml"
PROFILES = Path(os.environ.get("CLUSTERLAB_PROFILES", DEFAULT_PROFILES)).resolve()
VENV_BIN = Path(sys.executable).parent  # the hub's virtual environment serves the users too

(DATA / "hub").mkdir(parents=True, exist_ok=True)
(DATA / "hub").chmod(0o700)  # the database, cookie secret and admin password are the hub's alone
os.environ["CLUSTERLAB_DATA_DIR"] = str(DATA)  # the spawner's default users_root reads it

# --- where the hub listens and keeps its state ------------------------------
c.JupyterHub.bind_url = f"http://{IP}:{PORT}"
HUB_IP = os.environ.get("CLUSTERLAB_HUB_IP", "127.0.0.1")
c.JupyterHub.hub_bind_url = f"http://{HUB_IP}:{PORT + 1}"
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{PORT + 2}"
c.ConfigurableHTTPProxy.command = [str(REPO / "node_modules" / ".bin" / "configurable-http-proxy")]
c.ConfigurableHTTPProxy.pid_file = str(DATA / "hub" / "proxy.pid")
c.JupyterHub.db_url = os.environ.get("CLUSTERLAB_DB_URL") or f"sqlite:///{DATA / 'hub' / 'jupyterhub.sqlite'}"
if not os.environ.get("CLUSTERLAB_DB_URL"):
    use_write_ahead_log()  # a commit must not wait for fsync on the event loop (clusterlab_spawner/hub_db.py)
c.JupyterHub.cookie_secret_file = str(DATA / "hub" / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(DATA / "hub" / "jupyterhub.pid")
# ClusterLab's page.html first: its name on every hub page, and colours and labels that pass WCAG 2.1 AA
c.JupyterHub.template_paths = [str(HUB_TEMPLATES)]
# Servers outlive a restart of the hub: it finds them again from its database.
c.JupyterHub.cleanup_servers = False

# --- login ------------------------------------------------------------------
# NativeAuthenticator (sign-up at /hub/signup, approval by an admin at
# /hub/authorize, bcrypt-hashed passwords), with its login form mended for
# JupyterHub 6 (see spawner/clusterlab_spawner/auth.py). The allow rule is the
# admin's approval of each sign-up.
# A real site swaps this for its directory, e.g.:
#   c.JupyterHub.authenticator_class = "pam"                  # Unix accounts
#   c.JupyterHub.authenticator_class = "ldapauthenticator.LDAPAuthenticator"
#   c.JupyterHub.authenticator_class = "generic-oauth"        # oauthenticator
# and sets an allow rule (allowed_users, allowed_groups or allow_all).
c.JupyterHub.authenticator_class = "clusterlab"
c.Authenticator.admin_users = {"admin"}
c.ClusterLabAuthenticator.admin_password = os.environ.get("CLUSTERLAB_ADMIN_PASSWORD", "")
# Without one, the first start makes `admin` a random password, kept here (mode 0600).
c.ClusterLabAuthenticator.first_admin_password_file = str(DATA / "hub" / "admin-password")

# --- whose Unix account a server runs as ------------------------------------------
# A root hub runs each user's server and jobs as the Unix account of their name
# (local: setuid; slurm: sudo -u), never a system account (c.ClusterSpawner.min_uid,
# denied_unix_users). The embedded default makes a missing account itself when root.
ROOT = os.geteuid() == 0
CREATE_DEFAULT = "1" if ROOT and BACKEND == "local" else "0"
c.ClusterSpawner.create_unix_users = os.environ.get("CLUSTERLAB_CREATE_UNIX_USERS", CREATE_DEFAULT) == "1"
if ROOT and BACKEND != "kubernetes":
    warn_if_unreachable_by_users(VENV_BIN)
if ROOT and BACKEND != "kubernetes" and c.ClusterSpawner.create_unix_users:
    logging.getLogger("JupyterHub").warning(
        "ClusterLab: each hub user's server runs as the Unix account of their name, and a missing one "
        "is created (useradd, home mode 0700): CLUSTERLAB_CREATE_UNIX_USERS=0 stops that")
# Not root: one account runs everyone's servers. Say so on every page, and keep
# sign-up closed unless the site opens it knowingly.
if not ROOT and BACKEND in ("local", "slurm"):
    c.ClusterLabAuthenticator.shared_unix_account = hub_account()
    c.ClusterLabAuthenticator.allow_signup_with_shared_account = (
        os.environ.get("CLUSTERLAB_ALLOW_SIGNUP_WITH_SHARED_ACCOUNT", "0") == "1")
    c.JupyterHub.template_vars = {"announcement": shared_account_notice(hub_account())}

# --- instance sizes and the spawner -------------------------------------------
load_profiles(PROFILES)  # fail at start, naming the profile and field, if the file is wrong
c.JupyterHub.spawner_class = f"clusterlab-{BACKEND}"
c.ClusterSpawner.profiles_file = str(PROFILES)
c.ClusterSpawner.max_servers_per_user = int(os.environ.get("CLUSTERLAB_MAX_SERVERS_PER_USER", "3"))
c.ClusterSpawner.max_gpus_per_user = int(os.environ.get("CLUSTERLAB_MAX_GPUS_PER_USER", "4"))
c.JupyterHub.allow_named_servers = True
c.Spawner.default_url = "/lab"
c.Spawner.args = ["--LabApp.news_url=None"]  # cluster nodes rarely reach the internet
# JupyterHub >= 5 passes no PATH to servers: name the command by its full path.
# clusterlab-singleuser is jupyterhub-singleuser without the start-up imports that
# are waste for it (about half of its start-up: docs/performance.md).
c.Spawner.cmd = [str(VENV_BIN / "clusterlab-singleuser")]
c.Spawner.environment = {"PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin"}
# what the servers' job services read from the hub's site settings
SERVER_SETTINGS = {k: os.environ[k] for k in ("CLUSTERLAB_MAX_CONCURRENT_TRIALS", "CLUSTERLAB_DATASETS_QUOTA_GB",
                                              "CLUSTERLAB_SITE_DATASETS") if k in os.environ}
c.Spawner.environment.update(SERVER_SETTINGS)

c.Spawner.poll_interval = int(os.environ.get("CLUSTERLAB_POLL_INTERVAL", "30"))

# Local backend: a root hub starts each server in its account's home; one that is
# not root, in <data dir>/users/<name>.
c.LocalClusterSpawner.users_root = str(DATA / "users")
if "CLUSTERLAB_LOCAL_GPUS" in os.environ:
    c.LocalClusterSpawner.gpu_ids = parse_gpu_list(os.environ["CLUSTERLAB_LOCAL_GPUS"])

# Slurm backend: each server is a batch job run as the user's Unix account
# (through sudo when the hub runs as root), in their home folder.
if BACKEND == "slurm":
    # imported here, before the hub builds its handlers: it replaces batchspawner's port-report API
    from clusterlab_spawner import slurm  # noqa: F401

# Kubernetes backend: each server is a pod (KubeSpawner) sized by its profile
# (requests/limits, nvidia.com/gpu, node selector, tolerations, a memory-backed
# /dev/shm), with the user's volume claim-<user> as the home folder. Under the
# Zero to JupyterHub chart this file is not read: hub_config/kubernetes/values.yaml
# sets the same things.
if BACKEND == "kubernetes":
    # a namespace per user (the spawner's default), holding their server, jobs and volume
    c.KubeClusterSpawner.enable_user_namespaces = os.environ.get("CLUSTERLAB_K8S_USER_NAMESPACES", "1") != "0"
    if os.environ.get("CLUSTERLAB_K8S_NAMESPACE"):
        c.KubeClusterSpawner.namespace = os.environ["CLUSTERLAB_K8S_NAMESPACE"]
    if os.environ.get("CLUSTERLAB_K8S_IMAGE"):
        c.KubeClusterSpawner.image = os.environ["CLUSTERLAB_K8S_IMAGE"]
    # the image brings its own clusterlab-singleuser and PATH, not the hub's environment
    c.KubeClusterSpawner.cmd = ["clusterlab-singleuser"]
    c.KubeClusterSpawner.environment = dict(SERVER_SETTINGS)
    c.KubeClusterSpawner.storage_capacity = "10Gi"  # each user's home volume, made on first start

# --- idle culling ---------------------------------------------------------------
# JupyterHub stops its services with SIGINT and gives them 30 s before SIGTERM.
# Started where SIGINT is ignored (`make run &` in a script, some IDE and CI
# runners), the hub would hand that on to the culler, and every stop would wait
# the whole 30 s. The hub catches SIGINT itself once it runs; what it starts
# gets the default back.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
IDLE_TIMEOUT = int(os.environ.get("CLUSTERLAB_IDLE_TIMEOUT", "3600"))
c.JupyterHub.services = [
    {
        "name": "idle-culler",
        "command": [
            sys.executable, "-m", "jupyterhub_idle_culler",
            f"--timeout={IDLE_TIMEOUT}",
            f"--cull-every={max(5, min(300, IDLE_TIMEOUT // 2))}",
        ],
    }
]
c.JupyterHub.load_roles = [
    {
        "name": "idle-culler",
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
        "services": ["idle-culler"],
    }
]
