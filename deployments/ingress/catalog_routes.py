"""GET /health, /models and /models/{name}: the catalog as seeds 001 and 002 show it; /v1/models as
OpenAI clients list it."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from deployments.errors import ModelNotFound
from deployments.ingress.auth import current_owner
from deployments.ingress.http_errors import ERROR_RESPONSES
from deployments.ingress.model_features import TTS_TASK, audio_models, specialized_models, tts_features
from deployments.ingress.service_health import check_health
from deployments.ingress.services import Services, get_services
from registry import ModelEntry

router = APIRouter(tags=["catalog"])
SEED_002_TASK = "text-to-music"  # seed 002's /models is MusicGen's: its top-level current_model is this task's
STARTED = int(time.time())  # OpenAI's `created`: the catalog has no dates, so when this replica started


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


ACTIVE_STATES = {"ready", "idle"}  # lifecycle states in which a replica holds the model loaded


def model_view(services: Services, entry: ModelEntry, lifecycle: dict[str, Any] | None = None) -> dict[str, Any]:
    """One catalog entry with seed 002's field names (specs flattened to the top level); its lifecycle
    says whether it is active (loaded and serving) and how far its download is."""
    catalog = services.catalog
    state = (lifecycle or {}).get("state")
    family = catalog.families[entry.family]
    task = catalog.tasks[family.task]
    return {
        "id": entry.id,
        "display_name": entry.display_name,
        "description": entry.description or family.description,
        "family": entry.family,
        "variant": entry.variant,
        "aliases": entry.aliases,
        "task": family.task,
        "category": task.category,
        "hf_model_id": entry.hub.repo_id,
        "revision": entry.hub.revision,
        "companions": [c.model_dump(include={"repo_id", "revision", "role"}) for c in entry.companions],
        "capabilities": entry.capabilities,
        "file_types": family.file_types,
        "deployment": services.deployment_name(entry),  # its Serve deployment here (None: not deployed)
        "family_kind": family.deployment,
        "is_default": task.default_model == entry.id,
        "is_family_default": family.default_model == entry.id,
        "is_current": catalog.current_model(family.task) == entry.id,
        "is_deployed": services.is_served(entry),
        "enabled": services.is_served(entry),  # seed 001's name for it
        "tts_enabled": family.task == TTS_TASK,
        "tts_features": tts_features(catalog, entry),
        "quality": entry.quality,
        "speed": entry.speed,
        "experimental": entry.experimental,
        "is_active": state in ACTIVE_STATES,
        "state": state,
        "download": (lifecycle or {}).get("download"),
        **entry.specs.model_dump(exclude_none=True),
    }


@router.get("/health", responses={503: {"description": "Degraded: `problems` says what is wrong."}})
async def health(services: Services = Depends(get_services)) -> JSONResponse:
    """Checks the model manager, a job store write and Serve's deployment states; 503 when one fails."""
    checks, problems = await check_health(services)
    return JSONResponse(status_code=503 if problems else 200, content={
        "success": not problems,
        "status": "degraded" if problems else "healthy",
        "timestamp": _now(),
        "deployments": sorted(services.deployments),
        "checks": checks,
        "problems": problems,
    })


@router.get("/models")
async def list_models(services: Services = Depends(get_services)) -> dict[str, Any]:
    """Every model with its capabilities and state; each task's default (catalog) and current model
    (switched at run time, PUT /models/current/{task}); the GPUs the service was configured with."""
    catalog = services.catalog
    lifecycles = await services.lifecycles(list(catalog.models.values()))
    models = [model_view(services, entry, lifecycles[entry.id]) for entry in catalog.models.values()]
    tasks = {
        name: {
            "category": task.category,
            "default_model": task.default_model,
            "current_model": catalog.current_model(name),
            "models": [m.id for m in catalog.models_for_task(name)],
            "served": any(services.is_served(m) for m in catalog.models_for_task(name)),
        }
        for name, task in catalog.tasks.items()
    }
    return {
        "success": True,
        "timestamp": _now(),
        "current_model": catalog.current_model(SEED_002_TASK),  # seed 002's field: the music model
        "current_models": {name: info["current_model"] for name, info in tasks.items()},
        "gpu": services.gpu,
        "total_models": len(models),
        "available_models": [m["id"] for m in models],
        "models": models,
        "models_info": {m["id"]: m for m in models},
        "specialized_models": specialized_models(catalog),
        "audio_models": audio_models(catalog, [m["id"] for m in models if m["is_active"]]),
        "tasks": tasks,
        "families": {
            name: {"task": f.task, "default_model": f.default_model, "deployment": f.deployment}
            for name, f in catalog.families.items()
        },
    }


def openai_model(services: Services, entry: ModelEntry) -> dict[str, Any]:
    """A model as OpenAI's API lists it, plus the task and aliases (clients ignore extra fields)."""
    return {
        "id": entry.id,
        "object": "model",
        "created": STARTED,
        "owned_by": entry.hub.repo_id.split("/")[0] if "/" in entry.hub.repo_id else "local",
        "task": services.catalog.task_of(entry),
        "aliases": entry.aliases,
    }


@router.get("/v1/models")
async def list_openai_models(services: Services = Depends(get_services)) -> dict[str, Any]:
    """The models this application serves (catalog and run-time ones), in OpenAI's list shape."""
    served = [m for m in services.catalog.models.values() if services.is_served(m)]
    return {"object": "list", "data": [openai_model(services, m) for m in served]}


@router.get("/v1/models/{name:path}", responses=ERROR_RESPONSES)
async def get_openai_model(name: str, services: Services = Depends(get_services)) -> dict[str, Any]:
    try:
        return openai_model(services, services.catalog.resolve(name))
    except LookupError as missing:
        raise ModelNotFound(str(missing)) from None


@router.get("/models/{name:path}", responses=ERROR_RESPONSES)
async def get_model(name: str, services: Services = Depends(get_services)) -> dict[str, Any]:
    """A model by id, alias or hub repo id; or a family (seed 000: /models/demucs) with its variants."""
    catalog = services.catalog
    family = catalog.families.get(name)
    if family is not None:
        members = [m for m in catalog.models.values() if m.family == name]
        lifecycles = await services.lifecycles(members)
        variants = [model_view(services, m, lifecycles[m.id]) for m in members]
        return {"success": True, "family": name, **family.model_dump(), "variants": variants}
    try:
        entry = catalog.resolve(name)
    except LookupError as missing:
        raise ModelNotFound(f"{missing} (families: {', '.join(catalog.families)})") from None
    download, lifecycle = await asyncio.gather(services.manager.status.remote(entry.id), services.lifecycle(entry))
    lifecycle["memory"] = {"declared_gb": entry.specs.vram_requirement_gb,
                           "measured_peak_mb": lifecycle.get("load", {}).get("peak_memory_mb"),
                           "measured_kind": lifecycle.get("load", {}).get("memory_kind")}
    view = model_view(services, entry, lifecycle)
    if "voice-cloning" in entry.capabilities:  # POST /voices adds to these
        voices = await asyncio.to_thread(services.store.saved_voices().list, entry.id, current_owner())
        view["saved_voices"] = [v.name for v in voices]
    return {"success": True, "model": view, "download": download, "lifecycle": lifecycle}
