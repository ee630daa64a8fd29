"""The HTTP ingress: routing, validation against the catalog, uploads and jobs, one error shape."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi.exceptions import RequestValidationError
from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.errors import InvalidRequest
from deployments.ingress.http_app import build_http_app
from deployments.ingress.http_errors import validation_message
from deployments.ingress.job_replies import render_job, wait_for
from deployments.ingress.job_routes import RunRequest, submit_run
from deployments.ingress.lifecycle import DeploymentStates
from deployments.ingress.request_checks import parse
from deployments.ingress.service_health import ServiceGauges
from deployments.ingress.services import Services
from deployments.model_cache.manager import get_model_manager
from deployments.serving.replica_board import get_replica_board
from deployments.settings import ServiceSettings
from deployments.state.dispatch import JobDispatcher
from deployments.state.store import JobStore
from registry import Catalog
from registry.runtime import LiveCatalog

GAUGE_PERIOD_S = 10.0  # jobs and model states in Ray's metrics are at most this old
STAGING_MAX_AGE_S = 3600.0  # a staging folder untouched this long (and no active job's) was left by a crash
logger = logging.getLogger(__name__)


# 0.2 CPU reserved: the ingress is mostly waiting on the models, and must never be the replica a small box
# cannot schedule (a profile's `deployments:` may reserve more).
@serve.deployment(max_ongoing_requests=256, health_check_period_s=5, ray_actor_options={"num_cpus": 0.2})
@serve.ingress()
class Ingress:
    """Owns no model; validates requests, keeps the job store, forwards work to the model deployments."""

    def __init__(self, catalog: Catalog, settings: ServiceSettings, deployments: dict[str, DeploymentHandle],
                 gpu: dict[str, Any] | None = None):
        settings.apply_log_level()
        store = JobStore.from_settings(settings)
        dispatcher = JobDispatcher(store, lambda job: self._services.handle_for_job(job),
                                   settings.job_lease_seconds, settings.job_max_attempts)
        live_catalog = LiveCatalog(catalog, store.runtime_models())
        states = DeploymentStates(serve.get_replica_context().app_name)
        self._services = Services(live_catalog, settings, deployments, get_model_manager(settings),
                                  get_replica_board(settings), store, dispatcher, states, gpu or {})
        # Jobs a previous ingress queued but never saw finish are dispatched again from here.
        loop = asyncio.get_running_loop()
        self._sweep = loop.create_task(dispatcher.sweep_forever(settings.job_sweep_seconds))
        self._gauges = loop.create_task(ServiceGauges(self._services).publish_forever(GAUGE_PERIOD_S))
        self._retention = loop.create_task(expire_forever(store, settings))

    def __serve_build_asgi_app__(self):
        return build_http_app(self._services)

    # Python callers (serve.get_app_handle("inference")) get the job API without HTTP; same checks.
    async def run(self, model: str | None = None, input: dict[str, Any] | None = None, task: str | None = None,
                  wait: float = 0) -> dict[str, Any]:
        """Queue a job as POST /api/v1/run does; with `wait`, return it once finished (or when the wait runs out)."""
        try:
            body = parse(RunRequest, {"model": model, "task": task, "input": input if input is not None else {}})
            job = await submit_run(self._services, body)
        except RequestValidationError as invalid:  # the HTTP routes render it; a Python caller gets our error
            raise InvalidRequest(validation_message(invalid)) from None
        return render_job(await wait_for(self._services, job, wait))

    async def job(self, job_id: str, wait: float = 0) -> dict[str, Any]:
        """A job as GET /jobs/{job_id} shows it."""
        return render_job(await wait_for(self._services, await self._services.job(job_id), wait))


async def expire_forever(store: JobStore, settings: ServiceSettings) -> None:
    """The retention sweep: at start (crash leftovers) and then every retention_sweep_seconds."""
    while True:
        try:
            deleted = await asyncio.to_thread(store.expire, settings.job_retention_seconds,
                                              settings.upload_retention_seconds, STAGING_MAX_AGE_S)
            if any(deleted.values()):
                logger.info("retention: deleted %s", deleted)
        except Exception:
            logger.exception("retention sweep failed; trying again next period")
        await asyncio.sleep(settings.retention_sweep_seconds)
