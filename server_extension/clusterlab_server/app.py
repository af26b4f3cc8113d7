"""The ``clusterlab`` jupyter_server extension: the job service inside each JupyterLab.

Configured by traitlets (``c.ClusterLabApp.backend = "slurm"`` and so on);
unset, each value comes from the environment the hub gives the server (see
:meth:`~.service.Settings.from_environment`), so the CLI in a terminal of the
same server finds the same jobs.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from jupyter_server.extension.application import ExtensionApp
from traitlets import Float, Integer, List, Unicode

from .experiments.service import ExperimentService

from .handlers import handlers
from .projects import ProjectService
from .service import JobService, Settings
from .studio.service import StudioService
from .tensorboard import TensorBoardManager
from .terminals import keep_environment_in_terminals


class ClusterLabApp(ExtensionApp):
    name = "clusterlab"

    backend = Unicode("", config=True, help="Where jobs run: local or slurm (default: slurm inside a Slurm job).")
    jobs_root = Unicode("", config=True, help="Folder of job folders and the job store (~/.clusterlab/jobs).")
    template_paths = List(Unicode(), config=True, help="Extra template folders, after the shipped and site ones.")
    data_roots = List(
        Unicode(), config=True,
        help="Folders besides the workspace that path parameters may name (shared datasets, scratch).",
    )
    profiles_file = Unicode("", config=True, help="Instance sizes (default: the hub's, from CLUSTERLAB_PROFILES).")
    poll_interval = Float(5, config=True, help="Seconds between looks at the scheduler for unfinished jobs.")
    max_concurrent_trials = Integer(
        None, allow_none=True, config=True,
        help="Most trials one experiment may run at once, the user's quota (default: "
             "CLUSTERLAB_MAX_CONCURRENT_TRIALS, else 8).",
    )
    datasets_root = Unicode(
        "", config=True, help="The user's datasets (default: CLUSTERLAB_DATASETS_ROOT, else ~/.clusterlab/datasets "
                              "beside the jobs: on Slurm the shared home every node sees, on Kubernetes the "
                              "user's volume).",
    )
    site_datasets = Unicode(
        "", config=True, help="The site's shared, read-only datasets (default: CLUSTERLAB_SITE_DATASETS, else "
                              "/etc/clusterlab/datasets).",
    )
    datasets_quota_gb = Float(
        None, allow_none=True, config=True,
        help="Most GB the user's datasets may hold, distinct contents (default: CLUSTERLAB_DATASETS_QUOTA_GB, "
             "else no quota).",
    )
    tensorboard_idle_timeout = Float(
        900, config=True, help="Seconds without use after which the user's TensorBoard stops (0: never).",
    )
    label_studio_idle_timeout = Float(
        900, config=True, help="Seconds without a request after which the user's Label Studio stops (0: never).",
    )

    _poller: asyncio.Task | None = None

    def _link_jupyter_server_extension(self, serverapp):
        super()._link_jupyter_server_extension(serverapp)
        # linked before any extension loads, so before the terminals extension reads it
        keep_environment_in_terminals(serverapp)

    def initialize_settings(self):
        settings = Settings.from_environment(
            backend=self.backend or None,
            jobs_root=Path(self.jobs_root) if self.jobs_root else None,
            profiles_file=Path(self.profiles_file) if self.profiles_file else None,
            workspace=Path(self.serverapp.root_dir),
            datasets_root=Path(self.datasets_root) if self.datasets_root else None,
            site_datasets=Path(self.site_datasets) if self.site_datasets else None,
            datasets_quota_bytes=None if self.datasets_quota_gb is None else int(self.datasets_quota_gb * 1e9),
        )
        settings.template_paths += [Path(p) for p in self.template_paths]
        settings.extra_roots += [Path(p) for p in self.data_roots]
        self.service = JobService(settings)
        self.settings["clusterlab_service"] = self.service
        self.settings["clusterlab_poll_interval"] = self.poll_interval
        self.experiments = ExperimentService(self.service, max_concurrent_trials=self.max_concurrent_trials)
        self.settings["clusterlab_experiments"] = self.experiments
        self.settings["clusterlab_projects"] = ProjectService(self.service, self.experiments)
        self.tensorboard = TensorBoardManager(self.service, base_url=self.serverapp.base_url,
                                              idle_timeout=self.tensorboard_idle_timeout, log=self.log)
        self.settings["clusterlab_tensorboard"] = self.tensorboard
        self.studio = StudioService(self.service, self.experiments, base_url=self.serverapp.base_url,
                                    label_studio_idle_timeout=self.label_studio_idle_timeout)
        self.settings["clusterlab_studio"] = self.studio
        self._show_job_folders(settings)
        self.log.info("ClusterLab jobs: %s backend, %d templates, store in %s",
                      settings.backend, len(self.service.registry.templates), settings.jobs_root)

    def _show_job_folders(self, settings: Settings) -> None:
        """Let the file browser open job folders under ``~/.clusterlab`` (the jobs panel's "Output").

        Jupyter refuses hidden paths unless ``ContentsManager.allow_hidden``; it is
        turned on only when the jobs live in a hidden folder of the workspace and
        nobody configured it either way (listings still hide dot-files).
        """
        contents = self.serverapp.contents_manager
        configured = any("allow_hidden" in self.serverapp.config.get(cls.__name__, {})
                         for cls in type(contents).mro())
        try:
            inside = settings.jobs_root.resolve().relative_to(settings.workspace.resolve())
        except ValueError:
            return
        if not configured and any(part.startswith(".") for part in inside.parts):
            contents.allow_hidden = True
            self.log.info("ClusterLab: jobs are in %s, so hidden paths may be opened (allow_hidden)", inside)

    def initialize_handlers(self):
        # ExtensionApp puts the server's base URL in front
        self.handlers.extend(handlers("/clusterlab/api"))

    async def _start_jupyter_server_extension(self, serverapp):
        self._poller = asyncio.ensure_future(self._poll())

    async def _poll(self):
        while True:
            try:
                await asyncio.to_thread(self.service.refresh)
            except Exception:  # a bad poll must not end polling
                self.log.exception("ClusterLab: polling jobs failed")
            await asyncio.sleep(self.poll_interval)

    async def stop_extension(self):
        if self._poller:
            self._poller.cancel()
        await self.tensorboard.shutdown()
        await asyncio.to_thread(self.studio.shutdown)
