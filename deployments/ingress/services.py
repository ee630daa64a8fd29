"""What routes reach: the catalog, the model deployments' handles, the model manager, each model's lifecycle."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request
from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle

from deployments.app_plan import pool_name
from deployments.errors import (
    ModelNotFound,
    ModelStarting,
    ModelUnavailable,
    NotFound,
    Overloaded,
    RequestTimeout,
    WrongModelTask,
)
from deployments.ingress.auth import IDEMPOTENCY_KEY, current_owner
from deployments.ingress.lifecycle import WAIT_PREFERENCE, DeploymentStates, model_lifecycle, running_replicas
from deployments.ingress.observability import note_request_model
from deployments.settings import ServiceSettings
from deployments.state.dispatch import JobDispatcher
from deployments.state.store import Job, JobStatus, JobStore, Upload
from registry import ModelEntry, UnknownModelError
from registry.runtime import LiveCatalog

logger = logging.getLogger(__name__)
MODEL_CALL_ATTEMPTS = 2  # a request whose replica dies is tried once more

# Replicas report at every health check (5-10 s); a report older than this is from a replica that is gone.
REPORT_MAX_AGE_SECONDS = 30.0


@dataclass
class Services:
    catalog: LiveCatalog  # reads like a Catalog; includes models added at run time
    settings: ServiceSettings
    deployments: dict[str, DeploymentHandle]  # by Serve deployment name: a catalog id, or '<kind>-pool'
    manager: Any  # the ModelManager actor handle
    board: Any  # the ReplicaBoard actor handle: what every model replica has loaded
    store: JobStore
    dispatcher: JobDispatcher
    states: DeploymentStates  # Serve's view of this application's deployments
    gpu: dict[str, Any] = field(default_factory=dict)  # the profile's GPUs: count, memory_gb (None: CPU only)
    _cold_starts: set[asyncio.Task] = field(default_factory=set)

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
        note_request_model(entry.id)
        if not self.is_served(entry):
            raise ModelUnavailable(
                f"Model '{entry.id}' ({self.catalog.task_of(entry)}) is not deployed in this application"
            )
        return entry

    def is_served(self, entry: ModelEntry) -> bool:
        return self.deployment_name(entry) is not None

    def deployment_name(self, entry: ModelEntry) -> str | None:
        """The deployment serving `entry`: its own, or for a model added at run time its family's pool."""
        if entry.id in self.deployments:
            return entry.id
        pool = pool_name(self.kind_of(entry))
        return pool if self.catalog.is_runtime(entry.id) and pool in self.deployments else None

    def kind_of(self, entry: ModelEntry) -> str:
        return self.catalog.families[entry.family].deployment

    def deployment_of_replica(self, app: str, deployment: str) -> str | None:
        """The deployment name of a Serve (application, deployment) pair, if it is one of ours."""
        handle = self.deployments.get(deployment)
        return deployment if handle is not None and handle.app_name == app else None

    def deployment_for(self, entry: ModelEntry) -> DeploymentHandle:
        name = self.deployment_name(entry)
        if name is None:
            raise ModelUnavailable(f"Model '{entry.id}' ({self.catalog.task_of(entry)}) is not deployed in this "
                                   "application")
        return self.deployments[name]

    async def has_replicas(self, entry: ModelEntry) -> bool:
        """Whether the model's deployment runs a replica now (scaled to zero: none)."""
        return running_replicas((await self.states.get(fresh=True)).get(self.deployment_for(entry).deployment_name)) > 0

    async def call(self, entry: ModelEntry, method: str, *args: Any, **kwargs: Any) -> Any:
        """`method` of the deployment serving `entry`, once it has a replica (see `started`). Every method
        routes call this way is idempotent, so a replica that dies under the request is retried once on
        another; a full queue is a 503 with Retry-After and a model slower than the timeout a 504."""
        handle = await self.started(entry)
        return await self._with_policy(entry, method, lambda: getattr(handle, method).remote(*args, **kwargs), _result)

    async def stream(self, entry: ModelEntry, method: str, *args: Any,
                     **kwargs: Any) -> tuple[Any, AsyncIterator[Any]]:
        """A streaming `method`: its first item under `call`'s policy (timeout, back-pressure, one retry on
        another replica; a bad request fails here, while the route can still answer with a status), then the
        rest, each item within the same timeout, a replica lost meanwhile a ModelUnavailable."""
        handle = (await self.started(entry)).options(stream=True)

        async def first_of(generator: Any) -> tuple[Any, Any]:
            return await generator.__anext__(), generator

        first, generator = await self._with_policy(
            entry, method, lambda: getattr(handle, method).remote(*args, **kwargs), first_of)
        return first, self._rest(entry, generator)

    async def _rest(self, entry: ModelEntry, generator: Any) -> AsyncIterator[Any]:
        """The stream's other items; closed early (a client gone, an answer cancelled), the model stops too."""
        timeout = self.settings.request_timeout_seconds
        finished = False
        try:
            while True:
                try:
                    yield await asyncio.wait_for(generator.__anext__(), timeout)
                except StopAsyncIteration:
                    finished = True
                    return
                except TimeoutError:
                    raise RequestTimeout(f"Model '{entry.id}' sent nothing for {timeout:g}s (REQUEST_TIMEOUT)") \
                        from None
                except RayActorError as died:
                    finished = True
                    raise ModelUnavailable(f"Model '{entry.id}' lost its replica while streaming; retry shortly",
                                           headers={"Retry-After": "2"}) from died
        finally:
            if not finished:
                generator.cancel()

    async def _with_policy(self, entry: ModelEntry, method: str, send: Callable[[], Any],
                           answer: Callable[[Any], Awaitable[Any]]) -> Any:
        """What every call to a model deployment goes through: `send()` a request, await `answer(response)`
        within REQUEST_TIMEOUT, a full queue as a 503, a replica that died under it tried once more."""
        timeout = self.settings.request_timeout_seconds
        for attempt in range(1, MODEL_CALL_ATTEMPTS + 1):
            response = send()
            try:
                return await asyncio.wait_for(answer(response), timeout)
            except TimeoutError:
                response.cancel()
                raise RequestTimeout(f"Model '{entry.id}' did not answer within {timeout:g}s (REQUEST_TIMEOUT); "
                                     f"{self._longer_work(entry)}") from None
            except BackPressureError as busy:
                raise Overloaded(f"Model '{entry.id}' has too many queued requests ({busy.message}); retry "
                                 "shortly", retry_after_s=busy.retry_after_s or 1.0) from None
            except RayActorError as died:
                if attempt == MODEL_CALL_ATTEMPTS:
                    raise ModelUnavailable(f"Model '{entry.id}' lost its replica twice while answering; retry "
                                           "shortly", headers={"Retry-After": "2"}) from died
                logger.warning("replica of %s died under %s; retrying on another", entry.id, method)
        raise AssertionError("unreachable")

    def _longer_work(self, entry: ModelEntry) -> str:
        """How to get work done that takes longer than a request may wait: as a job, where the task has one."""
        from deployments.ingress.job_inputs import JOB_INPUTS  # (it imports this module)

        task = self.catalog.task_of(entry)
        if task in JOB_INPUTS:
            return (f"run it as a job instead: POST /api/v1/run with {{\"task\": \"{task}\", \"input\": <this "
                    "request's fields>}, then GET /jobs/{job_id} for its progress and result")
        return "try a smaller request, or raise INFERENCE_REQUEST_TIMEOUT_SECONDS"

    async def started(self, entry: ModelEntry) -> DeploymentHandle:
        """The model's handle once a replica runs it. A model scaled to zero is started by asking its
        deployment for `ready` (Serve's autoscaler starts a replica for a queued request); the caller
        waits `Prefer: wait=N` seconds, else cold_start_wait_seconds, then gets a 503 with Retry-After
        while the start carries on."""
        handle = self.deployment_for(entry)
        states = await self.states.get()
        if running_replicas(states.get(handle.deployment_name)):
            return handle
        bound, asked = self.settings.cold_start_wait_seconds, WAIT_PREFERENCE.get()
        wait = bound if asked is None else min(asked, bound)
        start = self.load_soon(entry)
        done, _ = await asyncio.wait({start}, timeout=wait)
        if done:
            start.result()  # a failed load fails the request with its own error
            return handle
        lifecycle = await self.lifecycle(entry)
        raise ModelStarting(f"Model '{entry.id}' is {lifecycle['state'].replace('_', ' ')} and not ready after "
                            f"{wait:g}s; retry shortly", retry_after_s=max(5.0, wait), model_state=lifecycle)

    def load_soon(self, entry: ModelEntry) -> asyncio.Future:
        """Ask the model's deployment to load it (Serve starts a replica if it has none); the load
        carries on after a caller that stops waiting for it."""
        handle = self.deployment_for(entry)
        pooled = handle.deployment_name != entry.id  # a run-time model: its family's pool loads it by name
        start = asyncio.ensure_future(_result(handle.ready.remote(entry.id) if pooled else handle.ready.remote()))
        self._cold_starts.add(start)
        start.add_done_callback(self._cold_starts.discard)
        start.add_done_callback(lambda task: task.cancelled() or task.exception())  # retrieved: no warning
        return start

    async def lifecycle(self, entry: ModelEntry) -> dict[str, Any]:
        return (await self.lifecycles([entry]))[entry.id]

    async def lifecycles(self, entries: list[ModelEntry]) -> dict[str, dict[str, Any]]:
        """Each model's lifecycle (lifecycle.py), from Serve, the manager and the replica board."""
        app = self.states.app_name
        states, downloads, reports, ever = await asyncio.gather(
            self.states.get(), self.manager.status.remote(), self.board.reports.remote(REPORT_MAX_AGE_SECONDS),
            self.board.ever_loaded.remote(app))
        downloads = {d["model"]: d for d in downloads}
        views = {}
        for entry in entries:
            name = self.deployment_name(entry)
            mine = [r for r in reports if name and (r["app"], r["deployment"]) == (app, name)]
            views[entry.id] = model_lifecycle(entry.id, name, states.get(name) if name else None,
                                              downloads.get(entry.id), mine, entry.id in ever,
                                              self.settings.idle_after_seconds)
        return views

    async def upload(self, file_id: str) -> Upload:
        """The caller's upload `file_id`; another key's is as missing as one that never was."""
        upload = await asyncio.to_thread(self.store.get_upload, file_id)
        if upload is None or not visible(upload.owner):
            raise NotFound(f"No upload with file_id '{file_id}'; upload the file first with POST /upload/{{model}}")
        return upload

    def keep_upload(self, family: str, filename: str, staged: Path, info: dict[str, Any]) -> Upload:
        """Put a staged file in the store as the caller's upload (blocking: call it in a thread)."""
        return self.store.add_upload(family, filename, staged, info, current_owner())

    async def job(self, job_id: str) -> Job:
        """The caller's job `job_id`; another key's is as missing as one that never was."""
        job = await asyncio.to_thread(self.store.get_job, job_id)
        if job is None or not visible(job.owner):
            raise NotFound(f"No job with id '{job_id}'")
        return job

    async def submit(self, entry: ModelEntry, job_input: dict) -> Job:
        """Record the job, as the caller's (it is durable from here on), and send it to the model's deployment."""
        job = await asyncio.to_thread(self.store.create_job, self.catalog.task_of(entry), entry.id, job_input,
                                      current_owner(), IDEMPOTENCY_KEY.get())
        if job.status == JobStatus.pending:  # (one an earlier request with the same Idempotency-Key made may not be)
            self.dispatcher.dispatch(job)  # at most once per job at a time
        return job

    def handle_for_job(self, job: Job) -> DeploymentHandle | None:
        """Jobs go straight to the deployment: a queued request is what starts a replica scaled to zero."""
        entry = self.catalog.models.get(job.model)
        return self.deployment_for(entry) if entry and self.is_served(entry) else None


async def _result(response: Any) -> Any:
    return await response


def visible(owner: str | None) -> bool:
    """Whether the caller may see a row recorded with `owner` (every row, when keys are not configured)."""
    caller = current_owner()
    return caller is None or owner == caller


def _article(word: str) -> str:
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


def get_services(request: Request) -> Services:
    """FastAPI dependency: the Services this replica's app was built with."""
    return request.app.state.services
