"""Seed 004's job API in RunPod's serverless shape, one endpoint per model: `/v2/{model}/run`,
`/runsync`, `/status/{id}`, `/cancel/{id}`, `/health`. A client of a seed-004 service (or of RunPod
itself) switches by changing its base URL to `http://<host>/v2/<model>` (the seed services' own
`/api/v1/run` and `/api/v1/status/{id}` answer there too); the jobs are this service's
own (the same store, checks and workers as /api/v1/run), only shown as RunPod shows them.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from deployments.errors import Conflict, ModelNotFound, NotFound
from deployments.ingress.auth import current_owner
from deployments.ingress.http_errors import ERROR_RESPONSES
from deployments.ingress.job_inputs import TaskInput, job_input
from deployments.ingress.job_replies import wait_for
from deployments.ingress.lifecycle import running_replicas
from deployments.ingress.replies import Absent, json_reply
from deployments.ingress.services import Services, get_services
from deployments.state.store import FINISHED, Job, JobStatus
from registry import ModelEntry, UnknownModelError

router = APIRouter(prefix="/v2/{model}", tags=["RunPod-style jobs (seed 004)"], responses=ERROR_RESPONSES)

RUNPOD_STATUS = {JobStatus.pending: "IN_QUEUE", JobStatus.running: "IN_PROGRESS", JobStatus.completed: "COMPLETED",
                 JobStatus.failed: "FAILED", JobStatus.cancelled: "CANCELLED"}
RUNSYNC_WAIT_MS = 90_000  # RunPod's /runsync holds the request about this long before answering IN_PROGRESS
RECENT_JOBS = 1000  # /health counts this many of the newest jobs


class RunPodRequest(BaseModel):
    """RunPod's request body: the worker's input. Webhooks and execution policies are not supported
    (poll /status instead), so they are refused by name rather than ignored."""

    model_config = ConfigDict(extra="forbid")

    input: TaskInput = Field(description="The model's input, as in /api/v1/run, e.g. {'text': 'Hello'} for "
                                         "text to speech or {'image_url': ...} for image description.")


RunPodStatus = Literal["IN_QUEUE", "IN_PROGRESS", "COMPLETED", "FAILED", "CANCELLED"]


class RunPodJobRef(BaseModel):
    id: str = Field(description="The job's id (the same job as /jobs/{id}).")
    status: RunPodStatus


class RunPodFile(BaseModel):
    name: str
    size: int = Field(description="Bytes.")
    url: str = Field(description="/jobs/{id}/files/{name}.")


class RunPodOutput(BaseModel):
    """The job's output, and its result files (when it has any)."""

    model_config = ConfigDict(extra="allow")

    files: list[RunPodFile] | Absent = None


class RunPodJob(BaseModel):
    """A job as RunPod's /status shows it."""

    id: str
    status: RunPodStatus
    delayTime: int | None = Field(description="Milliseconds queued before a worker took it.")
    executionTime: int | None = Field(description="Milliseconds it ran, once finished.")
    workerId: None
    output: RunPodOutput | Absent = Field(None, description="COMPLETED only.")
    error: str | None = Field(None, description="FAILED only: why.")
    progress: float | Absent = Field(None, description="IN_PROGRESS only: 0-1.")


class RunPodJobCounts(BaseModel):
    completed: int
    failed: int
    inProgress: int
    inQueue: int
    retried: int = Field(description="Finished jobs that took more than one worker.")


class RunPodWorkers(BaseModel):
    idle: int
    running: int


class RunPodHealth(BaseModel):
    jobs: RunPodJobCounts = Field(description="The model's recent jobs (the caller's), by state.")
    workers: RunPodWorkers = Field(description="The model's running replicas, busy or not.")


RUNPOD_JOB = json_reply(RunPodJob, "The job.")


def _entry(services: Services, model: str) -> ModelEntry:
    """The model an endpoint path names (id, alias or hub id), served here; else a 404 naming the known ones."""
    try:
        entry = services.catalog.resolve(model)
    except UnknownModelError as missing:
        raise ModelNotFound(str(missing)) from None
    return services.model_for(services.catalog.task_of(entry), entry.id)


async def _job(services: Services, model: str, job_id: str) -> Job:
    """A job of this endpoint's model: another model's job is not found here, as on RunPod."""
    entry = _entry(services, model)
    job = await services.job(job_id)
    if job.model != entry.id:
        raise NotFound(f"No job with id '{job_id}' on endpoint '{model}' (it ran on '{job.model}')")
    return job


def _milliseconds(start: float | None, end: float | None) -> int | None:
    return None if start is None or end is None else round((end - start) * 1000)


def runpod_view(job: Job) -> dict[str, Any]:
    """A job as RunPod's /status answers: id, status in capitals, delay and execution times in ms, and the
    output (a result file is listed with its download URL)."""
    view: dict[str, Any] = {"id": job.id, "status": RUNPOD_STATUS[job.status],
                            "delayTime": _milliseconds(job.created_at, job.started_at),
                            "executionTime": _milliseconds(job.started_at, job.finished_at),
                            "workerId": None}
    if job.status == JobStatus.completed:
        files = [{"name": f.name, "size": f.size, "url": f"/jobs/{job.id}/files/{f.name}"} for f in job.files]
        view["output"] = {**(job.output or {}), **({"files": files} if files else {})}
    if job.status == JobStatus.failed:
        view["error"] = job.error
    if job.status == JobStatus.running:
        view["progress"] = job.progress
    return view


async def _submit(services: Services, model: str, body: RunPodRequest) -> Job:
    entry = _entry(services, model)
    return await services.submit(entry, await job_input(services, entry, body.input))


@router.post("/run", response_model=Any, responses=json_reply(RunPodJobRef, "Queued."))
# the seed-004 services' own path, so their clients need only the host changed
@router.post("/api/v1/run", response_model=Any, responses=json_reply(RunPodJobRef, "Queued."))
async def run(model: str, body: RunPodRequest, services: Services = Depends(get_services)) -> dict[str, Any]:
    """Queue a job; answers at once with its id and IN_QUEUE, as RunPod's /run does."""
    job = await _submit(services, model, body)
    return {"id": job.id, "status": RUNPOD_STATUS[job.status]}


@router.post("/runsync",
             responses=json_reply(RunPodJob, "The job, finished, or IN_QUEUE/IN_PROGRESS when `wait` ran out."))
async def runsync(model: str, body: RunPodRequest,
                  wait: int = Query(RUNSYNC_WAIT_MS, ge=1000, le=300_000, description="Milliseconds to wait."),
                  services: Services = Depends(get_services)) -> JSONResponse:
    """Queue a job and answer once it finished, or with IN_QUEUE/IN_PROGRESS when `wait` ran out."""
    job = await wait_for(services, await _submit(services, model, body), wait / 1000)
    return JSONResponse(runpod_view(job), status_code=200)


@router.get("/status/{job_id}", response_model=Any, responses=RUNPOD_JOB)
@router.get("/api/v1/status/{job_id}", response_model=Any, responses=RUNPOD_JOB)
async def status(model: str, job_id: str, services: Services = Depends(get_services)) -> dict[str, Any]:
    return runpod_view(await _job(services, model, job_id))


@router.post("/cancel/{job_id}", response_model=Any, responses=json_reply(RunPodJobRef, "Cancelled."))
@router.post("/api/v1/cancel/{job_id}", response_model=Any, responses=json_reply(RunPodJobRef, "Cancelled."))
async def cancel(model: str, job_id: str, services: Services = Depends(get_services)) -> dict[str, Any]:
    job = await _job(services, model, job_id)
    if not await asyncio.to_thread(services.store.cancel, job.id):
        raise Conflict(f"Job '{job_id}' is already {RUNPOD_STATUS[(await services.job(job_id)).status]}; only "
                       "IN_QUEUE or IN_PROGRESS jobs can be cancelled")
    return {"id": job.id, "status": RUNPOD_STATUS[JobStatus.cancelled]}


@router.get("/health", response_model=Any, responses=json_reply(RunPodHealth, "The endpoint's jobs and workers."))
async def health(model: str, services: Services = Depends(get_services)) -> dict[str, Any]:
    """RunPod's endpoint health: this model's recent jobs by state, and its replicas as workers."""
    entry = _entry(services, model)
    jobs = [job for job in await asyncio.to_thread(services.store.list_jobs, None, RECENT_JOBS, current_owner())
            if job.model == entry.id]
    counts = Counter(job.status for job in jobs)
    states = await services.states.get(fresh=True)
    replicas = running_replicas(states.get(services.deployment_for(entry).deployment_name))
    busy = min(counts[JobStatus.running], replicas)
    return {"jobs": {"completed": counts[JobStatus.completed], "failed": counts[JobStatus.failed],
                     "inProgress": counts[JobStatus.running], "inQueue": counts[JobStatus.pending],
                     "retried": sum(1 for job in jobs if job.attempts > 1 and job.status in FINISHED)},
            "workers": {"idle": replicas - busy, "running": busy}}
