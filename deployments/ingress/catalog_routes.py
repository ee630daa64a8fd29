"""GET /health, /models and /models/{name}: the catalog as seeds 001 and 002 show it; /v1/models as
OpenAI clients list it."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from deployments.errors import ModelNotFound
from deployments.ingress.auth import current_owner
from deployments.ingress.http_errors import ERROR_RESPONSES
from deployments.ingress.model_features import TTS_TASK, audio_models, specialized_models, tts_features
from deployments.ingress.replies import (
    Absent,
    LifecycleDownload,
    LifecycleState,
    ModelLifecycle,
    TtsFeatures,
    json_reply,
)
from deployments.ingress.service_health import check_health
from deployments.ingress.services import Services, get_services
from registry import ModelEntry
from registry.schema import ModelSpecs

router = APIRouter(tags=["catalog"])
SEED_002_TASK = "text-to-music"  # seed 002's /models is MusicGen's: its top-level current_model is this task's
STARTED = int(time.time())  # OpenAI's `created`: the catalog has no dates, so when this replica started


class Companion(BaseModel):
    repo_id: str
    revision: str
    role: str = Field(description="What its files are for: vocoder, speaker-embeddings...")


class CatalogModel(ModelSpecs):
    """One model as GET /models lists it (seed 002's field names): the catalog's specs (the fields above
    `id`) flattened to the top level, each only when the catalog sets it; its lifecycle's state."""

    model_config = ConfigDict(extra="ignore", frozen=False)

    id: str = Field(description="Catalog id, used in requests.")
    display_name: str
    description: str
    family: str
    variant: str = Field(description="Short name within the family (seed 000's model_variant).")
    aliases: list[str] = Field(description="Other names requests may use.")
    task: str
    category: Literal["audio", "text", "vision", "video"]
    hf_model_id: str = Field(description="Hub repo id (or s3://bucket/prefix) of its weights.")
    revision: str
    companions: list[Companion] = Field(description="Extra repos the model needs.")
    capabilities: list[str]
    engine: str | None = Field(description="What runs it within its family (the catalog's `engine`, or the "
                               "profile's `engines:`), e.g. whisper: transformers or ctranslate2.")
    file_types: list[str] = Field(description="Upload extensions its family takes.")
    deployment: str | None = Field(description="Its Serve deployment here; None: not deployed.")
    family_kind: str = Field(description="The kind of deployment that runs its family.")
    is_default: bool = Field(description="Its task's catalog default.")
    is_family_default: bool
    is_current: bool = Field(description="Its task's current model (PUT /models/current/{task}).")
    is_deployed: bool
    enabled: bool = Field(description="is_deployed, under seed 001's name.")
    tts_enabled: bool = Field(description="A text-to-speech model.")
    tts_features: TtsFeatures
    quality: Literal["standard", "high", "very-high"] | None
    speed: Literal["fast", "medium", "slow"] | None
    experimental: bool = Field(description="Downloaded only with experimental: true.")
    is_active: bool = Field(description="A replica holds it loaded (state ready or idle).")
    state: LifecycleState | None = Field(description="Its lifecycle state.")
    download: LifecycleDownload | None
    saved_voices: list[str] | Absent = Field(None, description="GET /models/{name} of a voice-cloning model: the "
                                             "voices saved for it (POST /voices).")


class HealthCheck(BaseModel):
    ok: bool
    ms: float | Absent = Field(None, description="How long the check took, when it answered.")
    error: str | Absent = Field(None, description="Why it failed.")
    states: dict[str, str] | Absent = Field(None, description="deployments: each deployment's Serve status.")


class HealthChecks(BaseModel):
    model_manager: HealthCheck
    job_store: HealthCheck = Field(description="A write to the job store.")
    deployments: HealthCheck


class Health(BaseModel):
    success: bool
    status: Literal["healthy", "degraded"]
    timestamp: str = Field(description="ISO 8601, UTC.")
    deployments: list[str] = Field(description="This application's model deployments.")
    checks: HealthChecks
    problems: list[str] = Field(description="One line per problem; empty when healthy.")


class TaskSummary(BaseModel):
    category: str
    default_model: str = Field(description="The catalog's default.")
    current_model: str = Field(description="What a request naming no model gets now.")
    models: list[str]
    served: bool = Field(description="A model of the task is deployed here.")


class FamilySummary(BaseModel):
    task: str
    default_model: str
    deployment: str


class SpeechSource(BaseModel):
    type: Literal["s3", "huggingface"]
    model_name: str = Field(description="Hub repo id or s3:// prefix.")
    description: str


class AudioModels(BaseModel):
    tts_detailed: dict[str, SpeechSource] = Field(description="Each speech model's source.")
    loaded_audio_models: list[str] = Field(description="Audio models a replica holds loaded now.")


class GpuInfo(BaseModel):
    count: int | Absent = Field(None, description="GPUs the profile declares (0: CPU only).")
    memory_gb: float | None = Field(None, description="Memory of one; None: CPU only.")


class ModelList(BaseModel):
    success: bool
    timestamp: str
    current_model: str = Field(description="Seed 002's: the current text-to-music model.")
    current_models: dict[str, str] = Field(description="Task -> its current model.")
    gpu: GpuInfo = Field(description="The GPUs the service was configured with.")
    total_models: int
    available_models: list[str]
    models: list[CatalogModel]
    models_info: dict[str, CatalogModel] = Field(description="The same models by id.")
    specialized_models: dict[str, list[str]] = Field(description="Model ids by task, and under seed 001's keys "
                                                     "(tts_models, stt_models, image_classification).")
    audio_models: AudioModels
    tasks: dict[str, TaskSummary]
    families: dict[str, FamilySummary]


class OpenAIModel(BaseModel):
    id: str
    object: Literal["model"]
    created: int = Field(description="When this replica started (the catalog has no dates).")
    owned_by: str = Field(description="The hub organisation, or 'local'.")
    task: str
    aliases: list[str]


class OpenAIModelList(BaseModel):
    object: Literal["list"]
    data: list[OpenAIModel]


class MemoryFacts(BaseModel):
    declared_gb: float | None = Field(description="The catalog's vram_requirement_gb.")
    measured_peak_mb: float | None = Field(description="Measured when a replica loaded it.")
    measured_kind: str | None = Field(description="How: cuda-allocated or rss-growth.")


class ModelDetailLifecycle(ModelLifecycle):
    memory: MemoryFacts


class ManagerDownload(BaseModel):
    """The model manager's record of the model's download; only `model` and `status: unknown` when it was
    never asked for."""

    model: str
    status: str = Field(description="unknown, pending, downloading, completed, failed or cancelled.")
    download_id: str | None | Absent = Field(None, description="Its newest download's id, what GET /models/download/"
                                             "status/{download_id} and cancel take; None: none asked for since the "
                                             "manager started.")
    repos: list[str] | Absent = None
    bytes_total: int | Absent = None
    bytes_done: int | Absent = None
    error: str | None = None
    started_at: float | None = Field(None, description="Epoch seconds, as finished_at.")
    finished_at: float | None = None
    paths: dict[str, str] | Absent = Field(None, description="Where each repo's files are, by role.")
    callers: int | Absent = None
    url: str | None = None
    task: str | None = None
    attempt: int | Absent = None
    next_retry_at: float | None = None
    progress: float | Absent = Field(None, description="Percent, 0-100.")
    eta: float | None = Field(None, description="Seconds left, while downloading.")
    message: str | Absent = None


class ModelDetail(BaseModel):
    success: bool
    model: CatalogModel
    download: ManagerDownload
    lifecycle: ModelDetailLifecycle


class FamilyDetail(BaseModel):
    success: bool
    family: str
    task: str
    deployment: str
    default_model: str
    file_types: list[str]
    description: str
    variants: list[CatalogModel]


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
        "engine": entry.engine,
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


@router.get("/health", responses={**json_reply(Health, "Healthy."),
                                   503: {"model": Health, "description": "Degraded: `problems` says what is wrong."}})
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


@router.get("/models", response_model=Any, responses=json_reply(ModelList, "The catalog."))
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


@router.get("/v1/models", response_model=Any, responses=json_reply(OpenAIModelList, "The served models."))
async def list_openai_models(services: Services = Depends(get_services)) -> dict[str, Any]:
    """The models this application serves (catalog and run-time ones), in OpenAI's list shape."""
    served = [m for m in services.catalog.models.values() if services.is_served(m)]
    return {"object": "list", "data": [openai_model(services, m) for m in served]}


@router.get("/v1/models/{name:path}", response_model=Any,
            responses={**ERROR_RESPONSES, **json_reply(OpenAIModel, "The model.")})
async def get_openai_model(name: str, services: Services = Depends(get_services)) -> dict[str, Any]:
    try:
        return openai_model(services, services.catalog.resolve(name))
    except LookupError as missing:
        raise ModelNotFound(str(missing)) from None


@router.get("/models/{name:path}", response_model=Any,
            responses={**ERROR_RESPONSES, **json_reply(ModelDetail | FamilyDetail, "A model, or a family and its "
                                                                                 "variants.")})
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
