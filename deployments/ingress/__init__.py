"""The HTTP ingress: routing, validation against the catalog, uploads and jobs, one error shape."""

from __future__ import annotations

import asyncio

from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.ingress.http_app import build_http_app
from deployments.ingress.services import Services
from deployments.jobs.dispatch import JobDispatcher
from deployments.jobs.store import JobStore
from deployments.model_manager import get_model_manager
from deployments.settings import ServiceSettings
from registry import Catalog


@serve.deployment(max_ongoing_requests=256, health_check_period_s=5)
@serve.ingress()
class Ingress:
    """Owns no model; validates requests, keeps the job store, forwards work to family deployments."""

    def __init__(self, catalog: Catalog, settings: ServiceSettings, deployments: dict[str, DeploymentHandle]):
        store = JobStore(settings.data_dir)
        dispatcher = JobDispatcher(store, lambda job: self._services.handle_for_job(job),
                                   settings.job_lease_seconds, settings.job_max_attempts)
        self._services = Services(catalog, settings, deployments, get_model_manager(settings), store, dispatcher)
        # Jobs a previous ingress queued but never saw finish are dispatched again from here.
        self._sweep = asyncio.get_running_loop().create_task(dispatcher.sweep_forever(settings.job_sweep_seconds))

    def __serve_build_asgi_app__(self):
        return build_http_app(self._services)
