"""What every family deployment shares: ask the manager for files, load each model once per replica."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import resource
import time
from collections.abc import Callable
from typing import Any

import ray
from pydantic import BaseModel
from ray import serve
from ray.serve.exceptions import RayServeException

from deployments.errors import InvalidRequest, ModelNotFound
from deployments.model_cache.manager import get_model_manager
from deployments.serving.replica_board import get_replica_board
from deployments.serving.service_metrics import ModelGauges
from deployments.serving.torch_threads import run_once
from deployments.settings import ServiceSettings
from deployments.state.runner import JobRunner
from deployments.state.store import JobStore
from registry import Catalog, ModelEntry, UnknownModelError
from registry.runtime import LiveCatalog

logger = logging.getLogger(__name__)


def pick_device(settings: ServiceSettings) -> str:
    """CUDA when Serve gave this replica a GPU; else CPU with the configured number of threads."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    torch.set_num_threads(cpu_thread_count(settings))
    return "cpu"


def generation_dtype(device: str, settings: ServiceSettings):
    """The dtype a generative model decodes in: bfloat16 on a GPU; on a CPU, settings.cpu_dtype, whose auto
    takes bfloat16 only where the CPU has native bfloat16 matrix instructions (elsewhere it is emulated, and
    slower than float32)."""
    import torch

    if device == "cuda":
        return torch.bfloat16
    if settings.cpu_dtype == "auto":
        capabilities = torch.cpu.get_capabilities()
        native = capabilities.get("amx_bf16", False) or capabilities.get("avx512_bf16", False)
        return torch.bfloat16 if native else torch.float32
    return getattr(torch, settings.cpu_dtype)


def cpu_thread_count(settings: ServiceSettings) -> int:
    """Torch threads of a CPU replica: settings.cpu_threads, else every core but one (left to the proxy)."""
    return settings.cpu_threads or max(1, (os.cpu_count() or 1) - 1)


class LoadedModels:
    """Models loaded in this replica, keyed by catalog id, each loaded by exactly one caller.

    `load(paths)` receives the manager's local snapshot folders ({role: path}) and runs in a
    thread so the replica keeps answering health checks while weights load. A model whose files
    were removed from the cache (DELETE /models/download/{name}) is dropped on its next use, in
    every replica, and downloaded again. Each change is reported to the cluster's ReplicaBoard.
    """

    def __init__(self, settings: ServiceSettings, load: Callable[[ModelEntry, dict[str, str]], Any],
                 max_models: int = 0, conversion: Callable[[ModelEntry], str | None] = lambda entry: None):
        self._manager = get_model_manager(settings)
        self._load = load
        self._conversion = conversion  # the converted copy a model's engine reads (paths["converted"]), if any
        self._max_models = max_models  # 0: no limit; else the least recently used model goes first
        self._models: dict[str, Any] = {}
        self._paths: dict[str, dict[str, str]] = {}
        self._parameters: dict[str, int] = {}  # counted at load time (int8 packing hides them later)
        self._optimized: dict[str, str] = {}  # model id -> how it was optimized
        self._load_stats: dict[str, dict] = {}  # model id -> seconds and peak memory of its load
        self._last_used: dict[str, float] = {}
        self._loading: set[str] = set()
        self._failed: dict[str, str] = {}  # model id -> why its last load failed
        self._loads: dict[str, asyncio.Future] = {}  # model id -> its load under way
        self._board = get_replica_board(settings)
        self._replica, self._app, self._deployment = _replica_identity()
        self._gauges = ModelGauges()

    async def get(self, entry: ModelEntry) -> Any:
        self._drop_removed()
        self._last_used[entry.id] = time.time()
        if entry.id in self._models:
            return self._models[entry.id]
        load = self._loads.get(entry.id)
        if load is None:  # the first caller starts the one load; later callers wait on the same one
            load = self._loads[entry.id] = asyncio.ensure_future(self._load_reported(entry))
            load.add_done_callback(lambda done: self._forget_load(entry.id, done))
        # Shielded: a caller that gives up (its request timed out or was cancelled) leaves the load running
        # for the next one, rather than killing a load that takes longer than any single request may wait.
        await asyncio.shield(load)
        return self._models[entry.id]

    def _forget_load(self, model_id: str, done: asyncio.Future) -> None:
        self._loads.pop(model_id, None)
        if not done.cancelled():
            done.exception()  # retrieved here: a load every caller gave up on logs no "never retrieved"

    async def _load_reported(self, entry: ModelEntry) -> None:
        self._loading.add(entry.id)
        self._report()
        try:
            await self._load_new(entry)
        except Exception as error:
            self._failed[entry.id] = f"{type(error).__name__}: {error}"
            raise
        finally:
            self._loading.discard(entry.id)
            self._report()

    async def _load_new(self, entry: ModelEntry) -> None:
        node = ray.get_runtime_context().get_node_id()
        paths = await self._manager.ensure.remote(entry.id, entry.repos, node)
        conversion = self._conversion(entry)
        if conversion:
            paths = {**paths, "converted": await self._manager.convert.remote(entry.id, entry.repos, conversion, node)}
        while self._max_models and len(self._models) >= self._max_models:  # least recently used goes
            self.unload(min(self._models, key=lambda m: self._last_used.get(m, 0)))
        started, memory = time.monotonic(), MemoryProbe()
        model = await run_once(self._load, entry, paths)  # its OpenMP threads go with it (torch_threads.py)
        self._load_stats[entry.id] = {"load_seconds": round(time.monotonic() - started, 3), **memory.peak()}
        self._gauges.loaded(entry.id, self._load_stats[entry.id])
        self._paths[entry.id] = paths
        self._parameters[entry.id] = sum(p.numel() for m in _modules(model) for p in m.parameters())
        self._models[entry.id] = model
        self._failed.pop(entry.id, None)
        if entry.id in await self._board.optimized_wanted.remote():  # optimized in the other replicas
            try:
                await self._optimize_loaded(entry.id, model)
            except Exception:  # the model serves unoptimized rather than not at all
                logger.exception("optimizing %s after its load failed", entry.id)

    def forget(self) -> None:
        """Take this replica's report off the board (it is shutting down)."""
        self._board.forget.remote(self._replica)

    def loaded(self) -> list[str]:
        self._drop_removed()
        return list(self._models)

    def unload(self, model_id: str) -> bool:
        """Forget a loaded model (its memory goes with the last reference); True if it was loaded."""
        self._paths.pop(model_id, None)
        self._parameters.pop(model_id, None)
        self._optimized.pop(model_id, None)
        self._load_stats.pop(model_id, None)
        unloaded = self._models.pop(model_id, None) is not None
        if unloaded:
            self._gauges.unloaded(model_id)
            gc.collect()  # a model's modules hold reference cycles; free them now, not at some later pass
            _empty_gpu_cache()
            self._report()
        return unloaded

    async def optimize(self, entry: ModelEntry) -> dict:
        """Reduced precision in place: fp16 weights on GPU, dynamic int8 Linear layers on CPU."""
        model = await self.get(entry)
        await self._optimize_loaded(entry.id, model)
        return self._describe(entry.id, model)

    async def sync(self) -> None:
        """Follow the board's optimize wishes for loaded models, then report (every health check)."""
        self._drop_removed()
        for model_id in (await self._board.optimized_wanted.remote()) & set(self._models) - set(self._optimized):
            await self._optimize_loaded(model_id, self._models[model_id])
        for model_id, stats in self._load_stats.items():  # set again: Ray exports a gauge set long ago no more
            self._gauges.loaded(model_id, stats)
        self._report()

    async def _optimize_loaded(self, model_id: str, model: Any) -> None:
        import torch

        if model_id in self._optimized:
            return
        modules = _modules(model)
        if not modules:
            raise InvalidRequest(f"Model '{model_id}' has no torch modules to optimize")
        on_gpu = any(p.is_cuda for m in modules for p in m.parameters())
        for module in modules:
            if on_gpu:
                module.half()
            else:
                await run_once(torch.ao.quantization.quantize_dynamic, module, {torch.nn.Linear}, dtype=torch.qint8,
                               inplace=True)
        self._optimized[model_id] = "float16" if on_gpu else "dynamic-int8"
        self._report()

    def _report(self) -> None:
        """Tell the board what this replica holds now, per model: device, memory, parameters, optimized
        (GET /models/managed). Fire and forget: calls from here arrive in order."""
        models = [self._describe(model_id, model) for model_id, model in self._models.items()]
        self._board.report.remote(self._replica, self._app, self._deployment,
                                  ray.get_runtime_context().get_node_id(), models,
                                  {"loading": sorted(self._loading), "failed": dict(self._failed)})

    def _describe(self, model_id: str, model: Any) -> dict:
        import torch

        modules = _modules(model)
        values = [v for m in modules for v in m.state_dict().values()]
        values += [t for v in values if isinstance(v, tuple) for t in v]  # int8 Linear packs (weight, bias)
        tensors = {id(t): t for t in values if isinstance(t, torch.Tensor)}
        devices = sorted({str(t.device) for t in tensors.values()}) or ["cpu"]
        weight_bytes = sum(t.numel() * t.element_size() for t in tensors.values())
        if devices[0].startswith("cuda"):
            device = torch.device(devices[0])
            memory = {"allocated_mb": torch.cuda.memory_allocated(device) / 2**20,
                      "reserved_mb": torch.cuda.memory_reserved(device) / 2**20}
        else:
            memory = {"allocated_mb": weight_bytes / 2**20, "reserved_mb": weight_bytes / 2**20}
        return {
            "name": model_id,
            "loaded": True,
            "device": devices[0],
            "optimized": model_id in self._optimized,
            "optimization": self._optimized.get(model_id),
            "memory_usage": {k: round(v, 3) for k, v in memory.items()},
            "weight_bytes": weight_bytes,
            "parameters": self._parameters.get(model_id, 0),
            "dtypes": sorted({str(t.dtype).removeprefix("torch.") for t in tensors.values()}),
            "load": self._load_stats.get(model_id, {}),
            "idle_s": round(time.time() - self._last_used.get(model_id, time.time()), 1),
        }

    def _drop_removed(self) -> None:
        for model_id, paths in list(self._paths.items()):
            if not all(os.path.exists(p) for p in paths.values()):
                self.unload(model_id)


class MemoryProbe:
    """Peak memory a load adds: GPU peak allocated when CUDA is up, else growth of the process' peak RSS."""

    def __init__(self):
        import torch

        self._cuda = torch.cuda.is_available()
        if self._cuda:
            torch.cuda.reset_peak_memory_stats()
            self._start = torch.cuda.memory_allocated()
        else:
            self._start = _rss_bytes()

    def peak(self) -> dict:
        import torch

        if self._cuda:
            return {"peak_memory_mb": round((torch.cuda.max_memory_allocated() - self._start) / 2**20, 1),
                    "memory_kind": "cuda-allocated"}
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
        return {"peak_memory_mb": round(max(peak - self._start, _rss_bytes() - self._start, 0) / 2**20, 1),
                "memory_kind": "rss-growth"}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _empty_gpu_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _replica_identity() -> tuple[str, str, str]:
    """This replica's id, application and deployment name (a process id outside Serve, e.g. in a benchmark)."""
    try:
        context = serve.get_replica_context()
        return context.replica_id.unique_id, context.app_name, context.deployment
    except RayServeException:
        return f"process-{os.getpid()}", "", ""


def _modules(model: Any) -> list:
    """The torch modules a loaded model holds: those its engine names (`torch_modules()`), itself, or its
    attributes one level down (pipelines, bags)."""
    import torch

    if hasattr(model, "torch_modules"):
        return model.torch_modules()
    if isinstance(model, torch.nn.Module):
        return [model]
    found = [v for v in vars(model).values() if isinstance(v, torch.nn.Module)] if hasattr(model, "__dict__") else []
    if not found and isinstance(model, (tuple, list)):
        found = [v for v in model if isinstance(v, torch.nn.Module)]
    return found


class FamilyDeployment:
    """Base of every family deployment: its catalog, device, job store and runner, its loaded models,
    and its part in the management API (reports to the ReplicaBoard for GET /models/managed;
    DELETE /models/download/{name}; POST /models/manage action=optimize). Subclasses define
    `_load(entry, paths)`."""

    # The deployment's `user_config` schema, and the @serve.batch methods that follow its
    # max_batch_size / batch_wait_timeout_s (1 switches batching off); reconfigure() applies both.
    config_class: type[BaseModel] | None = None
    batched_methods: tuple[str, ...] = ()
    # The engines a model of this family may name (catalog `engine`, profile `engines:`), first the default.
    engines: tuple[str, ...] = ()
    _config: Any  # an instance of config_class, whose fields each family reads

    def __init__(self, catalog: Catalog, settings: ServiceSettings, model_id: str | None = None):
        """`model_id`: the one catalog model this deployment serves, loaded as the replica starts (a
        replica exists because the model is warm or was just asked for). None: a family pool serving
        models registered at run time, the least recently used unloaded past `pool_max_models`."""
        settings.apply_log_level()
        self._settings = settings
        self._store = JobStore.from_settings(settings)
        self._catalog = LiveCatalog(catalog, self._store.runtime_models())  # plus models added at run time
        self._model_id = model_id
        self._device = pick_device(settings)
        self._jobs = JobRunner(self._store, settings.job_heartbeat_seconds)
        self._models = LoadedModels(settings, self._load, 1 if model_id else settings.pool_max_models,
                                    self._conversion)
        if self.config_class is not None:
            self.reconfigure({})
        self._warming = asyncio.get_running_loop().create_task(self.ready()) if model_id else None

    def reconfigure(self, config: dict[str, Any]) -> None:
        """Serve calls this with the deployment's user_config at start and whenever it changes (live)."""
        if self.config_class is None:
            raise ValueError(f"{type(self).__name__} takes no user_config")
        self._config = self.config_class.model_validate(config or {})
        for name in self.batched_methods:
            batched = getattr(self, name)
            batched.set_max_batch_size(self._config.max_batch_size)
            batched.set_batch_wait_timeout_s(self._config.batch_wait_timeout_s)

    def _load(self, entry: ModelEntry, paths: dict[str, str]) -> Any:
        raise NotImplementedError

    def _conversion(self, entry: ModelEntry) -> str | None:
        """The converted copy (model_cache/conversions.py) the entry's engine loads, or None: the hub files."""
        return None

    def _entry(self, model: str | None, task: str | None) -> ModelEntry:
        """The catalog entry `model` names for `task` (None: this deployment's own model); callers through a
        Python handle skip the ingress' checks, so an unknown name is a 404 here too."""
        if model is None:
            if self._model_id is None:
                raise InvalidRequest(f"{type(self).__name__} here is a pool of models added at run time: "
                                     "name the model with model=...")
            model = self._model_id
        try:
            entry = self._catalog.resolve(model, task=task)
        except UnknownModelError as missing:
            raise ModelNotFound(str(missing)) from None
        if self._model_id and entry.id != self._model_id:
            raise InvalidRequest(f"Deployment '{self._model_id}' serves model '{self._model_id}' only; "
                                 f"call the '{entry.id}' deployment for '{entry.id}'")
        return entry

    async def ready(self, model_id: str | None = None) -> dict:
        """Load this deployment's model (at start, when the ingress waits for a cold start, after a download
        that asked to load it); what it loaded. A pool loads the run-time model `model_id`, if named."""
        name = self._model_id or model_id
        if not name:
            return {"name": None, "loaded": False}
        entry = self._catalog.models[name] if self._model_id else self._entry(name, None)
        try:
            await self._models.get(entry)
        except Exception:
            if asyncio.current_task() is self._warming:  # no caller to tell: the board shows it failed
                logger.exception("loading %s at start failed", name)
                return {"name": name, "loaded": False}
            raise
        return {"name": name, "loaded": True}

    def loaded_models(self) -> list[str]:
        return self._models.loaded()

    def unload(self, model_id: str) -> bool:
        return self._models.unload(model_id)

    async def optimize(self, model_id: str) -> dict:
        """Reduced precision for this replica's copy, without a reload."""
        return await self._models.optimize(self._catalog.models[model_id])

    def __del__(self):
        """Serve calls this when it stops the replica (scale-down, redeploy): the board forgets it."""
        models = getattr(self, "_models", None)
        if models is not None:
            try:
                models.forget()
            except Exception:  # Ray shutting down: the report ages out instead
                pass

    async def check_health(self) -> None:
        """Serve calls this every health_check_period_s: report loaded models, follow optimize wishes."""
        try:
            await self._models.sync()
        except Exception:  # the board being away, or a failed optimize, does not make the replica unfit
            logger.exception("replica board sync failed")
