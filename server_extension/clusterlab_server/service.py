"""The job service: a template plus parameters becomes a cluster job, tracked.

Used by the REST API and by the ``clusterlab`` CLI alike, so both give the
same answers and the same errors. Creating a job goes:

validate (template, name, parameters against the template's JSON Schema, paths
inside the user's roots, a size this backend can run) -> make the job folder under a temporary name
(``job.json``, ``params.json``, a size-capped snapshot of the workspace code,
``output/``, ``job.sh``) -> rename it into place -> submit -> record it.

Anything refused is refused before the folder exists; a scheduler that refuses
leaves no folder and no record. Parameters reach the job only as
``params.json``: nothing a user typed is ever put on a command line.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import platform
import re
import secrets
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema
from clusterlab_spawner.options import OptionsError, validate_user_options
from clusterlab_spawner.profiles import Profile, load_profiles

from .backends import BackendError, make_backend
from .datasets.store import remove_tree
from .progress import MetricsFiles
from .registry import Registry, Template
from .store import DEFAULT_MAX_RESTARTS, FINAL, STATUSES, Job, JobStore, dumps, utcnow

NAME_RULE = re.compile(r"^[A-Za-z0-9_]+$")
MAX_PARAMS_BYTES = 64 * 1024
MAX_RESTARTS_LIMIT = 20
DEFAULT_MAX_CONCURRENT_TRIALS = 8  # a user's trials at once, per experiment, unless the site says otherwise
DEFAULT_PROJECT = "default"
MAX_INPUTS = 16
# parameter formats whose value may name a dataset version ("shapes:2") or an earlier job ("job:<id>"),
# mounted at input/<parameter>/, instead of a path
INPUT_FORMATS = ("dataset", "job-output")
JOB_FIELDS = {"template", "name", "params", "profile", "hours", "max_restarts", "inputs", "project"}

# what the code snapshot leaves out: data, checkpoints, outputs, environments
SNAPSHOT_SUFFIXES = {".py", ".ipynb", ".sh", ".yaml", ".yml", ".json", ".toml", ".cfg", ".ini", ".txt", ".md", ".r"}
SNAPSHOT_SKIP_DIRS = {
    "data", "datasets", "checkpoints", "output", "outputs", "runs", "logs", "wandb", "mlruns",
    "node_modules", "__pycache__", "venv", "env", "site-packages",
}


def new_id() -> str:
    """A job's (or an experiment's) id: when, and 6 random hex digits."""
    return f"{utcnow():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def check_name(name: Any, field: str = "name") -> str:
    if not isinstance(name, str) or not NAME_RULE.match(name) or len(name) > 100:
        raise JobError(400, f"{field} must be 1-100 letters, digits or underscores (A-Z, a-z, 0-9, _)", field)
    return name


def check_max_restarts(value: Any, field: str = "max_restarts") -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_RESTARTS_LIMIT:
        raise JobError(400, f"{field} must be an integer from 0 to {MAX_RESTARTS_LIMIT}", field)
    return value


def check_project(value: Any, field: str = "project") -> str:
    """A project's name (the job-name rule); None means the default project."""
    return DEFAULT_PROJECT if value is None else check_name(value, field)


def check_page(limit: int, offset: int) -> None:
    if not (1 <= limit <= 1000):
        raise JobError(400, "limit must be from 1 to 1000", "limit")
    if offset < 0:
        raise JobError(400, "offset must be 0 or more", "offset")


class JobError(Exception):
    """A refused request: ``status`` is the HTTP status, ``field`` the field at fault."""

    def __init__(self, status: int, message: str, field: str = ""):
        super().__init__(message)
        self.status, self.message, self.field = status, message, field

    def to_json(self) -> dict:
        return {"error": self.message, "field": self.field}


@dataclasses.dataclass
class Settings:
    """Where things are; the server extension and the CLI fill it the same way."""

    jobs_root: Path
    workspace: Path
    template_paths: list[Path]
    profiles_file: Path
    backend: str = "local"
    extra_roots: list[Path] = dataclasses.field(default_factory=list)
    snapshot_max_bytes: int = 20 * 1024 * 1024
    slurm_bin_dir: str = "/usr/bin"
    max_concurrent_trials: int = DEFAULT_MAX_CONCURRENT_TRIALS
    # the user's datasets (default: beside the jobs, ~/.clusterlab/datasets), the site's shared ones, and
    # the most bytes the user's dataset store may hold (None: no quota)
    datasets_root: Path | None = None
    site_datasets: Path = Path("/etc/clusterlab/datasets")
    datasets_quota_bytes: int | None = None

    def __post_init__(self):
        if self.datasets_root is None:
            self.datasets_root = self.jobs_root.parent / "datasets"

    @classmethod
    def from_environment(cls, **overrides) -> Settings:
        """Defaults shared by the extension and the CLI (environment set by the hub)."""
        home = Path(os.environ.get("HOME", Path.home()))
        package = Path(__file__).resolve().parent
        shipped = package / "templates" if (package / "templates").is_dir() else package.parents[1] / "templates"
        site = Path(os.environ.get("CLUSTERLAB_SITE_TEMPLATES", "/etc/clusterlab/templates"))
        repo_profiles = package.parents[1] / "hub_config" / "profiles.yaml"
        backend = os.environ.get("CLUSTERLAB_JOB_BACKEND") or ("slurm" if os.environ.get("SLURM_JOB_ID") else "local")
        values = dict(
            jobs_root=Path(os.environ.get("CLUSTERLAB_JOBS_ROOT", home / ".clusterlab" / "jobs")),
            workspace=Path(os.environ.get("CLUSTERLAB_WORKSPACE", home)),
            template_paths=[shipped, site, home / ".clusterlab" / "templates"],
            profiles_file=Path(os.environ.get("CLUSTERLAB_PROFILES", repo_profiles)),
            backend=backend,
            max_concurrent_trials=int(os.environ.get("CLUSTERLAB_MAX_CONCURRENT_TRIALS")
                                      or DEFAULT_MAX_CONCURRENT_TRIALS),
            datasets_root=Path(os.environ["CLUSTERLAB_DATASETS_ROOT"]) if os.environ.get("CLUSTERLAB_DATASETS_ROOT")
            else None,
            site_datasets=Path(os.environ.get("CLUSTERLAB_SITE_DATASETS", "/etc/clusterlab/datasets")),
            datasets_quota_bytes=(int(float(os.environ["CLUSTERLAB_DATASETS_QUOTA_GB"]) * 1e9)
                                  if os.environ.get("CLUSTERLAB_DATASETS_QUOTA_GB") else None),
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def installed_packages() -> list[str]:
    """``name==version`` of every package on ``sys.path``, from its ``.dist-info`` folder's name, which pip
    writes as ``<name>-<version>.dist-info``: 0.5 ms where reading each package's METADATA (importlib.metadata)
    took 0.1-0.7 s, paid by the first job a server submits (AI Studio's validation, in its benchmark)."""
    found = set()
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in names:
            if name.endswith((".dist-info", ".egg-info")):
                package, _, version = name.rsplit(".", 1)[0].partition("-")
                if package and version:
                    found.add(f"{package.lower()}=={version}")
    return sorted(found)


def environment_record() -> dict:
    """What the job ran with: Python, platform, and a digest of the installed packages."""
    packages = installed_packages()
    return {
        "python": platform.python_version(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "packages_sha256": hashlib.sha256("\n".join(packages).encode()).hexdigest(),
        "packages_count": len(packages),
    }


def reference(resolved: dict) -> str:
    """A pinned input as a parameter's value: ``"shapes:2"`` or ``"job:<id>"``."""
    return f"job:{resolved['job']}" if "job" in resolved else f"{resolved['dataset']}:{resolved['version']}"


def input_entry(resolved: dict) -> dict:
    """A pinned input as a request names it again (a rerun, a trial)."""
    if "job" in resolved:
        return {"job": resolved["job"], "as": resolved["as"]}
    return {"dataset": resolved["dataset"], "version": resolved["version"], "as": resolved["as"]}


def private_folder(path: Path) -> None:
    """Make ``path`` (and a missing parent) a folder only its owner can enter (0700)."""
    for folder in (path.parent, path):
        if not folder.exists():
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            folder.chmod(0o700)  # mkdir's mode is cut by the umask
    path.chmod(0o700)


@dataclasses.dataclass
class Submission:
    """A job request, checked: ``inputs`` are (entry, field) pairs, checked but not yet pinned;
    ``param_inputs`` the parameters whose value names a dataset or a job (key -> entry)."""

    template: Template
    name: str
    params: dict
    choice: Any
    project: str
    inputs: list[tuple[dict, str]]
    param_inputs: dict[str, dict]


class JobService:
    def __init__(self, settings: Settings):
        self.settings = settings
        # job folders hold code, parameters and logs: the user's alone, whatever the umask
        private_folder(self.settings.jobs_root)
        self.store = JobStore(settings.jobs_root / "jobs.sqlite")
        self.registry = Registry.load(settings.template_paths)
        self.backend = make_backend(settings.backend, settings.slurm_bin_dir, settings.profiles_file)
        self._environment: dict | None = None
        self._refreshed_at = float("-inf")
        self.metrics_files = MetricsFiles()
        self._workspace_real: Path | None = None

    @functools.cached_property
    def datasets(self):
        """The user's datasets (and the site's), which jobs mount as inputs."""
        from .datasets.service import DatasetService  # it builds on this service: imported when first used

        return DatasetService(self)

    # ----- what can be run --------------------------------------------------------------

    @property
    def profiles(self) -> dict[str, Profile]:
        return {p.id: p for p in load_profiles(self.settings.profiles_file)}

    def availability(self, profiles: dict[str, Profile] | None = None) -> dict[str, dict[str, str]]:
        """Per profile id: ``{"state": "free" | "queue" | "impossible", "reason": ...}``, as the backend sees it.

        The one rule of what a job may ask for: the job form greys out what is
        impossible here, submissions (API, CLI, reruns) refuse it, and a job that
        names no size never gets it. May wait on the scheduler (sinfo, cached).
        """
        profiles = self.profiles if profiles is None else profiles
        now = self.backend.availability(list(profiles.values()))
        return {profile_id: now.state(profile_id) for profile_id in profiles}

    def default_profile(self, template: Template, availability: dict[str, dict] | None = None) -> tuple[str, str]:
        """The size a job of ``template`` gets when it names none, and why, in words.

        The template's default if it can run here, else the first size that can (as the
        job form picks from the same ``availability``). When none can, the template's
        default all the same: submitting it is then refused with the reason.
        """
        availability = self.availability() if availability is None else availability
        runnable = [p for p, now in availability.items() if now["state"] != "impossible"]
        wanted = template.default_profile if template.default_profile in availability else ""
        if wanted in runnable:
            return wanted, "the template's default"
        if not runnable:
            return wanted or next(iter(availability)), "no size can run here"
        if not wanted:
            return runnable[0], "the first size that can run here (the template names none)"
        return runnable[0], (f"the first size that can run here; the template's default, {wanted}, cannot: "
                             f"{availability[wanted]['reason']}")

    def template(self, template_id: Any, field: str = "template") -> Template:
        template = self.registry.templates.get(template_id) if isinstance(template_id, str) else None
        if template is None:
            known = ", ".join(sorted(self.registry.templates)) or "none"
            raise JobError(404 if field == "id" else 400,
                           f"unknown template {str(template_id)[:60]!r}: known ones are {known}", field)
        return template

    @property
    def roots(self) -> list[Path]:
        return [self.settings.workspace.resolve(), *(r.resolve() for r in self.settings.extra_roots)]

    def resolve_path(self, value: str) -> Path:
        """A path parameter, resolved; JobError unless it exists inside the user's roots."""
        path = (self.settings.workspace / value).resolve()
        if not any(path == root or root in path.parents for root in self.roots):
            raise ValueError(f"{value} is outside your workspace ({self.settings.workspace})")
        if not path.exists():
            raise ValueError(f"{value} does not exist in your workspace")
        return path

    # ----- validation -------------------------------------------------------------------

    def validate(self, request: Any) -> Submission:
        if not isinstance(request, dict):
            raise JobError(400, "the body must be a JSON object with template, name, params and profile")
        unknown = sorted(set(request) - JOB_FIELDS)
        if unknown:
            raise JobError(400, f"unknown field {unknown[0]!r}", unknown[0])
        template = self.template(request.get("template"))
        name = check_name(request.get("name"))
        project = check_project(request.get("project"))
        params = request.get("params", {})
        if not isinstance(params, dict):
            raise JobError(400, "params must be a JSON object", "params")
        if len(json.dumps(params)) > MAX_PARAMS_BYTES:
            raise JobError(413, f"params are larger than {MAX_PARAMS_BYTES // 1024} KB", "params")
        params = {**template.defaults(), **params}
        self.check_params(template, params)
        param_inputs = self.param_inputs(template, params)
        inputs = self.check_inputs(request.get("inputs", []), taken=set(param_inputs))
        check_max_restarts(request.get("max_restarts", DEFAULT_MAX_RESTARTS))
        choice = self.choice(template, request.get("profile"), request.get("hours"))
        return Submission(template, name, params, choice, project, inputs, param_inputs)

    def check_inputs(self, entries: Any, taken: set[str] = frozenset(), field: str = "inputs"
                     ) -> list[tuple[dict, str]]:
        """A request's ``inputs``, each checked (it exists, it is the user's) but not pinned; their ``as``
        names must differ from each other and from ``taken`` (the parameters mounted as inputs)."""
        if not isinstance(entries, list):
            raise JobError(400, f"{field} must be a list of {{dataset, version, as}} or {{job, as}}", field)
        if len(entries) > MAX_INPUTS:
            raise JobError(400, f"{field}: at most {MAX_INPUTS} inputs", field)
        checked, names = [], set(taken)
        for n, entry in enumerate(entries):
            where = f"{field}.{n}"
            entry = self.datasets.check_input(entry, where)
            if entry["as"] in names:
                raise JobError(400, f"{where}.as: {entry['as']!r} is mounted twice (input/{entry['as']}/); "
                               "give each input its own as", f"{where}.as")
            names.add(entry["as"])
            checked.append((entry, where))
        return checked

    def param_inputs(self, template: Template, params: dict) -> dict[str, dict]:
        """The parameters of ``format: dataset`` or ``job-output`` whose value names a dataset version or a job
        (``"shapes:2"``, ``"shapes"``: its latest, ``"job:<id>"``), as input entries mounted as the key."""
        found = {}
        for key, schema in template.parameters.get("properties", {}).items():
            value = params.get(key)
            if schema.get("format") in INPUT_FORMATS and isinstance(value, str):
                entry = self._reference(value, f"params.{key}")
                if entry is not None:
                    found[key] = {**entry, "as": key}
        return found

    def _reference(self, value: str, field: str) -> dict | None:
        """``value`` as a checked input entry, None when it is a plain path; ValueError when it is neither."""
        entry = self.datasets.parse_ref(value)
        if entry is None:
            return None
        try:
            return self.datasets.check_input(entry, field)
        except JobError as e:
            if "job" in entry:
                raise ValueError(e.message) from None
            try:  # a folder of the workspace may look like a dataset's name
                self.resolve_path(value)
            except ValueError:
                raise ValueError(f"{value!r} is neither a dataset ({e.message}) nor a path in your workspace"
                                 ) from None
            return None

    def format_checker(self) -> jsonschema.FormatChecker:
        """Our formats: ``path`` (inside the user's roots), ``dataset`` and ``job-output`` (a reference or a path)."""
        checker = jsonschema.FormatChecker()

        @checker.checks("path", raises=ValueError)
        def _path(value):
            return not isinstance(value, str) or bool(self.resolve_path(value))

        @checker.checks("dataset", raises=ValueError)
        @checker.checks("job-output", raises=ValueError)
        def _input(value):
            return not isinstance(value, str) or self._reference(value, "") is not None or bool(
                self.resolve_path(value))

        return checker

    def check_params(self, template: Template, params: dict) -> None:
        """``params`` against the template's JSON Schema (paths inside the user's roots); JobError naming the field."""
        validator = jsonschema.Draft202012Validator(template.parameters, format_checker=self.format_checker())
        error = jsonschema.exceptions.best_match(validator.iter_errors(params))
        if error is None:
            return
        where = ".".join(str(p) for p in error.absolute_path)
        if error.validator == "required":
            where = re.findall(r"'([^']+)' is a required", error.message)[0]
        elif error.validator == "additionalProperties":
            extra = re.findall(r"'([^']+)'", error.message)
            where = extra[0] if extra else where
        cause = error.cause if isinstance(error.cause, ValueError) else None
        message = str(cause) if cause else error.message
        field = f"params.{where}" if where else "params"
        raise JobError(400, f"{where or 'params'}: {message}", field)

    def choice(self, template: Template, profile: Any, hours: Any):
        """The validated size and hours; a size the backend says can never run here is refused.

        Where the backend cannot tell (sinfo failing, Kubernetes), nothing is impossible
        and the scheduler has the last word.
        """
        profiles = self.profiles
        availability = self.availability(profiles)
        if profile is None:
            profile, _ = self.default_profile(template, availability)
        try:
            choice = validate_user_options({"profile": profile, "hours": hours}, profiles)
        except OptionsError as e:
            raise JobError(400, e.message, e.field or "profile") from None
        now = availability[choice.profile.id]
        if now["state"] == "impossible":
            raise JobError(400, f"{choice.profile.id} cannot run here: {now['reason']}", "profile")
        return choice

    # ----- creating a job ---------------------------------------------------------------

    def submit(self, request: Any, rerun_of: str | None = None, experiment: tuple[str, int] | None = None) -> Job:
        """Validate ``request`` and start it; ``experiment``: (its id, the trial number) for a trial."""
        submission = self.validate(request)
        template, params, choice = submission.template, dict(submission.params), submission.choice
        job_id = new_id()
        root = self.settings.jobs_root
        staging, folder = root / f".staging-{job_id}", root / job_id
        # pinned now: "shapes" becomes its latest version, a job's output is frozen, so that the record
        # (and a rerun) names exactly what this job saw
        inputs = [self.datasets.resolve_input(entry, field) for entry, field in submission.inputs]
        job_params = dict(params)
        for key, entry in submission.param_inputs.items():
            resolved = {**self.datasets.resolve_input(entry, f"params.{key}"), "param": key}
            inputs.append(resolved)
            job_params[key] = reference(resolved)
            params[key] = str(folder / "input" / key)  # what the template's code opens
        experiment_id, trial = experiment if experiment else (None, None)
        job = Job(
            id=job_id, name=submission.name, template=template.id, template_version=template.version,
            params=job_params, profile=choice.profile.id, hours=choice.hours,
            backend=self.backend.name, folder=str(folder), status="queued", rerun_of=rerun_of,
            submit_time=utcnow(), experiment_id=experiment_id, trial=trial,
            max_restarts=request.get("max_restarts", DEFAULT_MAX_RESTARTS), restarts=0, restart_history=[],
            project=submission.project, inputs=inputs,
        )
        try:
            self._write_folder(staging, folder, job, template, choice, params)
            staging.rename(folder)
        except BaseException:
            remove_tree(staging)
            remove_tree(folder)
            raise
        return self.launch(job)

    def launch(self, job: Job) -> Job:
        """Submit a job whose folder is ready (its ``job.sh``) and record it; a refusal removes the folder."""
        folder = Path(job.folder)
        try:
            job.scheduler_id = self.backend.submit(job, folder / "job.sh", folder / "log.txt", self._job_environment())
        except BackendError as e:
            remove_tree(folder)
            raise JobError(502, str(e), "profile") from None
        except BaseException:
            remove_tree(folder)
            raise
        self.store.add(job)
        return job

    def _write_folder(self, staging: Path, folder: Path, job: Job, template: Template, choice, params: dict) -> None:
        """``params``: what the job's code gets (inputs named by a parameter become their mounted folders)."""
        staging.mkdir(mode=0o700)
        (staging / "output").mkdir()
        self._mount_inputs(staging / "input", job.inputs)
        snapshot = self._snapshot(staging / "code")
        if self._environment is None:
            self._environment = environment_record()
        record = {
            **{k: v for k, v in job.to_json().items() if k not in ("status", "scheduler_id", "reason", "node")},
            "size": choice.profile.summary, "command": template.command(),
            "environment": self._environment, "snapshot": snapshot,
        }
        (staging / "job.json").write_text(dumps(record))
        (staging / "params.json").write_text(dumps(params))
        (staging / "job.sh").write_text(self.job_script(job, folder, template, choice))

    def _mount_inputs(self, where: Path, inputs: list[dict]) -> None:
        """``input/<as>``: a link to the frozen, read-only version (or job output) on a file system the job
        sees (this machine's; on Slurm the shared one), or, where the backend mounts volumes itself
        (Kubernetes: read-only subPath mounts), an empty folder for it to mount on. ``input/`` itself is
        read-only: a job adds nothing there."""
        where.mkdir()
        for entry in inputs:
            if getattr(self.backend, "mounts_inputs", False):
                (where / entry["as"]).mkdir()
            else:
                (where / entry["as"]).symlink_to(entry["path"], target_is_directory=True)
        where.chmod(0o555)

    def job_script(self, job: Job, folder: Path, template: Template, choice) -> str:
        """``job.sh`` for ``job`` in ``folder``: the backend's directives, our variables, the template's argv."""
        directives = self.backend.directives(job, folder / "log.txt", choice)
        return self._script(folder, template, directives, self._job_variables(folder, choice),
                            self.backend.launcher(choice))

    @staticmethod
    def _script(folder: Path, template: Template, directives: list[str], variables: dict,
                launcher: list[str] = ()) -> str:
        """The batch script: our paths and the template's argv, every word quoted.

        It carries its own variables, so that it runs the same from any backend,
        after a Slurm requeue, or by hand. ``launcher`` starts the template's processes
        across nodes (srun, for a size of several nodes). A run that Slurm requeued
        (SLURM_RESTART_COUNT, set by Slurm alone) says so in the log and in the folder's
        ``requeues``, which the job's card shows.
        """
        q = shlex.quote
        requeues = q(str(folder / "requeues"))
        return "\n".join([
            "#!/bin/bash",
            *directives,
            *(f"export {key}={q(value)}" for key, value in variables.items()),
            f"cd {q(str(folder / 'output'))} || exit 1",
            f"echo \"ClusterLab job $CLUSTERLAB_JOB_ID ({q(template.id)}) on $(hostname)\"",
            'if [ "${SLURM_RESTART_COUNT:-0}" -gt 0 ]; then',
            '  echo "ClusterLab: Slurm requeued this job (restart $SLURM_RESTART_COUNT, after its node failed or '
            'it was requeued); it continues from its last checkpoint on $SLURM_JOB_NODELIST"',
            f'  echo "$SLURM_RESTART_COUNT" > {requeues}',
            "fi",
            shlex.join([*launcher, *template.command()]),
            "status=$?",
            f"echo $status > {q(str(folder / 'exit_code.tmp'))} && mv {q(str(folder / 'exit_code.tmp'))} "
            f"{q(str(folder / 'exit_code'))}",
            "exit $status",
            "",
        ])

    def _job_variables(self, folder: Path, choice) -> dict[str, str]:
        profile = choice.profile  # a size of several nodes shares each node's cores among its processes there
        threads = str(max(1, profile.cpus // profile.tasks_per_node) if profile.multi_node else profile.cpus)
        return {
            "CLUSTERLAB_JOB_ID": folder.name,
            "CLUSTERLAB_JOB_DIR": str(folder),
            "CLUSTERLAB_PARAMS": str(folder / "params.json"),
            "CLUSTERLAB_CODE": str(folder / "code"),
            "CLUSTERLAB_OUTPUT": str(folder / "output"),
            "CLUSTERLAB_INPUT": str(folder / "input"),
            "CLUSTERLAB_WORKSPACE": str(self.settings.workspace),
            "OMP_NUM_THREADS": threads,
            "MKL_NUM_THREADS": threads,
        }

    @staticmethod
    def _job_environment() -> dict:
        # the server's own Jupyter and hub credentials are not the job's business
        return {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTERHUB_", "JPY_"))}

    def _snapshot(self, target: Path) -> dict:
        """Copy the workspace's code (not data, not checkpoints), up to the size cap."""
        workspace = self.settings.workspace.resolve()
        jobs_root = self.settings.jobs_root.resolve()
        budget, copied, skipped = self.settings.snapshot_max_bytes, 0, 0
        target.mkdir(parents=True, exist_ok=True)
        for dirpath, dirnames, filenames in os.walk(workspace):
            here = Path(dirpath)
            dirnames[:] = sorted(
                d for d in dirnames
                if not d.startswith(".") and d.lower() not in SNAPSHOT_SKIP_DIRS and (here / d).resolve() != jobs_root
            )
            for filename in sorted(filenames):
                source = here / filename
                if source.suffix.lower() not in SNAPSHOT_SUFFIXES or filename.startswith("."):
                    continue
                try:
                    size = source.stat().st_size
                except OSError:
                    continue
                if size > min(budget, 1024 * 1024):
                    skipped += 1
                    continue
                destination = target / source.relative_to(workspace)
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, destination)
                budget -= size
                copied += 1
        return {"files": copied, "bytes": self.settings.snapshot_max_bytes - budget, "skipped_large": skipped}

    # ----- following jobs ---------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        job = self.store.get(job_id) if isinstance(job_id, str) else None
        if job is None:
            raise JobError(404, f"no job {str(job_id)[:64]!r}", "id")
        return job

    def job_json(self, job: Job) -> dict:
        """A job as the API and the CLI show it: its record, and its progress from ``metrics.jsonl``.

        ``progress`` is None until the job has written a complete metrics line, else
        ``{"epoch", "epochs", "fraction" (0..1), "metrics": the latest line's}``.
        ``output_path``: the output folder relative to the workspace, for the file
        browser (None when the jobs root lies outside the workspace).
        ``tensorboard``: whether the job has written TensorBoard events (its
        ``output/tensorboard`` folder), so the panel offers TensorBoard only then.
        """
        output = self._metrics_path(job).parent
        return {**job.to_json(), "progress": self.metrics_files.progress(self._metrics_path(job)),
                "output_path": self.in_workspace(output), "tensorboard": (output / "tensorboard").is_dir()}

    def in_workspace(self, path: Path) -> str | None:
        """``path`` relative to the workspace, or None when outside it (symlinks resolved only if needed)."""
        if not path.is_relative_to(self.settings.workspace):
            if self._workspace_real is None:
                self._workspace_real = Path(os.path.realpath(self.settings.workspace))
            path = Path(os.path.realpath(path))
            if not path.is_relative_to(self._workspace_real):
                return None
            return path.relative_to(self._workspace_real).as_posix()
        return path.relative_to(self.settings.workspace).as_posix()

    def metrics(self, job_id: str) -> dict:
        """Every complete line of the job's ``metrics.jsonl``, oldest first: ``{"points": [...]}``."""
        return {"points": self.metrics_files.points(self._metrics_path(self.get(job_id)))}

    @staticmethod
    def _metrics_path(job: Job) -> Path:
        return Path(job.folder) / "output" / "metrics.jsonl"

    def list(self, status: str | None = None, template: str | None = None, limit: int = 100, offset: int = 0,
             experiment_id: str | None = None, project: str | None = None):
        """The user's jobs, newest first (experiment trials among them; controllers are not jobs one lists)."""
        if status and status not in STATUSES:
            raise JobError(400, f"status must be one of {', '.join(STATUSES)}", "status")
        check_page(limit, offset)
        if project is not None:
            check_project(project)
        return self.store.list(status, template, limit, offset, experiment_id=experiment_id, project=project)

    def refresh_if_older(self, max_age: float) -> None:
        """Refresh unless the last look at the scheduler is younger than ``max_age`` seconds."""
        if time.monotonic() - self._refreshed_at >= max_age:
            self.refresh()

    def refresh(self) -> int:
        """Ask the backend once about every unfinished job; returns how many changed.

        A job that ended for a reason not its own (``restartable``: killed, its node
        failed, preempted) is started again on its folder while it has restarts left.
        """
        self._refreshed_at = time.monotonic()
        unfinished = {job.id: job for job in self.store.unfinished()}
        changes = self.backend.statuses(list(unfinished.values()))
        for job_id, change in changes.items():
            job = unfinished[job_id]
            restartable = change.pop("restartable", False) or self._controller_out_of_time(job, change)
            if restartable and (job.restarts or 0) < job.max_restarts:
                self.restart(job, change.get("reason", ""))
            else:
                self.store.update(job_id, **change)
        return len(changes)

    @staticmethod
    def _controller_out_of_time(job: Job, change: dict) -> bool:
        """An experiment's controller that reached its hours (Slurm's TIMEOUT) goes on in a new one: it
        resumes from its journal, and an experiment may outlast one job's wall time."""
        code = change.get("exit_code")
        own_error = code is not None and 0 < code <= 128
        return job.kind == "controller" and change.get("status") == "failed" and not own_error

    def restart(self, job: Job, why: str, count: bool = True) -> None:
        """Run ``job.sh`` again on the same folder (the template continues from its checkpoint).

        ``count``: a restart after a failure counts against ``max_restarts``; one the user asked for does not.
        """
        if not self.store.claim(job.id, job.scheduler_id, "restarting"):
            return  # another poller (the server's, or an experiment's controller) is restarting it
        folder = Path(job.folder)
        for mark in ("exit_code", "cancelled", "pruned") if not count else ("exit_code",):
            (folder / mark).unlink(missing_ok=True)
        number = (job.restarts or 0) + (1 if count else 0)
        history = [*(job.restart_history or []), {"time": utcnow().isoformat(), "reason": why}]
        with open(folder / "log.txt", "a") as log:
            of = f"restart {number} of at most {job.max_restarts}" if count else "started again"
            log.write(f"\nClusterLab: {why}; {of}, from the latest checkpoint\n")
        try:
            scheduler_id = self.backend.submit(job, folder / "job.sh", folder / "log.txt", self._job_environment())
        except BackendError as e:
            self.store.update(job.id, status="failed", end_time=utcnow(), restart_history=history,
                              reason=f"{why}; its restart was refused: {e}"[:500])
            return
        self.store.update(job.id, status="queued", scheduler_id=scheduler_id, restarts=number,
                          restart_history=history, reason=(f"restarted after: {why}" if count else why)[:500],
                          exit_code=None, end_time=None, node="")  # the store writes the folder's record too

    def cancel(self, job_id: str) -> Job:
        return self._stop(job_id, "cancelled", "")

    def prune(self, job_id: str, why: str) -> Job:
        """Stop a trial an experiment's pruner gave up on: its status becomes ``pruned``, with ``why``."""
        return self._stop(job_id, "pruned", why)

    def _stop(self, job_id: str, mark: str, text: str) -> Job:
        job = self.get(job_id)
        if job.final:
            raise JobError(409, f"job {job_id} has already ended ({job.status})", "id")
        (Path(job.folder) / mark).write_text(text)  # first: however it then ends, this is how
        try:
            self.backend.cancel(job)
        except BackendError as e:
            raise JobError(502, str(e), "id") from None
        self.refresh()
        return self.get(job_id)

    def rerun(self, job_id: str, changes: Any) -> Job:
        """The job again, with ``changes``; its inputs are the same versions (pinned in its parameters and
        inputs) unless ``changes`` names others."""
        job = self.get(job_id)
        if not isinstance(changes, dict):
            raise JobError(400, "the body must be a JSON object", "")
        unknown = sorted(set(changes) - (JOB_FIELDS - {"template"}))
        if unknown:
            raise JobError(400, f"unknown field {unknown[0]!r}", unknown[0])
        new_params = changes.get("params", {})
        if not isinstance(new_params, dict):
            raise JobError(400, "params must be a JSON object", "params")
        request = {
            "template": job.template, "name": changes.get("name", job.name),
            "params": {**job.params, **new_params},
            "profile": changes.get("profile", job.profile), "hours": changes.get("hours", job.hours),
            "max_restarts": changes.get("max_restarts", job.max_restarts),
            "project": changes.get("project", job.project),
            "inputs": changes.get("inputs", [input_entry(i) for i in job.inputs or [] if "param" not in i]),
        }
        return self.submit(request, rerun_of=job.id)

    def log(self, job_id: str, offset: int = 0, limit: int = 1024 * 1024) -> dict:
        job = self.get(job_id)
        if offset < 0:
            raise JobError(400, "offset must be 0 or more", "offset")
        path = Path(job.folder) / "log.txt"
        try:
            with open(path, "rb") as f:
                start = min(offset, os.fstat(f.fileno()).st_size)  # past the end: nothing more yet
                f.seek(start)
                data = f.read(limit)
        except FileNotFoundError:
            # not (yet) on the volume as this server sees it: the pod's log is the same text (Kubernetes)
            pod_log = getattr(self.backend, "log_text", None)
            if pod_log is None:
                start, data = offset, b""
            else:
                whole = pod_log(job, offset + limit).encode()
                start = min(offset, len(whole))
                data = whole[start:start + limit]
        end, text = start + len(data), data.decode(errors="replace")
        return {"id": job.id, "offset": end, "text": text, "status": job.status, "done": job.status in FINAL}
