"""What routes reach: the catalog, the family deployments' handles, the model manager."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from ray.serve.handle import DeploymentHandle

from deployments.errors import ModelNotFound, ModelUnavailable, NotFound, WrongModelTask
from deployments.jobs.dispatch import JobDispatcher
from deployments.jobs.store import Job, JobStore, Upload
from deployments.settings import ServiceSettings
from registry import ModelEntry, UnknownModelError
from registry.runtime import LiveCatalog


@dataclass
class Services:
    catalog: LiveCatalog  # reads like a Catalog; includes models added at run time
    settings: ServiceSettings
    deployments: dict[str, DeploymentHandle]  # keyed by the catalog's family `deployment`
    manager: Any  # the ModelManager actor handle
    board: Any  # the ReplicaBoard actor handle: what every family replica has loaded
    store: JobStore
    dispatcher: JobDispatcher

    def model_for(self, task: str, name: str | None) -> ModelEntry:
        """The catalog entry a request names for `task` (its default when None), or a 4xx saying why not."""
        if not name:
            entry = self.catalog.default_model(task)
        else:
            try:
                entry = self.catalog.resolve(name, task=task)
            except UnknownModelError as missing:
                try:
                    other = self.catalog.resolve(name)
                except UnknownModelError:
                    raise ModelNotFound(str(missing)) from None
                raise WrongModelTask(
                    f"Model '{other.id}' is {_article(self.catalog.task_of(other))} model, not {task}. "
                    f"Known {task} models: {', '.join(missing.known)}"
                ) from None
        if not self.is_served(entry):
            raise ModelUnavailable(
                f"Model '{entry.id}' ({self.catalog.task_of(entry)}) is not deployed in this application"
            )
        return entry

    def is_served(self, entry: ModelEntry) -> bool:
        return self.catalog.families[entry.family].deployment in self.deployments

    def family_of_replica(self, app: str, deployment: str) -> str | None:
        """The family `deployment` key of a Serve (application, deployment) pair, if it is one of ours."""
        for key, handle in self.deployments.items():
            if (handle.app_name, handle.deployment_name) == (app, deployment):
                return key
        return None

    def deployment_for(self, entry: ModelEntry) -> DeploymentHandle:
        return self.deployments[self.catalog.families[entry.family].deployment]

    async def upload(self, file_id: str) -> Upload:
        upload = await asyncio.to_thread(self.store.get_upload, file_id)
        if upload is None:
            raise NotFound(f"No upload with file_id '{file_id}'; upload the file first with POST /upload/{{model}}")
        return upload

    async def job(self, job_id: str) -> Job:
        job = await asyncio.to_thread(self.store.get_job, job_id)
        if job is None:
            raise NotFound(f"No job with id '{job_id}'")
        return job

    async def submit(self, entry: ModelEntry, job_input: dict) -> Job:
        """Record the job (it is durable from here on) and send it to the model's deployment."""
        job = await asyncio.to_thread(self.store.create_job, self.catalog.task_of(entry), entry.id, job_input)
        self.dispatcher.dispatch(job)
        return job

    def handle_for_job(self, job: Job) -> DeploymentHandle | None:
        entry = self.catalog.models.get(job.model)
        return self.deployment_for(entry) if entry and self.is_served(entry) else None


def _article(word: str) -> str:
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


def get_services(request: Request) -> Services:
    """FastAPI dependency: the Services this replica's app was built with."""
    return request.app.state.services
