"""How a job is shown and answered: the JSON of a job, waiting for it (`?wait=`), 202 or 200.
Apart from job_routes so that routes which queue jobs (uploads, videos) can answer with one."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from fastapi import Query
from fastapi.responses import JSONResponse

from deployments.ingress.services import Services
from deployments.state.store import FINISHED, Job

WAIT_QUERY = Query(None, ge=0, le=600, description="Seconds to wait for the job to finish before answering.")


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
