"""Text-to-speech: POST /api/tts (seed 003), POST /v1/audio/speech (OpenAI shape), and the job input
of /api/v1/run and /process/{model}/{file_id} (seed 004's TTS service).

Voice, speed and voice-cloning requests are checked here against the catalog; text length is
checked by the speech deployment, which holds the model's tokenizer.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from deployments.audio import OUTPUT_FORMATS
from deployments.errors import InvalidRequest, PayloadTooLarge
from deployments.ingress.http_errors import ERROR_RESPONSES
from deployments.ingress.request_checks import parse
from deployments.ingress.services import Services, get_services
from deployments.safe_urls import fetch_bytes
from deployments.speech import TASK, Speech, SpeechRequest, check_speed, resolve_voice
from deployments.voice_cloning import check_voice_sample
from registry import ModelEntry

router = APIRouter(tags=["text-to-speech"], responses=ERROR_RESPONSES)

CLONING_FIELDS = ("voice_sample_file_id", "audio_prompt_url", "audio_prompt")
SUPPORTED = ", ".join(OUTPUT_FORMATS)
AUDIO_RESPONSE: dict[int | str, dict[str, Any]] = {200: {
    "content": {media_type: {} for _, _, media_type in OUTPUT_FORMATS.values()},
    "description": "The audio file. Headers: X-Sample-Rate, X-Audio-Duration (s), X-Voice, X-Model, and "
                   "X-Batch-Size (texts synthesized in the same model call).",
}}


def _not_blank(value: str, field: str) -> str:
    if not value.strip():
        raise ValueError(f"{field} must not be empty")
    return value


def _audio_format(value: str) -> str:
    fmt = value.strip().lower()
    if fmt not in OUTPUT_FORMATS:
        raise ValueError(f"'{value}' is not supported; supported formats: {SUPPORTED}")
    return fmt


class VoiceCloning(BaseModel):
    """Seed 004's voice-cloning inputs (one sample, from one of three places) and the sampling seed."""

    voice_sample_file_id: str | None = Field(None, description="An upload (POST /upload) to clone the voice of.")
    audio_prompt_url: str | None = Field(None, description="URL of a voice sample to clone.")
    audio_prompt: str | None = Field(None, description="A voice sample to clone (base64 of an audio file).")
    audio_prompt_text: str | None = Field(None, description="What the voice sample says: models that clone "
                                          "from a conversation turn (csm-1b) read it as the sample's context.")
    seed: int | None = Field(None, ge=0, description="Models that sample (csm-1b): the same seed, the same audio.")


class SpeechInput(VoiceCloning):
    """What /api/tts and a text-to-speech job take besides the model."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(description="Text to speak.")
    voice: str | None = Field(None, description="One of the model's voices (GET /models/{model}); default its first.")
    format: str = Field("wav", description=f"Audio format: {SUPPORTED}.")
    speed: float = Field(1.0, ge=0.25, le=4.0, description="Speaking rate; models with the 'speed' capability.")

    @field_validator("text")
    @classmethod
    def _text(cls, value: str) -> str:
        return _not_blank(value, "text")

    @field_validator("format")
    @classmethod
    def _format(cls, value: str) -> str:
        return _audio_format(value)


class TTSRequest(SpeechInput):
    model: str | None = Field(None, description="Catalog id, alias or hub repo id; default speecht5-tts.")


class OpenAISpeechRequest(VoiceCloning):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="tts-1 (= speecht5-tts), a catalog id such as bark-small, or a hub repo id.")
    input: str = Field(description="Text to speak.")
    voice: str | None = Field(None, description="One of the model's voices; default its first.")
    response_format: str = Field("mp3", description=f"Audio format: {SUPPORTED}.")
    speed: float = Field(1.0, ge=0.25, le=4.0)
    instructions: str | None = Field(None, description="Not supported by any model here; refused.")
    stream_format: str | None = Field(None, description="Only 'audio' (the whole file at once).")

    @field_validator("input")
    @classmethod
    def _input(cls, value: str) -> str:
        return _not_blank(value, "input")

    @field_validator("response_format")
    @classmethod
    def _format(cls, value: str) -> str:
        return _audio_format(value)

    @field_validator("stream_format")
    @classmethod
    def _stream_format(cls, value: str | None) -> str | None:
        if value not in (None, "audio"):
            raise ValueError(f"'{value}' is not supported; only 'audio' (the whole file in one response)")
        return value


def _refuse_cloning(services: Services, entry: ModelEntry, request: dict[str, Any]) -> list[str]:
    """The cloning fields `request` gives; a 400 naming the models that clone when `entry` cannot."""
    given = [name for name in CLONING_FIELDS if request.get(name) is not None]
    if not given or "voice-cloning" in entry.capabilities:
        return given
    able = [m.id for m in services.catalog.models_for_task(TASK) if "voice-cloning" in m.capabilities]
    which = f"models that can: {', '.join(able)}" if able else "no model in this service supports it"
    raise InvalidRequest(f"Voice cloning from a sample ({given[0]}) is not supported by model '{entry.id}'; "
                         f"{which}. Or pick one of its voices: {', '.join(entry.specs.voices or [])}")


async def voice_sample(services: Services, entry: ModelEntry, request: dict[str, Any]) -> bytes | None:
    """The voice sample's bytes, from whichever field gives it, checked (size, decodable, duration)."""
    given = _refuse_cloning(services, entry, request)
    if not given:
        return None
    if len(given) > 1:
        raise InvalidRequest(f"Send one voice sample, not {' and '.join(given)}")
    source, limit = given[0], services.settings.max_upload_bytes
    if source == "audio_prompt":
        try:
            data = base64.b64decode(request[source], validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest("audio_prompt is not valid base64") from None
    elif source == "audio_prompt_url":
        data = await asyncio.to_thread(fetch_bytes, request[source], services.settings, limit)
    else:
        data = await asyncio.to_thread(services.store.read_upload, await services.upload(request[source]))
    if len(data) > limit:
        raise PayloadTooLarge(f"The voice sample ({source}) is {len(data)} bytes; the limit is {limit} bytes")
    await asyncio.to_thread(check_voice_sample, entry, data, source)
    return data


async def _checked(services: Services, entry: ModelEntry, request: VoiceCloning, text: str, voice: str | None,
                   speed: float, fmt: str) -> SpeechRequest:
    sample = await voice_sample(services, entry, request.model_dump(include=set(CLONING_FIELDS)))
    transcript = request.audio_prompt_text
    if sample is None and voice and "voice-cloning" in entry.capabilities and voice not in (entry.specs.voices or []):
        saved = await asyncio.to_thread(services.store.saved_voices().get, voice.strip().lower())
        if saved is not None and saved.model_id == entry.id:  # a voice saved with POST /voices
            upload = await services.upload(saved.file_id)
            sample, transcript, voice = await asyncio.to_thread(services.store.read_upload, upload), \
                saved.transcript, None
    check_speed(services.catalog, entry, speed)
    return SpeechRequest(model=entry.id, text=text, voice=resolve_voice(entry, voice), speed=speed, format=fmt,
                         voice_sample=sample, voice_sample_text=transcript, seed=request.seed)


def _audio_reply(speech: Speech, download: bool) -> Response:
    headers = {"X-Model": speech.model, "X-Voice": speech.voice, "X-Sample-Rate": str(speech.sample_rate),
               "X-Audio-Duration": str(speech.duration), "X-Batch-Size": str(speech.batch_size)}
    if download:
        headers["Content-Disposition"] = f'attachment; filename="speech.{speech.format}"'
    return Response(speech.audio, media_type=speech.media_type, headers=headers)


@router.post("/api/tts", response_class=Response, responses=AUDIO_RESPONSE)
async def text_to_speech(body: TTSRequest, services: Services = Depends(get_services)) -> Response:
    entry = services.model_for(TASK, body.model)
    request = await _checked(services, entry, body, body.text, body.voice, body.speed, body.format)
    return _audio_reply(await services.call(entry, "synthesize", request), download=True)


@router.post("/v1/audio/speech", response_class=Response, responses=AUDIO_RESPONSE)
async def openai_speech(body: OpenAISpeechRequest, services: Services = Depends(get_services)) -> Response:
    entry = services.model_for(TASK, body.model)
    if body.instructions is not None:
        raise InvalidRequest(f"instructions are not supported by model '{entry.id}' (nor by any model here)")
    request = await _checked(services, entry, body, body.input, body.voice, body.speed, body.response_format)
    return _audio_reply(await services.call(entry, "synthesize", request), download=False)


async def speech_job_input(services: Services, entry: ModelEntry, data: dict[str, Any]) -> dict[str, Any]:
    """The stored input of a text-to-speech job (/api/v1/run, /process/{model}/{file_id}), checked now
    so a bad request is a 400 rather than a failed job. A `file_id` (from /process) is a voice sample."""
    data = {key: value for key, value in data.items() if key != "model_variant"}
    if "file_id" in data:
        data["voice_sample_file_id"] = data.pop("file_id")
    _refuse_cloning(services, entry, data)  # before the rest: a sample alone is answered with why not
    params = parse(SpeechInput, data)
    request = await _checked(services, entry, params, params.text, params.voice, params.speed, params.format)
    await services.call(entry, "check_text", entry.id, request.text)
    sample = base64.b64encode(request.voice_sample).decode() if request.voice_sample else None
    return {"text": request.text, "voice": request.voice, "speed": request.speed, "format": request.format,
            "voice_sample_base64": sample, "voice_sample_text": request.voice_sample_text, "seed": request.seed}
