"""Text-to-music routes: POST /api/music (audio bytes back), GET /adapters (seed 002), and the job input
of /process/musicgen/{file_id} and /api/v1/run. Limits and adapter checks run here, before any work."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from deployments.errors import InvalidRequest, ModelNotFound
from deployments.families.music.protocol import (
    MAX_PROMPT_CHARS,
    NONBLANK,
    TASK,
    MusicJobInput,
    MusicParams,
    check_adapter,
    check_duration,
    default_duration,
    find_adapter,
    nonblank_prompt,
)
from deployments.families.protocol import new_seed
from deployments.ingress.http_errors import ERROR_RESPONSES
from deployments.ingress.replies import json_reply
from deployments.ingress.request_checks import JobInput, check_file_type, parse
from deployments.ingress.services import Services, get_services
from deployments.media.audio import MEDIA_TYPES
from registry import AdapterEntry, ModelEntry, UnknownModelError
from registry.schema import ModelSpecs

router = APIRouter(tags=["music"], responses=ERROR_RESPONSES)
AUDIO_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {MEDIA_TYPES[f]: {} for f in ("wav", "flac", "mp3")},
          "description": "The audio file; X-Sample-Rate, X-Duration, X-Seed, X-Batch-Size headers."}}


class MusicRequest(MusicParams):
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS, json_schema_extra={"pattern": NONBLANK},
                        description="What the music should sound like.")
    model: str | None = Field(None, description="musicgen-small/-medium/-large (or hub id); default the adapter's "
                              "base model, else musicgen-small.")

    @field_validator("prompt")
    @classmethod
    def _check_prompt(cls, value: str) -> str:
        return nonblank_prompt(value)


class AdapterBaseConfig(ModelSpecs):
    """The base model's display name and catalog specs (those set; never stems or voices), so a UI can clamp."""

    model_config = ConfigDict(extra="ignore", frozen=False)

    display_name: str


class AdapterView(BaseModel):
    id: str = Field(description="What requests name in `adapter`.")
    name: str
    description: str
    hf_adapter_id: str = Field(description="The adapter's hub repo id.")
    base_model: str = Field(description="The base model's hub repo id (seed 002).")
    base_model_id: str = Field(description="The base model's catalog id.")
    base_model_config: AdapterBaseConfig
    is_active: bool = Field(description="The base model is deployed here.")


class AdapterList(BaseModel):
    success: bool
    count: int
    adapters: list[AdapterView]


def _checked(services: Services, entry: ModelEntry | None, params: MusicParams) -> tuple[ModelEntry, float]:
    """The model (the adapter's base when none is named) and the duration, within the catalog's limits."""
    adapter: AdapterEntry | None = find_adapter(services.catalog, params.adapter) if params.adapter else None
    if entry is None:
        entry = services.model_for(TASK, adapter.base_model if adapter else None)
    if adapter is not None:
        check_adapter(services.catalog, entry, adapter)
    duration = params.duration or default_duration(entry)
    check_duration(entry, duration)
    return entry, duration


@router.post("/api/music", response_class=Response, responses=AUDIO_RESPONSE)
async def generate_music(body: MusicRequest, services: Services = Depends(get_services)) -> Response:
    """Generate `duration` seconds of music for `prompt`; concurrent requests share generate calls."""
    entry = services.model_for(TASK, body.model) if body.model else None
    entry, duration = _checked(services, entry, body)
    params = body.model_dump(include=set(MusicParams.model_fields)) | {"duration": duration}
    music = await services.call(entry, "generate", body.prompt.strip(), params, model=entry.id)
    headers = {"X-Model": music.model, "X-Sample-Rate": str(music.sample_rate), "X-Duration": str(music.duration),
               "X-Seed": str(music.seed), "X-Batch-Size": str(music.batch_size),
               "Content-Disposition": f'attachment; filename="music.{music.format}"'}
    if music.adapter:
        headers["X-Adapter"] = music.adapter
    return Response(music.audio, media_type=music.media_type, headers=headers)


@router.get("/adapters", response_model=Any, responses=json_reply(AdapterList, "The LoRA adapters."))
async def list_adapters(model: str | None = Query(None, description="Only adapters for this model."),
                        services: Services = Depends(get_services)) -> dict[str, Any]:
    """Seed 002: each adapter with its base model's hub id and limits, so a UI can filter and clamp."""
    catalog = services.catalog
    try:
        wanted = catalog.resolve(model, task=TASK).id if model else None
    except UnknownModelError as missing:
        raise ModelNotFound(str(missing)) from None
    adapters = []
    for adapter in catalog.adapters.values():
        base = catalog.models[adapter.base_model]
        if wanted and base.id != wanted:
            continue
        adapters.append({
            "id": adapter.id,
            "name": adapter.name,
            "description": adapter.description,
            "hf_adapter_id": adapter.hub.repo_id,
            "base_model": base.hub.repo_id,
            "base_model_id": base.id,
            "base_model_config": {"display_name": base.display_name,
                                  **base.specs.model_dump(exclude_none=True, exclude={"stems", "voices"})},
            "is_active": services.is_served(base),
        })
    return {"success": True, "count": len(adapters), "adapters": adapters}


async def music_job_input(services: Services, entry: ModelEntry, data: dict[str, Any]) -> dict[str, Any]:
    """The stored input of a text-to-music job (/process/{model}/{file_id} and /api/v1/run), checked."""
    data = {key: value for key, value in data.items() if key != "model_variant"}
    params = parse(MusicJobInput, data)
    if params.file_id is not None:
        check_file_type(services, entry, await services.upload(params.file_id))
    elif params.prompt is None:
        raise InvalidRequest("Give a prompt, or the file_id of an uploaded .txt file holding one")
    _, duration = _checked(services, entry, params)
    # the seed is fixed now, so a job that is re-run after a lost replica makes the same audio
    seed = params.seed if params.seed is not None else new_seed()
    return params.model_dump() | {"duration": duration, "seed": seed}


JOBS = {TASK: JobInput(music_job_input, (MusicJobInput,))}
