"""The worker side of a job, shared by every family deployment that runs jobs.

A family deployment's `run_job(job_id)` hands its own work function to `JobRunner.run`, which
claims the job, keeps its heartbeat (so a lost replica's job is re-queued, not stuck), reports
progress, stops when the job is cancelled, and commits the result files atomically.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deployments.errors import ServiceError
from deployments.state.store import Job, JobStore

logger = logging.getLogger(__name__)


class JobCancelled(Exception):
    """Raised inside the work when the job was cancelled; the runner discards its output."""


@dataclass
class JobContext:
    """What the work function gets: the job, a folder for its result files, and `report`."""

    job: Job
    output_dir: Path
    store: JobStore
    min_report_interval: float = 0.5
    _last_report: float = 0.0
    stopped: threading.Event = field(default_factory=threading.Event)

    def report(self, progress: float, message: str | None = None) -> None:
        """Record progress (0..1, throttled) from any thread; raise JobCancelled once the job stopped."""
        if self.stopped.is_set():
            raise JobCancelled(self.job.id)
        now = time.monotonic()
        if now - self._last_report >= self.min_report_interval or progress >= 1:
            self._last_report = now
            if not self.store.heartbeat(self.job, round(progress, 4), message):
                self.stopped.set()
                raise JobCancelled(self.job.id)


Work = Callable[[JobContext], Awaitable[dict[str, Any] | None]]


class JobRunner:
    def __init__(self, store: JobStore, heartbeat_seconds: float):
        self.store = store
        self.heartbeat_seconds = heartbeat_seconds

    async def run(self, job_id: str, work: Work) -> str:
        """Run the job if it is still pending; returns the status it ended in ('skipped' if not ours)."""
        job = await asyncio.to_thread(self.store.claim, job_id)
        if job is None:
            return "skipped"
        with self.store.job_staging(job) as output_dir:
            context = JobContext(job, output_dir, self.store)
            beating = asyncio.create_task(self._beat(context))
            try:
                output = await work(context)
            except JobCancelled:
                return "cancelled"
            except ServiceError as error:
                return await self._fail(job, error.message)
            except Exception as error:  # the job fails with the reason; the replica carries on
                logger.exception("job %s (%s) failed", job.id, job.model)
                return await self._fail(job, f"{type(error).__name__}: {error}")
            finally:
                beating.cancel()
            done = await asyncio.to_thread(self.store.complete, job, output_dir, output)
            return "completed" if done else "cancelled"

    async def _fail(self, job: Job, reason: str) -> str:
        await asyncio.to_thread(self.store.fail, job, reason)
        return "failed"

    async def _beat(self, context: JobContext) -> None:
        """Heartbeat while the work runs, also through long silent stretches such as model loading."""
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            if not await asyncio.to_thread(self.store.heartbeat, context.job):
                context.stopped.set()
                return
