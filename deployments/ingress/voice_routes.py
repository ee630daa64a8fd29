"""Saved voices (seed 004's reusable voices): POST /voices keeps a sample and its transcript under a
name for a cloning model; a speech request then clones it by `voice` name. GET /voices lists them,
DELETE /voices/{name} removes one."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from deployments.errors import Conflict, InvalidRequest, NotFound
from deployments.families.speech.protocol import TASK
from deployments.ingress.auth import current_owner
from deployments.ingress.http_errors import ERROR_RESPONSES
from deployments.ingress.replies import json_reply
from deployments.ingress.services import Services, get_services
from deployments.ingress.speech_routes import CLONING_FIELDS, ONE_SAMPLE, VoiceCloning, keep_sample, voice_sample
from deployments.state.saved_voices import SavedVoice, VoiceNameTaken

router = APIRouter(tags=["text-to-speech"], responses=ERROR_RESPONSES)
VOICE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class SaveVoiceRequest(VoiceCloning):
    model_config = ConfigDict(json_schema_extra={**ONE_SAMPLE, "anyOf": [  # exactly one voice sample
        {"required": [field], "properties": {field: {"type": "string"}}} for field in CLONING_FIELDS]})

    name: str = Field(json_schema_extra={"pattern": VOICE_NAME.pattern},
                      description="Name to speak with later (`voice`): lower-case letters, digits, '-', '_'.")
    model: str | None = Field(None, description="The cloning model it is for; default the first that clones.")


class VoiceView(BaseModel):
    name: str = Field(description="What `voice` names in a speech request.")
    model: str = Field(description="The cloning model it is for.")
    transcript: str = Field(description="What the sample says (audio_prompt_text; may be empty).")
    duration: float = Field(description="Seconds of the sample.")
    file_id: str = Field(description="The sample, kept as an upload.")


class SavedVoiceReply(VoiceView):
    success: bool


class VoiceList(BaseModel):
    success: bool
    count: int
    voices: list[VoiceView]


class VoiceDeleted(BaseModel):
    success: bool
    deleted: str = Field(description="The name, lower-cased.")


def voice_view(voice: SavedVoice) -> dict[str, Any]:
    return {"name": voice.name, "model": voice.model_id, "transcript": voice.transcript,
            "duration": round(voice.duration, 3), "file_id": voice.file_id}


@router.post("/voices", status_code=201, response_model=Any,
             responses=json_reply(SavedVoiceReply, "The voice, saved.", status=201))
async def save_voice(body: SaveVoiceRequest, services: Services = Depends(get_services)) -> dict[str, Any]:
    """Save a voice sample (audio_prompt, audio_prompt_url or voice_sample_file_id) under `name`."""
    able = [m.id for m in services.catalog.models_for_task(TASK) if "voice-cloning" in m.capabilities]
    entry = services.model_for(TASK, body.model or (able[0] if able else None))
    name = body.name.strip().lower()
    if not VOICE_NAME.match(name):
        raise InvalidRequest(f"Voice name '{body.name}' must be 1-64 lower-case letters, digits, '-' or '_'")
    if name in (entry.specs.voices or []):
        raise InvalidRequest(f"'{name}' is one of model '{entry.id}'s own voices; choose another name")
    given = await voice_sample(services, entry, body.model_dump(include=set(CLONING_FIELDS)))
    if given is None:
        raise InvalidRequest(f"A voice needs a sample: give one of {', '.join(CLONING_FIELDS)}")
    sample, seconds = given
    file_id = await asyncio.to_thread(keep_sample, services, name, sample)
    try:
        voice = await asyncio.to_thread(services.store.saved_voices().add, name, entry.id, file_id,
                                        body.audio_prompt_text or "", seconds, current_owner())
    except VoiceNameTaken:
        raise Conflict(f"The voice name '{name}' is taken; choose another") from None
    return {"success": True, **voice_view(voice)}


@router.get("/voices", response_model=Any, responses=json_reply(VoiceList, "The caller's saved voices."))
async def list_voices(model: str | None = None, services: Services = Depends(get_services)) -> dict[str, Any]:
    voices = await asyncio.to_thread(services.store.saved_voices().list, model, current_owner())
    return {"success": True, "count": len(voices), "voices": [voice_view(v) for v in voices]}


@router.delete("/voices/{name}", response_model=Any, responses=json_reply(VoiceDeleted, "Deleted."))
async def delete_voice(name: str, services: Services = Depends(get_services)) -> dict[str, Any]:
    if not await asyncio.to_thread(services.store.saved_voices().remove, name.lower(), current_owner()):
        raise NotFound(f"No saved voice '{name}'")
    return {"success": True, "deleted": name.lower()}
