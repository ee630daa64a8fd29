"""Speech-to-text: POST /api/stt (seed 003), POST /v1/audio/transcriptions and /translations (OpenAI
shape), and the job input of /process/whisper/{file_id} (seed 000) and /api/v1/run.

The ingress reads the uploaded bytes, checks the options and the audio's header (duration, channels, rate),
and never decodes it; decoding, resampling and the model run in the transcription deployment.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any, Literal

from fastapi import APIRouter, Depends, File, Form, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field

from deployments.errors import InvalidRequest, PayloadTooLarge
from deployments.families.transcription.protocol import (
    TASK,
    Segment,
    TranscribedWord,
    Transcription,
    TranscriptionJobInput,
    TranscriptionOptions,
    check_duration,
    known_languages,
    language_name,
    to_srt,
    to_vtt,
)
from deployments.ingress.body_limits import audio_bytes
from deployments.ingress.http_errors import ERROR_RESPONSES
from deployments.ingress.replies import Absent, json_reply
from deployments.ingress.request_checks import JobInput, check_file_type, not_null, parse
from deployments.ingress.services import Services, get_services
from deployments.media.audio import AudioLimits, BadAudio, audio_header, check_audio_limits
from registry import ModelEntry

router = APIRouter(tags=["speech-to-text"], responses=ERROR_RESPONSES)

ResponseFormat = Literal["json", "text", "srt", "verbose_json", "vtt"]
BATCH_HEADER = "X-Batch-Size"  # windows that shared the model call with this request's
GRANULARITIES_FIELD = "timestamp_granularities[]"
GRANULARITY = ("segment", "word")


def _form_language(schema: dict[str, Any]) -> None:
    not_null(schema)
    known_languages(schema)


def _granularities(schema: dict[str, Any]) -> None:
    schema["items"]["enum"] = list(GRANULARITY)


# _word_timestamps' rule for the spec: word timestamps only with response_format verbose_json.
WORDS_NEED_VERBOSE_JSON = {"requestBody": {"content": {"multipart/form-data": {"schema": {
    "if": {"properties": {GRANULARITIES_FIELD: {"contains": {"const": "word"}}}, "required": [GRANULARITIES_FIELD]},
    "then": {"properties": {"response_format": {"const": "verbose_json"}}, "required": ["response_format"]}}}}}}


class SttSegment(BaseModel):
    id: int
    start: float = Field(description="Seconds.")
    end: float
    text: str


class SttReply(BaseModel):
    success: bool
    text: str
    model: str
    language: str = Field(description="Code of the language given, or detected.")
    duration: float = Field(description="Seconds of audio.")
    segments: list[SttSegment]
    words: list[TranscribedWord] | Absent = Field(None, description="With word_timestamps: every word, in order.")
    batch_size: int = Field(description="Most windows that shared one model call with this request's.")
    processing_time: float = Field(description="Seconds.")


class DurationUsage(BaseModel):
    type: Literal["duration"]
    seconds: int = Field(description="Seconds of audio, rounded up.")


class OpenAITranscription(BaseModel):
    """response_format json."""

    text: str
    usage: DurationUsage


class VerboseTranscription(BaseModel):
    """response_format verbose_json: OpenAI's verbose transcription."""

    task: str = Field(description="transcribe or translate.")
    language: str = Field(description="The language's name, e.g. english.")
    duration: float
    text: str
    segments: list[Segment]
    usage: DurationUsage
    words: list[TranscribedWord] | Absent = Field(None, description="timestamp_granularities[] word.")


OPENAI_TEXT = json_reply(OpenAITranscription | VerboseTranscription,
                         "json or verbose_json (JSON); text and srt (text/plain); vtt (text/vtt).",
                         headers={BATCH_HEADER: "Windows that shared the model call with this request's."},
                         also={"text/plain": "response_format text (the text and a newline) or srt (SubRip).",
                               "text/vtt": "response_format vtt (WebVTT)."})


async def transcription_job_input(services: Services, entry: ModelEntry, data: dict[str, Any]) -> dict[str, Any]:
    """The stored input of a speech-to-text job (/process/{model}/{file_id} and /api/v1/run), checked."""
    data = {key: value for key, value in data.items() if key != "model_variant"}
    params = parse(TranscriptionJobInput, data)
    upload = await services.upload(params.file_id)
    check_file_type(services, entry, upload)
    check_duration(entry, upload.info.get("duration", 0))
    return params.model_dump()


async def _transcribe(services: Services, model: str | None, audio: UploadFile,
                      options: dict[str, Any]) -> Transcription:
    entry = services.model_for(TASK, model)
    checked = parse(TranscriptionOptions, {key: value for key, value in options.items() if value is not None})
    limit = audio_bytes(services.settings)
    data = await audio.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"The audio file '{audio.filename}' exceeds the upload limit of {limit} bytes")
    if not data:
        raise InvalidRequest(f"The audio file '{audio.filename}' is empty")
    await asyncio.to_thread(check_audio_header, services, entry, data)
    return await services.call(entry, "transcribe", data, checked, model=entry.id)


def check_audio_header(services: Services, entry: ModelEntry, data: bytes) -> None:
    """The model's duration and the service's audio limits, read from the header, so audio over them never
    reaches the replica (which checks again, decoding in blocks under a running cap: headers can lie)."""
    try:
        header = audio_header(data)
    except BadAudio as bad:
        raise InvalidRequest(f"The audio cannot be read: {bad}") from None
    check_duration(entry, header.duration)
    check_audio_limits(header, AudioLimits.from_settings(services.settings, entry.specs.max_duration_seconds))


@router.post("/api/stt", response_model=Any, responses=json_reply(SttReply, "The transcript."))
async def speech_to_text(
    audio: UploadFile = File(..., description="Audio file: WAV, FLAC, MP3 or OGG, any sample rate."),
    model: str | None = Form(None, json_schema_extra=not_null,
                             description="Catalog id, alias or hub repo id; default whisper-base."),
    language: str | None = Form(None, json_schema_extra=_form_language,
                                description="Spoken language ('en', 'german'); detected when absent."),
    task: Literal["transcribe", "translate"] | None = Form(None, json_schema_extra=not_null,
                                                          description="transcribe (default) or translate "
                                                          "(into English)."),
    temperature: float | None = Form(None, ge=0, le=1, json_schema_extra=not_null,
                                     description="0 (default) decodes greedily; up to 1 samples."),
    word_timestamps: bool = Form(False, description="Also time every word ('words' in the reply)."),
    services: Services = Depends(get_services),
) -> dict[str, Any]:
    started = time.perf_counter()
    result = await _transcribe(services, model, audio, {"language": language, "task": task, "temperature": temperature,
                                                        "word_timestamps": word_timestamps})
    words = {"words": [w.model_dump() for w in result.words]} if result.words is not None else {}
    return {
        "success": True,
        "text": result.text,
        "model": result.model,
        "language": result.language,
        "duration": result.duration,
        "segments": [{"id": s.id, "start": s.start, "end": s.end, "text": s.text} for s in result.segments],
        **words,
        "batch_size": result.batch_size,
        "processing_time": round(time.perf_counter() - started, 4),
    }


def _openai_reply(result: Transcription, response_format: str) -> Response:
    headers = {BATCH_HEADER: str(result.batch_size)}
    usage = {"type": "duration", "seconds": math.ceil(result.duration)}
    if response_format == "text":
        return PlainTextResponse(result.text + "\n", headers=headers)
    if response_format == "srt":
        return PlainTextResponse(to_srt(result.segments), headers=headers)
    if response_format == "vtt":
        return Response(to_vtt(result.segments), media_type="text/vtt", headers=headers)
    if response_format == "verbose_json":
        body = {"task": result.task, "language": language_name(result.language), "duration": result.duration,
                "text": result.text, "segments": [s.model_dump() for s in result.segments], "usage": usage}
        if result.words is not None:
            body["words"] = [w.model_dump() for w in result.words]
    else:
        body = {"text": result.text, "usage": usage}
    return JSONResponse(body, headers=headers)


FILE = File(..., description="Audio file: WAV, FLAC, MP3 or OGG, any sample rate.")
MODEL = Form(..., min_length=1, description="whisper-1 (= whisper-base), a catalog id such as whisper-small, or "
             "a hub repo id.")
PROMPT = Form(None, json_schema_extra=not_null, description="Accepted for compatibility and ignored.")
RESPONSE_FORMAT = Form("json", description="json, text, srt, verbose_json or vtt.")
TEMPERATURE = Form(0.0, ge=0, le=1, description="0 decodes greedily; up to 1 samples.")
GRANULARITIES = Form([], alias=GRANULARITIES_FIELD, json_schema_extra=_granularities,
                     description="'segment' (the default) and/or 'word', with response_format verbose_json; "
                     "words are timed by Whisper's alignment heads.")


def _word_timestamps(granularities: list[str], response_format: str) -> bool:
    """Whether `timestamp_granularities[]` asks for words; anything but segment/word, or words without
    verbose_json (the only format that carries them, as in OpenAI's API), is a 400."""
    unknown = set(granularities) - set(GRANULARITY)
    if unknown:
        raise InvalidRequest(f"timestamp_granularities {sorted(unknown)} are not supported; use 'segment' or 'word'")
    if "word" in granularities and response_format != "verbose_json":
        raise InvalidRequest(f"timestamp_granularities 'word' needs response_format verbose_json, not "
                             f"'{response_format}'")
    return "word" in granularities


@router.post("/v1/audio/transcriptions", response_model=None, openapi_extra=WORDS_NEED_VERBOSE_JSON,
             responses=OPENAI_TEXT)
async def openai_transcriptions(
    file: UploadFile = FILE,
    model: str = MODEL,
    language: str | None = Form(None, json_schema_extra=_form_language,
                                description="ISO-639-1 code, e.g. 'en'; detected when absent."),
    prompt: str | None = PROMPT,
    response_format: ResponseFormat = RESPONSE_FORMAT,
    temperature: float = TEMPERATURE,
    timestamp_granularities: list[str] = GRANULARITIES,
    services: Services = Depends(get_services),
) -> Response:
    words = _word_timestamps(timestamp_granularities, response_format)
    result = await _transcribe(services, model, file, {"language": language, "temperature": temperature,
                                                      "word_timestamps": words})
    return _openai_reply(result, response_format)


@router.post("/v1/audio/translations", response_model=None, responses=OPENAI_TEXT)
async def openai_translations(
    file: UploadFile = FILE,
    model: str = MODEL,
    prompt: str | None = PROMPT,
    response_format: ResponseFormat = RESPONSE_FORMAT,
    temperature: float = TEMPERATURE,
    services: Services = Depends(get_services),
) -> Response:
    """Speech in any language Whisper knows, as English text."""
    result = await _transcribe(services, model, file, {"task": "translate", "temperature": temperature})
    return _openai_reply(result, response_format)


JOBS = {TASK: JobInput(transcription_job_input, (TranscriptionJobInput,))}
