"""Jobs: list, fetch, cancel, delete, download result files; seed 004's /api/v1/run and status."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from deployments.errors import Conflict, InvalidRequest, NotFound
from deployments.ingress.auth import current_owner
from deployments.ingress.http_errors import ERROR_RESPONSES
from deployments.ingress.job_inputs import TASK_INPUTS, TaskInput, job_input, run_by_task_or_model
from deployments.ingress.job_replies import JOB_REPLY, WAIT_QUERY, JobReply, job_reply, render_job
from deployments.ingress.replies import json_reply, media_reply
from deployments.ingress.services import Services, get_services
from deployments.media.audio import MEDIA_TYPES
from deployments.state.store import Job, JobStatus

router = APIRouter(tags=["jobs"], responses=ERROR_RESPONSES)

FILE_MEDIA_TYPES = MEDIA_TYPES | {"mp4": "video/mp4", "png": "image/png"}
JOB = json_reply(JobReply, "The job; with `wait`, as it stands when it finished or the wait ran out.",
                 headers={"Location": "The job's URL, /jobs/{job_id}."})


class JobList(BaseModel):
    success: bool
    count: int
    jobs: list[JobReply] = Field(description="The caller's jobs, newest first.")


class JobDeleted(BaseModel):
    success: bool
    message: str
    job_id: str


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=run_by_task_or_model)

    model: str | None = Field(None, description="Catalog id or alias; default the task's default model.")
    task: str | None = Field(None, json_schema_extra={"enum": [*TASK_INPUTS, None]},
                             description="Used to pick the default model when `model` is absent; the tasks that "
                             "run as jobs.")
    input: TaskInput = Field(description="Task input, e.g. {'file_id': ...} for source separation: the input "
                                         "schema of the model's task.")


async def submit_run(services: Services, body: RunRequest) -> Job:
    """Check a run request against the catalog and the task's input rules, then queue its job."""
    if not body.model and body.task is None:  # "" names no model either
        raise InvalidRequest(f"Name a model or a task; tasks: {', '.join(services.catalog.tasks)}")
    task = services.catalog.task_named(body.task) if body.task is not None else None
    if body.task is not None and task is None:
        raise InvalidRequest(f"Unknown task '{body.task}'; tasks: {', '.join(services.catalog.tasks)}")
    entry = services.model_for(task, body.model)
    return await services.submit(entry, await job_input(services, entry, body.input))


@router.post("/api/v1/run", status_code=202, responses=JOB_REPLY)
async def run(body: RunRequest, wait: float | None = WAIT_QUERY,
              services: Services = Depends(get_services)) -> JSONResponse:
    return await job_reply(services, await submit_run(services, body), wait)


@router.get("/api/v1/status/{job_id}", responses=JOB)
@router.get("/jobs/{job_id}", responses=JOB)
async def get_job(job_id: str, wait: float | None = WAIT_QUERY,
                  services: Services = Depends(get_services)) -> JSONResponse:
    reply = await job_reply(services, await services.job(job_id), wait)
    reply.status_code = 200
    return reply


@router.get("/jobs", response_model=Any, responses=json_reply(JobList, "The caller's jobs."))
async def list_jobs(status: JobStatus | None = None, limit: int = Query(100, ge=1, le=1000),
                    services: Services = Depends(get_services)) -> dict[str, Any]:
    jobs = await asyncio.to_thread(services.store.list_jobs, status, limit, current_owner())  # the caller's only
    return {"success": True, "count": len(jobs), "jobs": [render_job(job) for job in jobs]}


@router.post("/api/v1/cancel/{job_id}", response_model=Any, responses=json_reply(JobReply, "The job, cancelled."))
@router.post("/jobs/{job_id}/cancel", response_model=Any, responses=json_reply(JobReply, "The job, cancelled."))
async def cancel_job(job_id: str, services: Services = Depends(get_services)) -> dict[str, Any]:
    job = await services.job(job_id)
    if not await asyncio.to_thread(services.store.cancel, job_id):
        raise Conflict(f"Job '{job_id}' is already {(await services.job(job_id)).status}; only pending or "
                       f"running jobs can be cancelled")
    return render_job(await services.job(job.id))


@router.delete("/jobs/{job_id}", response_model=Any,
                responses=json_reply(JobDeleted, "The job and its files are deleted."))
async def delete_job(job_id: str, services: Services = Depends(get_services)) -> dict[str, Any]:
    job = await services.job(job_id)
    if not await asyncio.to_thread(services.store.delete_job, job_id):
        raise Conflict(f"Job '{job_id}' is {job.status}; cancel it before deleting it")
    return {"success": True, "message": f"Job '{job_id}' and its files were deleted", "job_id": job_id}


@router.get("/jobs/{job_id}/files/{name}", response_class=FileResponse,
            responses={**media_reply("The file (with local storage), as an attachment.",
                                     sorted({*FILE_MEDIA_TYPES.values(), "application/octet-stream"})),
                       307: {"description": "With S3 storage: a presigned URL of the file, valid for "
                                            "INFERENCE_PRESIGNED_URL_SECONDS.",
                             "headers": {"Location": {"description": "The presigned URL.",
                                                      "schema": {"type": "string"}}}}})
async def download_file(job_id: str, name: str, services: Services = Depends(get_services)) -> Response:
    job = await services.job(job_id)
    if job.status != JobStatus.completed:
        raise Conflict(f"Job '{job_id}' is {job.status}; its files are available once it is completed")
    names = [f.name for f in job.files]
    if name not in names:
        raise NotFound(f"Job '{job_id}' has no file '{name}'; it has {', '.join(names)}")
    location = await asyncio.to_thread(services.store.result_location, job, name)
    if isinstance(location, str):
        return RedirectResponse(location, status_code=307)
    return FileResponse(location, filename=name,
                        media_type=FILE_MEDIA_TYPES.get(Path(name).suffix.lstrip("."), "application/octet-stream"))
