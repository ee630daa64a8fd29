"""Which deployments a profile runs and with what options: one per catalog model, plus a pool per family
for models registered at run time. Pure data (no Ray): the builder in app.py turns plans into deployments.

Options come in this order, later winning: the family class's decorator defaults -> the catalog (GPU
fraction from `vram_requirement_gb`, warm or scale-to-zero from the task defaults) -> the profile
(`args:` in serve_config*.yaml) -> Serve's own per-deployment overrides by name (`deployments:`),
which Serve applies after the build.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from registry import Catalog, ModelEntry

POOL_SUFFIX = "-pool"
DEFAULT_VRAM_GB = 1.0  # need assumed for a model whose entry names none


class Autoscaling(BaseModel):
    """The profile's autoscaling for every model deployment (Serve's AutoscalingConfig fields)."""

    model_config = ConfigDict(extra="forbid")

    max_replicas: int = Field(1, ge=1)
    target_ongoing_requests: float = Field(8, gt=0)
    upscale_delay_s: float = Field(5, ge=0)
    downscale_delay_s: float = Field(600, ge=0, description="Idle time before a model's replicas go, "
                                     "down to its min_replicas (zero for a model that is not warm).")
    downscale_to_zero_delay_s: float | None = Field(None, ge=0, description="From one replica to none; "
                                                    "downscale_delay_s when unset.")
    look_back_period_s: float = Field(30, gt=0, description="Window Serve averages ongoing requests over: a "
                                      "model's last request counts this long before its downscale delay starts.")


class AppArgs(BaseModel):
    """`args:` of the application in serve_config*.yaml: the profile."""

    model_config = ConfigDict(extra="forbid")

    catalog_path: str | None = Field(None, description="Catalog file; default registry/catalog.yaml.")
    models: list[str] = Field(["all"], description="What to deploy: 'all', 'defaults' (the task defaults), "
                              "family kinds (e.g. 'music') or catalog ids.")
    exclude_models: list[str] = Field(default_factory=list, description="Catalog ids left out of `models`.")
    warm_models: list[str] | None = Field(None, description="Models kept at min_replicas 1 (never scaled "
                                          "to zero); default: each task's default model.")
    runtime_pools: bool | list[str] = Field(True, description="A pool deployment per family (or per family "
                                            "kind listed) for models added at run time (POST /models/download "
                                            "with a task).")
    gpu_memory_gb: float = Field(0, ge=0, description="Memory of one GPU; 0: the models run on CPU and "
                                 "ask Ray for no GPU. Each model asks for vram_requirement_gb / this.")
    gpus: int = Field(1, ge=1, description="GPUs the warm models may fill (checked at build).")
    num_cpus: float = Field(0.2, ge=0, description="Ray CPUs each model replica reserves.")
    cpus: float | None = Field(None, gt=0, description="CPUs the warm replicas and the ingress must fit in "
                               "(checked at build); default: what the Ray the app is built on counts.")
    max_queued_requests: int = Field(-1, ge=-1, description="Requests a model's callers may queue beyond "
                                     "its replicas' max_ongoing_requests before Serve refuses more (a 503 with "
                                     "Retry-After); -1: no bound.")
    autoscaling: Autoscaling = Autoscaling()
    families: dict[str, dict[str, Any]] = Field(default_factory=dict, description="user_config per family "
                                                "kind (batch sizes...), given to each of its deployments.")
    engines: dict[str, str] = Field(default_factory=dict, description="Engine per family kind or catalog id "
                                    "(an id wins), replacing the catalog's `engine`: e.g. {transcription: "
                                    "ctranslate2, embedding: onnx}.")


@dataclass
class DeploymentPlan:
    """One deployment to build: its Serve name, family kind, the model it serves (None for a pool), options."""

    name: str
    kind: str
    model_id: str | None
    options: dict[str, Any] = field(default_factory=dict)
    vram_gb: float = 0.0
    min_replicas: int = 0


def pool_name(kind: str) -> str:
    return f"{kind}{POOL_SUFFIX}"


def selected_models(catalog: Catalog, args: AppArgs, kinds: set[str]) -> list[ModelEntry]:
    """The catalog entries `args.models` names, in catalog order, less `exclude_models`."""
    defaults = {task.default_model for task in catalog.tasks.values()}
    chosen: set[str] = set()
    for item in args.models:
        if item == "all":
            chosen |= set(catalog.models)
        elif item == "defaults":
            chosen |= defaults
        elif item in kinds:
            chosen |= {m.id for m in catalog.models.values() if catalog.families[m.family].deployment == item}
        elif item in catalog.models:
            chosen.add(item)
        else:
            raise ValueError(f"Profile names unknown model or family '{item}' in models; catalog models: "
                             f"{', '.join(catalog.models)}; families: {', '.join(sorted(kinds))}")
    unknown = sorted(set(args.exclude_models) - set(catalog.models))
    if unknown:
        raise ValueError(f"Profile excludes unknown models {unknown}")
    chosen -= set(args.exclude_models)
    return [m for m in catalog.models.values() if m.id in chosen]


def gpu_fraction(vram_gb: float, args: AppArgs) -> float:
    """The share of one GPU a model asks Ray for: its memory need over the GPU's, rounded up to 0.01."""
    if not args.gpu_memory_gb:
        return 0.0
    return min(1.0, max(0.01, math.ceil(100 * vram_gb / args.gpu_memory_gb - 1e-9) / 100))


def plan_deployments(catalog: Catalog, args: AppArgs,
                     class_defaults: dict[str, dict[str, Any]]) -> list[DeploymentPlan]:
    """Every model deployment (and pool) the profile asks for; `class_defaults` maps each family kind to
    its class's options (max_ongoing_requests). Refuses a profile whose warm models cannot fit its GPUs."""
    kinds = set(class_defaults)
    entries = selected_models(catalog, args, kinds)
    warm = set(args.warm_models if args.warm_models is not None else
               [task.default_model for task in catalog.tasks.values()])
    unknown = sorted(warm - set(catalog.models))
    if unknown:
        raise ValueError(f"Profile keeps unknown models warm: {unknown}")
    plans = []
    for entry in entries:
        kind = catalog.families[entry.family].deployment
        plans.append(_plan(entry.id, kind, entry, 1 if entry.id in warm else 0, args, class_defaults[kind]))
    if args.runtime_pools:
        pooled = kinds if args.runtime_pools is True else set(args.runtime_pools)
        unknown = sorted(pooled - kinds)
        if unknown:
            raise ValueError(f"Profile asks for pools of unknown families {unknown}; families: {sorted(kinds)}")
        for kind in [k for k in dict.fromkeys(p.kind for p in plans) if k in pooled]:
            template = next(m for m in catalog.models.values()  # runtime models take its limits
                            if catalog.families[m.family].deployment == kind
                            and m.id == catalog.families[m.family].default_model)
            plans.append(_plan(pool_name(kind), kind, template, 0, args, class_defaults[kind], pool=True))
    _check_gpu_memory(plans, args)
    return plans


def _plan(name: str, kind: str, entry: ModelEntry, min_replicas: int, args: AppArgs, defaults: dict[str, Any],
          pool: bool = False) -> DeploymentPlan:
    vram = entry.specs.vram_requirement_gb if entry.specs.vram_requirement_gb is not None else DEFAULT_VRAM_GB
    user_config = args.families.get(kind)
    batch = int((user_config or {}).get("max_batch_size", 1))
    autoscaling = args.autoscaling.model_dump(exclude_none=True)
    options: dict[str, Any] = {
        "name": name,
        "ray_actor_options": {"num_cpus": args.num_cpus, "num_gpus": gpu_fraction(vram, args)},
        # at least twice the batch, or @serve.batch never fills one
        "max_ongoing_requests": max(defaults.get("max_ongoing_requests", 1), 2 * batch),
        "max_queued_requests": args.max_queued_requests,
        "autoscaling_config": {**autoscaling, "min_replicas": min_replicas, "initial_replicas": min_replicas,
                               "max_replicas": max(autoscaling["max_replicas"], min_replicas)},
    }
    if user_config is not None:
        options["user_config"] = user_config
    return DeploymentPlan(name, kind, None if pool else entry.id, options, vram, min_replicas)


def check_cpus(reservations: dict[str, float], cpus: float | None) -> None:
    """Refuse a profile whose warm replicas and ingress (`reservations`: deployment -> Ray CPUs reserved at
    start) do not fit `cpus`: the one left out would wait for ever to be scheduled, with no error."""
    need = sum(reservations.values())
    if cpus is None or need <= cpus + 1e-9:
        return
    listed = ", ".join(f"{name} {cpu:g}" for name, cpu in reservations.items() if cpu)
    raise ValueError(f"The warm replicas and the ingress reserve {need:g} CPUs, and Ray counts {cpus:g} here "
                     f"({listed}); set num_cpus: 0 for the models (each uses every core through torch anyway), "
                     "keep fewer models warm, or give Ray more CPUs")


def _check_gpu_memory(plans: list[DeploymentPlan], args: AppArgs) -> None:
    if not args.gpu_memory_gb:
        return
    too_big = [f"{p.name} ({p.vram_gb:g} GB)" for p in plans if p.vram_gb > args.gpu_memory_gb]
    if too_big:
        raise ValueError(f"Models need more memory than one GPU of the profile ({args.gpu_memory_gb:g} GB): "
                         f"{', '.join(too_big)}; exclude them or declare a larger gpu_memory_gb")
    need = sum(p.vram_gb * p.min_replicas for p in plans)
    have = args.gpu_memory_gb * args.gpus
    if need > have + 1e-9:
        warm = ", ".join(f"{p.name} {p.vram_gb:g}" for p in plans if p.min_replicas)
        raise ValueError(f"min replicas need {need:g} GB of GPU memory; the profile declares {have:g} GB "
                         f"(warm: {warm}); keep fewer models warm or declare more GPU memory")
