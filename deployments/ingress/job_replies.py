"""How a job is shown and answered: the JSON of a job, waiting for it (`?wait=`), 202 or 200.
Apart from job_routes so that routes which queue jobs (uploads, videos) can answer with one."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from fastapi import Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from deployments.ingress.replies import job_reply_doc
from deployments.ingress.services import Services
from deployments.state.store import FINISHED, Job, JobStatus

WAIT_QUERY = Query(None, ge=0, le=600, description="Seconds to wait for the job to finish before answering.")


class JobFileView(BaseModel):
    name: str
    size: int = Field(description="Bytes.")
    url: str = Field(description="Where to download it: /jobs/{job_id}/files/{name}.")


class JobReply(BaseModel):
    """A job as every job route shows it (render_job)."""

    success: bool
    job_id: str
    status: JobStatus
    task: str
    model: str = Field(description="Catalog id of the model that runs it.")
    progress: float = Field(description="0-1.")
    message: str | None
    error: str | None = Field(description="Why it failed.")
    input: dict[str, Any] = Field(description="The task input as stored, checked when the job was queued.")
    files: list[JobFileView] = Field(description="Result files (a completed job's).")
    output: dict[str, Any] | None = Field(description="Results that are not files, once it completed.")
    attempts: int = Field(description="Workers that took it; a job is re-run when its worker is lost.")
    created_at: str | None = Field(description="ISO 8601, UTC; as the two below.")
    started_at: str | None
    finished_at: str | None
    status_url: str = Field(description="/jobs/{job_id}.")


JOB_REPLY = job_reply_doc(JobReply)  # a route that queues a job: 202, or 200 once it finished within `wait`


def _iso(timestamp: float | None) -> str | None:
    return datetime.fromtimestamp(timestamp, UTC).isoformat() if timestamp else None


def render_job(job: Job) -> dict[str, Any]:
    return {
        "success": True,
        "job_id": job.id,
        "status": job.status,
        "task": job.task,
        "model": job.model,
        "progress": job.progress,
        "message": job.message,
        "error": job.error,
        "input": job.input,
        "files": [{**f.model_dump(), "url": f"/jobs/{job.id}/files/{f.name}"} for f in job.files],
        "output": job.output,
        "attempts": job.attempts,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "status_url": f"/jobs/{job.id}",
    }


async def wait_for(services: Services, job: Job, wait: float | None) -> Job:
    """The job once it finished, or as it stands when `wait` seconds ran out."""
    deadline = time.monotonic() + (wait or 0)
    while wait and job.status not in FINISHED and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        job = await services.job(job.id)
    return job


async def job_reply(services: Services, job: Job, wait: float | None) -> JSONResponse:
    """202 with the job as queued, or, with `wait`, the job as it stands when it finished (200) or
    when the wait ran out (202)."""
    job = await wait_for(services, job, wait)
    return JSONResponse(render_job(job), status_code=200 if job.status in FINISHED else 202,
                        headers={"Location": f"/jobs/{job.id}"})
