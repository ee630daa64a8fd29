"""What every batching family shares: its `user_config` (how many requests share one model call, how long a
batch waits to fill) and the body of a @serve.batch method that runs requests in groups.

A batch gathers requests that cannot all go through one model call (another model, another adapter, other
settings), so it is split by a key into groups, each group runs as one call, and each request gets its own
result back in order. A group that fails hands its error to its own requests only: the batch's other
requests still get their answers, and each caller raises what it got (`raise_failed`)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from deployments.errors import ServiceError

logger = logging.getLogger(__name__)
Item = TypeVar("Item")


class BatchConfig(BaseModel):
    """A batching family's `user_config`, changed live by `reconfigure`. A family subclasses it, setting its
    defaults and the largest batch its max_ongoing_requests is sized for as class variables, and adds fields
    of its own. max_batch_size 1 switches batching off."""

    model_config = ConfigDict(extra="forbid")
    default_batch: ClassVar[int] = 8
    default_wait_s: ClassVar[float] = 0.02
    largest_batch: ClassVar[int | None] = None

    max_batch_size: int = Field(8, ge=1, description="Requests per model call (1 = no batching); the family's "
                                "default unless set.")
    batch_wait_timeout_s: float = Field(0.02, ge=0, description="How long a batch waits to fill; the family's "
                                        "default unless set.")

    @model_validator(mode="before")
    @classmethod
    def _family_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {"max_batch_size": cls.default_batch, "batch_wait_timeout_s": cls.default_wait_s, **data}
        return data

    @field_validator("max_batch_size")
    @classmethod
    def _within_largest(cls, value: int) -> int:
        if cls.largest_batch is not None and value > cls.largest_batch:
            raise ValueError(f"max_batch_size is at most {cls.largest_batch} here (the deployment's "
                             "max_ongoing_requests is sized for it)")
        return value


async def run_in_groups(items: Sequence[Item], key: Callable[[Item], Hashable],
                        run: Callable[[list[Item]], Awaitable[list[Any]]], what: str) -> list[Any]:
    """`run(group)` once per group of `items` with equal `key(item)` (one result per item of the group); the
    results in the items' order, a failed group's error in place of each of its results. `what` names the
    work in the log line of an unexpected failure (a ServiceError is the caller's fault, not logged)."""
    groups: dict[Hashable, list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(key(item), []).append(i)
    results: list[Any] = [None] * len(items)
    for group_key, indices in groups.items():
        group = [items[i] for i in indices]
        try:
            outcomes = await run(group)
        except Exception as error:  # noqa: BLE001 - handed back to this group's requests
            if not isinstance(error, ServiceError):
                logger.exception("%s failed for %d requests (group %s)", what, len(group), group_key)
            outcomes = [error] * len(group)
        for i, outcome in zip(indices, outcomes, strict=True):
            results[i] = outcome
    return results


def raise_failed(result: Any) -> Any:
    """A result of run_in_groups as its caller takes it: the group's error raised, else the result."""
    if isinstance(result, Exception):
        raise result
    return result
