"""AI Studio's REST API (``<base>/clusterlab/api/studio/...``, described in :mod:`.openapi`).

Every call runs the service off the event loop: the steps copy pictures, ask Label Studio (whose first
start takes a while), write dataset versions and push to git.
"""

from __future__ import annotations

import asyncio

from tornado import web

from ..handlers import ClusterLabHandler, json_errors
from .service import StudioService


class StudioHandler(ClusterLabHandler):
    @property
    def studio(self) -> StudioService:
        return self.settings["clusterlab_studio"]

    async def run(self, method, *args, status: int = 200):
        self.reply(await asyncio.to_thread(method, *args), status)


class LabellingsHandler(StudioHandler):
    @web.authenticated
    @json_errors
    async def get(self):
        project = self.name_argument("project")
        self.reply({"labellings": await asyncio.to_thread(self.studio.list_labellings, project)})

    @web.authenticated
    @json_errors
    async def post(self):
        await self.run(self.studio.create_labelling, self.body(), status=201)


class LabellingHandler(StudioHandler):
    @web.authenticated
    @json_errors
    async def get(self, labelling_id):
        await self.run(self.studio.get_labelling, labelling_id)

    @web.authenticated
    @json_errors
    async def delete(self, labelling_id):
        await asyncio.to_thread(self.studio.delete_labelling, labelling_id)
        self.set_status(204)
        self.finish()


class LabellingOpenHandler(StudioHandler):
    @web.authenticated
    @json_errors
    async def post(self, labelling_id):
        await self.run(self.studio.open_labelling, labelling_id)


class LabellingExportHandler(StudioHandler):
    @web.authenticated
    @json_errors
    async def post(self, labelling_id):
        await self.run(self.studio.export, labelling_id, self.body(), status=201)


class StudioExperimentsHandler(StudioHandler):
    @web.authenticated
    @json_errors
    async def post(self):
        await self.run(self.studio.start_experiment, self.body(), status=201)


class ValidationsHandler(StudioHandler):
    @web.authenticated
    @json_errors
    async def get(self):
        project = self.name_argument("project")
        await self.fresh()
        self.reply({"validations": await asyncio.to_thread(self.studio.list_validations, project)})

    @web.authenticated
    @json_errors
    async def post(self):
        await self.run(self.studio.validate, self.body(), status=201)


class ValidationHandler(StudioHandler):
    @web.authenticated
    @json_errors
    async def get(self, validation_id):
        await self.fresh()
        await self.run(self.studio.get_validation, validation_id)


class ModelsHandler(StudioHandler):
    @web.authenticated
    @json_errors
    async def get(self):
        self.reply({"models": await asyncio.to_thread(self.studio.list_models)})

    @web.authenticated
    @json_errors
    async def post(self):
        await self.fresh()
        await self.run(self.studio.register, self.body(), status=201)


class ModelHandler(StudioHandler):
    @web.authenticated
    @json_errors
    async def get(self, name):
        await self.run(self.studio.get_model, name)


class ModelVersionHandler(StudioHandler):
    @web.authenticated
    @json_errors
    async def get(self, name, version):
        await self.run(self.studio.get_model_version, name, self.version_number(version))


class PublishHandler(StudioHandler):
    @web.authenticated
    @json_errors
    async def post(self, name, version):
        await self.run(self.studio.publish, name, self.version_number(version), self.body())


class ChainsHandler(StudioHandler):
    @web.authenticated
    @json_errors
    async def get(self):
        project = self.name_argument("project")
        await self.fresh()
        self.reply({"chains": await asyncio.to_thread(self.studio.chains, project)})


def studio_handlers(base: str) -> list[tuple]:
    labelling = r"(?P<labelling_id>[^/]+)"
    model = r"(?P<name>[^/]+)"
    return [
        (f"{base}/studio/labellings", LabellingsHandler),
        (f"{base}/studio/labellings/{labelling}", LabellingHandler),
        (f"{base}/studio/labellings/{labelling}/open", LabellingOpenHandler),
        (f"{base}/studio/labellings/{labelling}/export", LabellingExportHandler),
        (f"{base}/studio/experiments", StudioExperimentsHandler),
        (f"{base}/studio/validations", ValidationsHandler),
        (f"{base}/studio/validations/(?P<validation_id>[^/]+)", ValidationHandler),
        (f"{base}/studio/models", ModelsHandler),
        (f"{base}/studio/models/{model}", ModelHandler),
        (f"{base}/studio/models/{model}/(?P<version>[^/]+)", ModelVersionHandler),
        (f"{base}/studio/models/{model}/(?P<version>[^/]+)/publish", PublishHandler),
        (f"{base}/studio/chains", ChainsHandler),
    ]
