"""The threads a replica's torch work runs on: one long-lived thread for every inference call, and a thread
of its own, which then exits, for each model load.

Why: torch's CPU kernels run on libgomp (OpenMP), which gives every thread that starts a parallel region a
team of its own and counts the threads of all teams, idle or not. Once they outnumber the cores, every team
stops spinning between parallel regions and sleeps instead, so each of a decoding step's hundreds of regions
pays a wake-up. Measured on 2 cores: a Qwen2.5-0.5B step (16 rows, bfloat16) takes 75 ms while only one
thread has used torch, and 110 ms as soon as a second one has (an `asyncio.to_thread` pool thread that
loaded the model, say), for as long as that thread lives. A thread that exits takes its team with it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_INFERENCE = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="torch")


def inference_executor() -> concurrent.futures.Executor:
    """The one thread for inference calls (for `loop.run_in_executor` callers that hold the future)."""
    return _INFERENCE


async def run_inference(work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`work(*args, **kwargs)` on the replica's inference thread; calls run one after another, as they would
    on the cores anyway."""
    return await asyncio.get_running_loop().run_in_executor(_INFERENCE, functools.partial(work, *args, **kwargs))


async def run_once(work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`work(*args, **kwargs)` on a new thread that exits when it is done (a model load: its OpenMP team goes
    too)."""
    thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="torch-load")
    try:
        return await asyncio.get_running_loop().run_in_executor(thread, functools.partial(work, *args, **kwargs))
    finally:
        thread.shutdown(wait=False)
