"""Text-to-speech: POST /api/tts (seed 003), POST /v1/audio/speech (OpenAI shape), and the job input
of /api/v1/run and /process/{model}/{file_id} (seed 004's TTS service).

Voice, speed and voice-cloning requests are checked here against the catalog; text length is
checked by the speech deployment, which holds the model's tokenizer.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response, StreamingResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic.json_schema import JsonDict

from deployments.errors import InvalidRequest, PayloadTooLarge, ServiceError
from deployments.families.speech.protocol import (
    TASK,
    Speech,
    SpeechPiece,
    SpeechRequest,
    SpeechStart,
    check_speed,
    check_voice_sample,
    resolve_voice,
)
from deployments.ingress.auth import current_owner
from deployments.ingress.body_limits import audio_bytes
from deployments.ingress.http_errors import ERROR_RESPONSES
from deployments.ingress.request_checks import NONBLANK, JobInput, parse
from deployments.ingress.services import Services, get_services
from deployments.ingress.sse import error_event, sse
from deployments.media.audio import SPEECH_FORMATS, STREAM_FORMATS, AudioLimits
from deployments.media.safe_urls import URL_PATTERN, fetch_bytes
from registry import ModelEntry

logger = logging.getLogger(__name__)
router = APIRouter(tags=["text-to-speech"], responses=ERROR_RESPONSES)

CLONING_FIELDS = ("voice_sample_file_id", "audio_prompt_url", "audio_prompt")
SUPPORTED = ", ".join(SPEECH_FORMATS)
BASE64 = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"  # what b64decode(validate=True) takes
# At most one voice sample: no two of CLONING_FIELDS given (not null) at once.
ONE_SAMPLE: JsonDict = {"not": {"anyOf": [
    {"required": [a, b], "properties": {a: {"type": "string"}, b: {"type": "string"}}}
    for i, a in enumerate(CLONING_FIELDS) for b in CLONING_FIELDS[i + 1:]]}}
AUDIO_RESPONSE: dict[int | str, dict[str, Any]] = {200: {
    "content": {media_type: {} for _, _, media_type in SPEECH_FORMATS.values()} | {"text/event-stream": {}},
    "description": "The audio file. Headers: X-Sample-Rate, X-Audio-Duration (s), X-Voice, X-Model, and "
                   "X-Batch-Size (texts synthesized in the same model call). With stream_format 'audio', the "
                   "audio arrives sentence by sentence (wav or pcm); with 'sse', as speech.audio.delta events "
                   "then speech.audio.done.",
}}
FRAME_SECONDS = 0.02  # a streamed clip's usage.output_tokens counts its audio in 20 ms frames


def _not_blank(value: str, info: ValidationInfo) -> str:
    if not value.strip():
        raise ValueError(f"{info.field_name} must not be empty")
    return value


def _audio_format(value: str) -> str:
    fmt = value.strip().lower()
    if fmt not in SPEECH_FORMATS:
        raise ValueError(f"'{value}' is not supported; supported formats: {SUPPORTED}")
    return fmt


# The text to speak (not blank) and an audio format (lower-cased, one of SPEECH_FORMATS), under any field name.
SpokenText = Annotated[str, AfterValidator(_not_blank)]
AudioFormat = Annotated[str, AfterValidator(_audio_format)]


class VoiceCloning(BaseModel):
    """Seed 004's voice-cloning inputs (one sample, from one of three places) and the sampling seed."""

    model_config = ConfigDict(json_schema_extra=ONE_SAMPLE)

    voice_sample_file_id: str | None = Field(None, description="An upload (POST /upload) to clone the voice of.")
    audio_prompt_url: str | None = Field(None, json_schema_extra={"pattern": URL_PATTERN},
                                         description="http(s) URL of a voice sample to clone.")
    audio_prompt: str | None = Field(None, json_schema_extra={"pattern": BASE64, "contentEncoding": "base64"},
                                     description="A voice sample to clone (base64 of an audio file).")
    audio_prompt_text: str | None = Field(None, description="What the voice sample says: models that clone "
                                          "from a conversation turn (csm-1b) read it as the sample's context.")
    seed: int | None = Field(None, ge=0, description="Models that sample (csm-1b): the same seed, the same audio.")


class SpeechInput(VoiceCloning):
    """What /api/tts and a text-to-speech job take besides the model."""

    model_config = ConfigDict(extra="forbid")

    text: SpokenText = Field(json_schema_extra={"pattern": NONBLANK}, description="Text to speak.")
    voice: str | None = Field(None, description="One of the model's voices (GET /models/{model}); default its first.")
    format: AudioFormat = Field("wav", json_schema_extra={"enum": list(SPEECH_FORMATS)},
                                description=f"Audio format: {SUPPORTED}.")
    speed: float = Field(1.0, ge=0.25, le=4.0, description="Speaking rate; models with the 'speed' capability.")


class TTSRequest(SpeechInput):
    model: str | None = Field(None, description="Catalog id, alias or hub repo id; default the task's current "
                               "model (speecht5-tts), or with a voice sample the first model that clones (csm-1b).")


class OpenAISpeechRequest(VoiceCloning):
    # openai_speech's rule besides ONE_SAMPLE: a stream is of a format whose pieces join (STREAM_FORMATS)
    model_config = ConfigDict(extra="forbid", json_schema_extra={**ONE_SAMPLE, "anyOf": [
        {"properties": {"stream_format": {"type": "null"}}},
        {"required": ["response_format"], "properties": {"response_format": {"enum": list(STREAM_FORMATS)}}}]})

    model: str = Field(description="tts-1 (= speecht5-tts), a catalog id such as bark-small, or a hub repo id.")
    input: SpokenText = Field(json_schema_extra={"pattern": NONBLANK}, description="Text to speak.")
    voice: str | None = Field(None, description="One of the model's voices; default its first.")
    response_format: AudioFormat = Field("mp3", json_schema_extra={"enum": list(SPEECH_FORMATS)},
                                         description=f"Audio format: {SUPPORTED}.")
    speed: float = Field(1.0, ge=0.25, le=4.0)
    instructions: str | None = Field(None, description="Not supported by any model here; refused.")
    stream_format: str | None = Field(None, json_schema_extra={"enum": ["audio", "sse", None]},
                                      description="Absent: the whole file at once. 'audio': the audio "
                                      "sentence by sentence as it is spoken (response_format wav or pcm). "
                                      "'sse': OpenAI's speech.audio.delta / speech.audio.done events.")

    @field_validator("stream_format")
    @classmethod
    def _stream_format(cls, value: str | None) -> str | None:
        if value not in (None, "audio", "sse"):
            raise ValueError(f"'{value}' is not supported; use 'audio' or 'sse'")
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


async def voice_sample(services: Services, entry: ModelEntry, request: dict[str, Any]) -> tuple[bytes, float] | None:
    """The voice sample's bytes and seconds, from whichever field gives it, checked (size, decodable, duration)."""
    given = _refuse_cloning(services, entry, request)
    if not given:
        return None
    if len(given) > 1:
        raise InvalidRequest(f"Send one voice sample, not {' and '.join(given)}")
    source, limit = given[0], audio_bytes(services.settings)
    if source == "audio_prompt":
        try:
            data = base64.b64decode(request[source], validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest("audio_prompt is not valid base64") from None
    elif source == "audio_prompt_url":
        data = await fetch_bytes(request[source], services.settings, limit)
    else:
        upload = await services.upload(request[source])
        if upload.size > limit:  # refused before it is read into memory
            raise PayloadTooLarge(f"The voice sample ({source}) is {upload.size} bytes; the limit is {limit} bytes")
        data = await asyncio.to_thread(services.store.read_upload, upload)
    if len(data) > limit:
        raise PayloadTooLarge(f"The voice sample ({source}) is {len(data)} bytes; the limit is {limit} bytes")
    limits = AudioLimits.from_settings(services.settings)
    return data, await asyncio.to_thread(check_voice_sample, entry, data, source, limits)


def keep_sample(services: Services, label: str, sample: bytes) -> str:
    """A voice sample as an upload of the job store (local files or S3), written whole before it is named."""
    with services.store.staging() as folder:
        staged = folder / "sample.audio"  # the label (a voice's name) is only metadata
        staged.write_bytes(sample)
        return services.keep_upload("voices", f"{label}.audio", staged, {"voice": label}).file_id


async def _checked(services: Services, entry: ModelEntry, request: VoiceCloning, text: str, voice: str | None,
                   speed: float, fmt: str) -> SpeechRequest:
    given = await voice_sample(services, entry, request.model_dump(include=set(CLONING_FIELDS)))
    sample = given[0] if given else None
    transcript = request.audio_prompt_text
    if sample is None and voice and "voice-cloning" in entry.capabilities and voice not in (entry.specs.voices or []):
        saved = await asyncio.to_thread(services.store.saved_voices().get, voice.strip().lower(), current_owner())
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


def speech_entry(services: Services, model: str | None, request: VoiceCloning) -> ModelEntry:
    """The model a speech request names. Naming none with a voice sample: the task's current model if it
    clones, else the first that does, so the sample is used rather than refused."""
    if model or not any(getattr(request, field) for field in CLONING_FIELDS):
        return services.model_for(TASK, model)
    current = services.model_for(TASK, None)
    able = [m.id for m in services.catalog.models_for_task(TASK) if "voice-cloning" in m.capabilities]
    return current if "voice-cloning" in current.capabilities or not able else services.model_for(TASK, able[0])


@router.post("/api/tts", response_class=Response, responses=AUDIO_RESPONSE)
async def text_to_speech(body: TTSRequest, services: Services = Depends(get_services)) -> Response:
    entry = speech_entry(services, body.model, body)
    request = await _checked(services, entry, body, body.text, body.voice, body.speed, body.format)
    return _audio_reply(await services.call(entry, "synthesize", request), download=True)


@router.post("/v1/audio/speech", response_class=Response, responses=AUDIO_RESPONSE)
async def openai_speech(body: OpenAISpeechRequest, services: Services = Depends(get_services)) -> Response:
    entry = services.model_for(TASK, body.model)
    if body.instructions is not None:
        raise InvalidRequest(f"instructions are not supported by model '{entry.id}' (nor by any model here)")
    request = await _checked(services, entry, body, body.input, body.voice, body.speed, body.response_format)
    if body.stream_format is None:
        return _audio_reply(await services.call(entry, "synthesize", request), download=False)
    if request.format not in STREAM_FORMATS:
        raise InvalidRequest(f"stream_format '{body.stream_format}' sends response_format "
                             f"{' or '.join(STREAM_FORMATS)}, not '{request.format}' (its pieces would not "
                             f"join into one file); or leave stream_format out for the whole file")
    # a bad request raises on the first item, while a 4xx can still be sent
    start, pieces = await services.stream(entry, "synthesize_stream", request)
    headers = {"X-Model": start.model, "X-Voice": start.voice, "X-Sample-Rate": str(start.sample_rate),
               "Cache-Control": "no-cache"}
    if body.stream_format == "audio":
        return StreamingResponse(_audio_chunks(pieces), media_type=start.media_type, headers=headers)
    return StreamingResponse(_speech_events(start, pieces), media_type="text/event-stream", headers=headers)


async def _audio_chunks(pieces: AsyncIterator[SpeechPiece]) -> AsyncIterator[bytes]:
    try:
        async for piece in pieces:
            yield piece.audio
    except ServiceError:  # after the headers were sent, the stream can only stop short
        logger.exception("speech stream stopped")


async def _speech_events(start: SpeechStart, pieces: AsyncIterator[SpeechPiece]) -> AsyncIterator[str]:
    """OpenAI's speech stream: a speech.audio.delta per sentence (base64 audio), then speech.audio.done."""
    frames = 0
    try:
        async for piece in pieces:
            frames += round(piece.seconds / FRAME_SECONDS)
            yield sse({"type": "speech.audio.delta", "audio": base64.b64encode(piece.audio).decode()})
    except ServiceError as error:
        yield error_event(error)
        return
    usage = {"input_tokens": start.input_tokens, "output_tokens": frames, "total_tokens": start.input_tokens + frames}
    yield sse({"type": "speech.audio.done", "usage": usage})


async def speech_job_input(services: Services, entry: ModelEntry, data: dict[str, Any]) -> dict[str, Any]:
    """The stored input of a text-to-speech job (/api/v1/run, /process/{model}/{file_id}), checked now
    so a bad request is a 400 rather than a failed job. A `file_id` (from /process) is a voice sample."""
    data = {key: value for key, value in data.items() if key != "model_variant"}
    if "file_id" in data:
        data["voice_sample_file_id"] = data.pop("file_id")
    _refuse_cloning(services, entry, data)  # before the rest: a sample alone is answered with why not
    params = parse(SpeechInput, data)
    request = await _checked(services, entry, params, params.text, params.voice, params.speed, params.format)
    await services.call(entry, "check_text", request.text, model=entry.id)
    sample = params.voice_sample_file_id  # an upload stays one; a sample sent inline or by URL becomes one,
    if request.voice_sample and sample is None:  # so the job's stored input stays small
        sample = await asyncio.to_thread(keep_sample, services, "job-sample", request.voice_sample)
    return {"text": request.text, "voice": request.voice, "speed": request.speed, "format": request.format,
            "voice_sample_file_id": sample, "voice_sample_text": request.voice_sample_text, "seed": request.seed}


JOBS = {TASK: JobInput(speech_job_input, (SpeechInput,))}
TEXT_UPLOADS = (TASK,)  # an uploaded .txt file is the text to speak
