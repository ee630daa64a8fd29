"""What every family deployment shares: ask the manager for files, load each model once per replica."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

from deployments.model_manager import get_model_manager
from deployments.settings import ServiceSettings
from registry import ModelEntry


def pick_device(settings: ServiceSettings) -> str:
    """CUDA when Serve gave this replica a GPU; else CPU with the configured number of threads."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    torch.set_num_threads(settings.cpu_threads or max(1, (os.cpu_count() or 1) - 1))
    return "cpu"


class LoadedModels:
    """Models loaded in this replica, keyed by catalog id, each loaded by exactly one caller.

    `load(paths)` receives the manager's local snapshot folders ({role: path}) and runs in a
    thread so the replica keeps answering health checks while weights load.
    """

    def __init__(self, settings: ServiceSettings, load: Callable[[ModelEntry, dict[str, str]], Any]):
        self._manager = get_model_manager(settings)
        self._load = load
        self._models: dict[str, Any] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, entry: ModelEntry) -> Any:
        if entry.id in self._models:
            return self._models[entry.id]
        async with self._locks.setdefault(entry.id, asyncio.Lock()):
            if entry.id not in self._models:
                paths = await self._manager.ensure.remote(entry.id, entry.repos)
                self._models[entry.id] = await asyncio.to_thread(self._load, entry, paths)
        return self._models[entry.id]

    def loaded(self) -> list[str]:
        return list(self._models)
