"""The ingress side of jobs: hand each new job to its family deployment, and re-dispatch the jobs
that a restart or a lost replica left pending.

Serve does not retry a request whose replica died, so a job is only ever "done" when a worker
committed it; everything else is found again here by the periodic sweep over the store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ray.serve.handle import DeploymentHandle

from deployments.jobs.store import Job, JobStatus, JobStore

logger = logging.getLogger(__name__)


class JobDispatcher:
    def __init__(self, store: JobStore, handle_for: Callable[[Job], DeploymentHandle | None],
                 lease_seconds: float, max_attempts: int, retry_seconds: float = 2.0):
        self.store = store
        self._handle_for = handle_for
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.retry_seconds = retry_seconds
        self._in_flight: set[asyncio.Task] = set()

    def dispatch(self, job: Job) -> None:
        """Send the job to its deployment without waiting for it to finish."""
        task = asyncio.get_running_loop().create_task(self._send(job))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _send(self, job: Job) -> None:
        for attempt in range(self.max_attempts):
            handle = self._handle_for(job)
            if handle is None:
                logger.warning("job %s: model %s is not deployed in this application; left pending", job.id, job.model)
                return
            try:
                outcome = await handle.run_job.remote(job.id)
                logger.info("job %s ended %s", job.id, outcome)
                return
            except Exception:  # the replica died or refused: retry while the job is still unclaimed
                logger.exception("job %s: dispatch attempt %d failed", job.id, attempt + 1)
                await asyncio.sleep(self.retry_seconds)
                current = await asyncio.to_thread(self.store.get_job, job.id)
                if current is None or current.status != JobStatus.pending:
                    return

    async def sweep_forever(self, period_seconds: float) -> None:
        """At start, dispatch every pending job (queued by a replica that is gone); then, every
        period, re-queue and dispatch jobs whose worker stopped heart-beating."""
        for job in await asyncio.to_thread(self.store.list_jobs, JobStatus.pending, 10_000):
            self.dispatch(job)
        while True:
            await asyncio.sleep(period_seconds)
            try:
                lost = await asyncio.to_thread(self.store.requeue_lost, self.lease_seconds, self.max_attempts)
            except Exception:
                logger.exception("job sweep failed; trying again next period")
                continue
            for job in lost:
                logger.warning("job %s: worker lost, re-queued (attempt %d next)", job.id, job.attempts + 1)
                self.dispatch(job)
