"""The replica's one decoding loop: continuous batching across requests.

Requests wait in a queue; between two decoding steps the loop lets waiting rows join their model's
running batch (up to `max_batch_size` rows in all), so a short answer never waits for a long one, and
a finished or abandoned row leaves at once. `scheduling: static` is the older policy, kept to measure
against: a batch forms (waiting up to `batch_wait_timeout_s` to fill), then admits nobody until all its
rows are done.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from deployments.errors import ServiceError
from deployments.families.chat.decoding import Batch, ChatModel, Row
from deployments.families.chat.protocol import Step
from deployments.serving.torch_threads import run_inference

logger = logging.getLogger(__name__)


class Scheduler:
    def __init__(self, load: Callable[[str], Awaitable[ChatModel]], device: str, config: Callable[[], Any]):
        """`load(model_id)`: the loaded model; `config()`: the deployment's current ChatConfig."""
        self._load, self._device, self._config = load, device, config
        self._waiting: list[Row] = []
        self._batches: dict[str, Batch] = {}
        self._loop: asyncio.Task | None = None

    async def run(self, row: Row) -> AsyncIterator[Step]:
        """The row's steps as the loop decodes them; when the caller stops listening (a client closed its
        stream, Serve cancelled the request), the row is marked so the loop drops it."""
        self._waiting.append(row)
        if self._loop is None or self._loop.done():
            self._loop = asyncio.get_running_loop().create_task(self._decode())
        try:
            while True:
                step = await row.outbox.get()
                if isinstance(step, BaseException):
                    raise step
                yield step
                if step.finish_reason is not None:
                    return
        finally:
            row.abandoned = True

    async def _decode(self) -> None:
        try:
            await self._steps()
        except Exception as error:  # a bug here must not leave callers waiting for steps that never come
            logger.exception("the chat decoding loop failed")
            self._fail([*self._waiting, *(row for batch in self._batches.values() for row in batch.rows)], error)
            self._waiting, self._batches = [], {}

    async def _steps(self) -> None:
        while self._waiting or self._batches:
            await self._admit()
            for model_id, batch in list(self._batches.items()):
                if batch.states:
                    rows = batch.rows
                    self._deliver(await self._guarded(batch, batch.step), rows)
                if not batch.states:
                    del self._batches[model_id]
            await asyncio.sleep(0)  # let new requests reach the queue

    async def _admit(self) -> None:
        config = self._config()
        running = sum(len(batch.states) for batch in self._batches.values())
        if config.scheduling == "static" and running:
            return
        if not running and self._waiting and len(self._waiting) < config.max_batch_size:
            await self._gather(config)  # idle: let a batch fill for a moment, so its prompts prefill together
        room = config.max_batch_size - running
        taken = [row for row in self._waiting if not row.abandoned][:room]
        joining: dict[str, list[Row]] = {}
        for row in taken:
            batch = self._batches.get(row.model)
            if batch is None or batch.can_join() or not batch.states:
                joining.setdefault(row.model, []).append(row)
        admitted = {id(row) for rows in joining.values() for row in rows}
        self._waiting = [row for row in self._waiting if not row.abandoned and id(row) not in admitted]
        for model_id, rows in joining.items():
            try:
                chat_model = await self._load(model_id)
            except Exception as error:  # noqa: BLE001 - handed to the rows of that model only
                self._fail(rows, error)
                continue
            batch = self._batches.get(model_id) or self._batches.setdefault(model_id, Batch(chat_model, self._device))
            self._deliver(await self._guarded(batch, functools.partial(batch.join, rows), rows), rows)

    async def _gather(self, config) -> None:
        deadline = time.monotonic() + config.batch_wait_timeout_s
        while len(self._waiting) < config.max_batch_size and time.monotonic() < deadline:
            await asyncio.sleep(min(0.005, config.batch_wait_timeout_s))

    async def _guarded(self, batch: Batch, work: Callable[[], list[Step]], rows: list[Row] | None = None) -> list:
        """`work()`, then the finished rows' leaving, on the replica's inference thread (every tensor operation
        stays on that thread: see torch_threads.py); if it fails, its rows (all the batch's by default) get the
        error and leave."""
        def then_leave() -> list[Step]:
            steps = work()
            batch.leave()
            return steps

        try:
            return await run_inference(then_leave)
        except Exception as error:  # noqa: BLE001 - handed to the callers
            if not isinstance(error, ServiceError):
                logger.exception("chat decoding failed for %d requests", len(rows or batch.states))
            failed = rows or batch.rows
            self._fail(failed, error)
            for state in batch.states:
                if state.row in failed:
                    state.done = True
            if rows is None:
                batch.states = []
            await run_inference(batch.leave)
            return []

    @staticmethod
    def _deliver(steps: list[Step], rows: list[Row]) -> None:
        for row, step in zip(rows, steps):
            if step.finish_reason != "abandoned":
                row.outbox.put_nowait(step)

    @staticmethod
    def _fail(rows: list[Row], error: BaseException) -> None:
        for row in rows:
            row.outbox.put_nowait(error)
