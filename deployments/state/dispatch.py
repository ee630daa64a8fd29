"""The ingress side of jobs: hand each new job to its family deployment, and re-dispatch the jobs
that a restart, a lost replica or a full queue left pending.

Serve does not retry a request whose replica died, so a job is only ever "done" when a worker
committed it; everything else is found again here by the periodic sweep over the store. A pending job
carries a dispatch lease (`dispatched_at`), renewed by the ingress replica that holds its request in
flight: the sweep of any ingress replica dispatches the pending jobs whose lease ran out. A model whose
queue is full (back-pressure) means "later", never "give up": the job waits with a growing pause, and
is woken sooner, in arrival order, when one of this replica's jobs for the same model ends (its place in
the queue is then free), so a model does not idle between a full queue's tries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle

from deployments.state.store import Job, JobStatus, JobStore

logger = logging.getLogger(__name__)
MAX_PAUSE_SECONDS = 10.0  # the longest wait between two tries at a full queue


class JobDispatcher:
    def __init__(self, store: JobStore, handle_for: Callable[[Job], DeploymentHandle | None],
                 lease_seconds: float, max_attempts: int, retry_seconds: float = 2.0):
        self.store = store
        self._handle_for = handle_for
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.retry_seconds = retry_seconds
        self._in_flight: dict[str, asyncio.Task] = {}  # job id -> its request, while this replica holds it
        self._place_freed: dict[str, asyncio.Condition] = {}  # model -> jobs waiting for room in its queue

    def dispatch(self, job: Job) -> None:
        """Send the job to its deployment without waiting for it to finish (once per job at a time)."""
        if job.id in self._in_flight:
            return
        task = asyncio.get_running_loop().create_task(self._send(job))
        self._in_flight[job.id] = task
        task.add_done_callback(lambda _: self._in_flight.pop(job.id, None))

    async def _send(self, job: Job) -> None:
        failures, pause = 0, self.retry_seconds
        while True:
            handle = self._handle_for(job)
            if handle is None:
                logger.warning("job %s: model %s is not deployed in this application; left pending", job.id, job.model)
                return
            try:
                outcome = await handle.run_job.remote(job.id)
                logger.info("job %s ended %s", job.id, outcome)
                await self._free_a_place(job.model)
                return
            except BackPressureError:  # the model's queue is full: try again later, for as long as it takes
                logger.info("job %s: %s's queue is full; trying again within %.1fs", job.id, job.model, pause)
                await self._wait_for_a_place(job.model, pause)
                pause = min(pause * 2, MAX_PAUSE_SECONDS)
            except Exception:  # the replica died or refused: retry a few times while the job is unclaimed
                failures += 1
                logger.exception("job %s: dispatch attempt %d failed", job.id, failures)
                await self._free_a_place(job.model)
                if failures >= self.max_attempts:
                    return  # still pending: its lease runs out and a sweep dispatches it again
                await asyncio.sleep(self.retry_seconds)
            current = await asyncio.to_thread(self.store.get_job, job.id)
            if current is None or current.status != JobStatus.pending:
                return

    async def _wait_for_a_place(self, model: str, longest: float) -> None:
        """Until a job of ours for `model` ends, or `longest` seconds (others, e.g. direct requests or
        another ingress replica's jobs, may hold the queue too: their ends are not seen here)."""
        freed = self._place_freed.setdefault(model, asyncio.Condition())
        async with freed:
            try:
                await asyncio.wait_for(freed.wait(), longest)
            except TimeoutError:
                pass

    async def _free_a_place(self, model: str) -> None:
        """Wake the job that has waited longest for room in `model`'s queue: one ended, so one may go."""
        freed = self._place_freed.get(model)
        if freed is not None:
            async with freed:
                freed.notify(1)

    async def sweep_forever(self, period_seconds: float) -> None:
        """Every period: renew the dispatch lease of the jobs this replica holds in flight, dispatch the
        pending jobs whose lease ran out (queued by a replica that is gone, or given up on), and re-queue
        running jobs whose worker stopped heart-beating."""
        while True:
            try:
                await asyncio.to_thread(self.store.renew_dispatch, list(self._in_flight))
                for job in await asyncio.to_thread(self.store.undispatched, self.lease_seconds, list(self._in_flight)):
                    self.dispatch(job)
                lost = await asyncio.to_thread(self.store.requeue_lost, self.lease_seconds, self.max_attempts)
            except Exception:
                logger.exception("job sweep failed; trying again next period")
            else:
                for job in lost:
                    logger.warning("job %s: worker lost, re-queued (attempt %d next)", job.id, job.attempts + 1)
                    self.dispatch(job)
            await asyncio.sleep(period_seconds)
