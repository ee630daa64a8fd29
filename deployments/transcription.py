"""Speech-to-text with Whisper: chunked long audio with segment timestamps, batched across requests.

Audio is cut into windows of the model's chunk length (30 s); every window of every concurrent
request joins one `@serve.batch` queue, so windows from different requests share a `generate`
call. Each window yields at least one segment spanning it; where the model predicts timestamp
tokens, the window is split at them (clamped to the window), so segments always cover the clip
in order, even for a model whose timestamps are nonsense.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator
from ray import serve

from deployments.audio import BadAudio, decode_audio
from deployments.errors import InvalidRequest
from deployments.jobs.runner import JobContext
from deployments.model_loading import FamilyDeployment
from registry import ModelEntry

TASK = "speech-to-text"
MAX_BATCH_SIZE = 16
TIME_PRECISION = 0.02  # seconds per Whisper timestamp token


@cache
def _language_codes() -> dict[str, str]:
    """Every name Whisper knows a language by (code or English name, lower case) -> its code."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES, TO_LANGUAGE_CODE

    return {code: code for code in LANGUAGES} | dict(TO_LANGUAGE_CODE)


def language_name(code: str) -> str:
    """'en' -> 'english', as OpenAI's verbose_json names the language."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    return LANGUAGES.get(code, code)


class TranscriptionOptions(BaseModel):
    """What a request may ask of Whisper besides the audio."""

    model_config = ConfigDict(extra="forbid")

    language: str | None = Field(None, description="Spoken language, code or English name ('de', 'german'); "
                                 "detected per 30 s window when absent.")
    task: Literal["transcribe", "translate"] = Field("transcribe", description="translate = into English.")
    temperature: float = Field(0.0, ge=0, le=1, description="0 decodes greedily; above 0 samples.")

    @field_validator("language")
    @classmethod
    def _known_language(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        code = _language_codes().get(value.strip().lower())
        if code is None:
            raise ValueError(f"unknown language '{value}'; use a code such as 'en', 'de', 'fr' or an English "
                             f"name such as 'german'")
        return code


class TranscriptionJobInput(TranscriptionOptions):
    """A transcription job's stored input: an upload plus the options."""

    file_id: str


class Segment(BaseModel):
    id: int
    seek: int = Field(description="Start of the segment's 30 s window, in 10 ms frames (as Whisper counts).")
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float


class Transcription(BaseModel):
    model: str
    task: str
    language: str = Field(description="Code of the language given, or detected in the first window.")
    duration: float
    text: str
    segments: list[Segment]
    batch_size: int = Field(description="Most windows that shared one generate call with this request's.")


class TranscriptionConfig(BaseModel):
    """`user_config` of the deployment; changed live through `reconfigure`."""

    model_config = ConfigDict(extra="forbid")

    max_batch_size: int = Field(MAX_BATCH_SIZE, gt=0, description="Windows per generate call (1 = no batching). "
                                "Keep max_ongoing_requests at least this large.")
    batch_wait_timeout_s: float = Field(0.02, ge=0, description="How long a batch waits to fill.")
    max_new_tokens: int = Field(224, gt=0, le=440, description="Tokens generated per 30 s window "
                                "(224 = openai-whisper's default sample_len).")


@dataclass
class Whisper:
    processor: Any
    model: Any


@dataclass
class Window:
    """One window of one request's audio, as queued for batching."""

    model: str
    audio: np.ndarray
    options: TranscriptionOptions


@dataclass
class WindowResult:
    pieces: list[tuple[float, float, list[int], str]]  # (start, end, tokens, text), seconds into the window
    language: str
    batch_size: int


@serve.deployment(max_ongoing_requests=2 * MAX_BATCH_SIZE, health_check_period_s=10)
class TranscriptionDeployment(FamilyDeployment):
    config_class, batched_methods = TranscriptionConfig, ("_generate_batch",)

    async def transcribe(self, model: str, audio: bytes, options: TranscriptionOptions | dict | None = None,
                         progress: Callable[[float], None] | None = None) -> Transcription:
        """Transcribe encoded audio (WAV, FLAC, MP3, OGG; any rate, any channels) with catalog model `model`;
        `progress(fraction of windows done)` is for in-replica callers (jobs)."""
        entry = self._entry(model, TASK)
        options = TranscriptionOptions.model_validate(options or {})
        # Loaded before joining a batch: a failed load fails only its own requests.
        whisper = await self._models.get(entry)
        _check_options(entry, whisper, options)
        extractor = whisper.processor.feature_extractor
        try:
            samples = await asyncio.to_thread(decode_audio, audio, extractor.sampling_rate)
        except BadAudio as bad:
            raise InvalidRequest(f"The audio cannot be read: {bad}") from None
        check_duration(entry, len(samples) / extractor.sampling_rate)
        window = int(min(entry.specs.chunk_length_seconds or extractor.chunk_length, extractor.chunk_length)
                     * extractor.sampling_rate)
        starts = range(0, len(samples), window)
        pending = [asyncio.ensure_future(self._generate_batch(Window(entry.id, samples[s:s + window], options)))
                   for s in starts]
        if progress is not None:
            for done, future in enumerate(asyncio.as_completed(pending), 1):
                await future
                progress(done / len(pending))
        results = await asyncio.gather(*pending)
        return _assemble(entry.id, options, samples, extractor.sampling_rate, list(starts), results)

    async def run_job(self, job_id: str) -> str:
        """A transcription job over an upload (seed 000's /process/whisper/{file_id})."""
        return await self._jobs.run(job_id, self._transcribe_job)

    async def _transcribe_job(self, context: JobContext) -> dict[str, Any]:
        params = TranscriptionJobInput.model_validate(context.job.input)
        upload = await asyncio.to_thread(self._store.get_upload, params.file_id)
        if upload is None:
            raise InvalidRequest(f"Upload '{params.file_id}' no longer exists")
        data = await asyncio.to_thread(self._store.read_upload, upload)
        context.report(0.0, "transcribing")
        result = await self.transcribe(context.job.model, data, params.model_dump(exclude={"file_id"}),
                                       progress=lambda done: context.report(0.95 * done, "transcribing"))
        for name, content in (("transcript.txt", result.text + "\n"), ("transcript.srt", to_srt(result.segments)),
                              ("transcript.vtt", to_vtt(result.segments))):
            (context.output_dir / name).write_text(content, encoding="utf-8")
        context.report(1.0, "written")
        return result.model_dump(exclude={"batch_size"})

    @serve.batch(max_batch_size=MAX_BATCH_SIZE, batch_wait_timeout_s=0.02)
    async def _generate_batch(self, windows: list[Window]) -> list[WindowResult]:
        """Windows that can share a generate call (same model, task, temperature, and either all with a
        language or all detecting it) go through one; the batch size is what each window reports."""
        groups: dict[tuple, list[int]] = {}
        for i, w in enumerate(windows):
            key = (w.model, w.options.task, w.options.temperature, w.options.language is None)
            groups.setdefault(key, []).append(i)
        results: list[WindowResult | None] = [None] * len(windows)
        for (model_id, *_), indices in groups.items():
            whisper = await self._models.get(self._catalog.models[model_id])
            group = [windows[i] for i in indices]
            for i, result in zip(indices, await asyncio.to_thread(self._generate, whisper, group)):
                results[i] = result
        return results

    def _generate(self, whisper: Whisper, windows: list[Window]) -> list[WindowResult]:
        import torch

        extractor, model, options = whisper.processor.feature_extractor, whisper.model, windows[0].options
        features = extractor([w.audio for w in windows], sampling_rate=extractor.sampling_rate,
                             return_tensors="pt").input_features.to(self._device, model.dtype)
        multilingual = getattr(model.generation_config, "is_multilingual", True)
        languages = [w.options.language for w in windows] if options.language and multilingual else None
        with torch.inference_mode():
            sequences = model.generate(
                features, task=options.task if multilingual else None, language=languages,
                temperature=options.temperature,
                return_timestamps=True, force_unique_generate_call=True,  # one pass per window, no seeking
                max_new_tokens=self._config.max_new_tokens,
            )
        config, tokenizer = model.generation_config, whisper.processor.tokenizer
        results = []
        for window, ids in zip(windows, sequences.tolist()):
            duration = len(window.audio) / extractor.sampling_rate
            pieces = [(start, end, tokens, tokenizer.decode(tokens, skip_special_tokens=True))
                      for start, end, tokens in split_at_timestamps(ids, config, duration)]
            results.append(WindowResult(pieces, _language_of(ids, config), len(windows)))
        return results

    def _load(self, entry: ModelEntry, paths: dict[str, str]) -> Whisper:
        import torch
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        dtype = torch.float16 if self._device == "cuda" else torch.float32
        model = WhisperForConditionalGeneration.from_pretrained(paths["weights"], dtype=dtype, local_files_only=True)
        processor = WhisperProcessor.from_pretrained(paths["weights"], local_files_only=True)
        return Whisper(processor, model.to(self._device).eval())  # type: ignore[arg-type]


def _check_options(entry: ModelEntry, whisper: Whisper, options: TranscriptionOptions) -> None:
    """What only the loaded model can tell: the languages and tasks it was trained for."""
    config = whisper.model.generation_config
    known = [token.strip("<|>") for token in getattr(config, "lang_to_id", None) or {}]
    if options.language and known and options.language not in known:
        raise InvalidRequest(f"Model '{entry.id}' does not know language '{options.language}'; "
                             f"it knows {', '.join(known)}")
    if options.language not in (None, "en") and not known:
        raise InvalidRequest(f"Model '{entry.id}' transcribes English only")
    if options.task not in (getattr(config, "task_to_id", None) or {"transcribe": None}):
        raise InvalidRequest(f"Model '{entry.id}' cannot {options.task}")


def check_duration(entry: ModelEntry, seconds: float) -> None:
    """The catalog's max_duration_seconds, when one is set (e.g. CATALOG__WHISPER_BASE__MAX_DURATION_SECONDS)."""
    limit = entry.specs.max_duration_seconds
    if limit and seconds > limit:
        raise InvalidRequest(f"Duration {seconds:g}s exceeds model limit of {limit:g}s")


def split_at_timestamps(ids: list[int], config, duration: float) -> list[tuple[float, float, list[int]]]:
    """A window's generated ids as (start, end, text tokens) pieces covering [0, duration] in order.

    Text between timestamp tokens is a piece from the timestamp before it to the one after it.
    Timestamps are clamped to the window and never go backwards; text left with no time (after a
    timestamp clamped to the window's end) joins the piece before it. The first piece starts at 0
    and the last ends at `duration`; a window with no text is one empty piece.
    """
    timestamp_begin = config.no_timestamps_token_id + 1
    prompt = {config.decoder_start_token_id, *(getattr(config, "lang_to_id", None) or {}).values(),
              *(getattr(config, "task_to_id", None) or {}).values(), config.no_timestamps_token_id}
    eos = config.eos_token_id if isinstance(config.eos_token_id, list) else [config.eos_token_id]
    start = 0
    while start < len(ids) and ids[start] in prompt:
        start += 1
    pieces, tokens, last, opened = [], [], 0.0, 0.0
    for token in ids[start:]:
        if token in eos:
            break
        if token >= timestamp_begin:
            last = min(max(last, (token - timestamp_begin) * TIME_PRECISION), duration)
            if tokens:
                pieces.append((opened, last, tokens))
                tokens = []
        else:
            if not tokens:
                opened = last
            tokens.append(token)
    if tokens:
        pieces.append((opened, duration, tokens))
    if not pieces:
        return [(0.0, duration, [])]
    merged = pieces[:1]
    for start, end, tokens in pieces[1:]:  # text after timestamps clamped to the window's end joins the piece before
        if start < end:
            merged.append((start, end, tokens))
        else:
            merged[-1] = (merged[-1][0], end, merged[-1][2] + tokens)
    pieces = merged
    pieces[0] = (0.0, *pieces[0][1:])
    pieces[-1] = (pieces[-1][0], duration, pieces[-1][2])
    return pieces


def _language_of(ids: list[int], config) -> str:
    """The language token Whisper was prompted with or detected (the second token), as a code."""
    by_id = {token_id: token.strip("<|>") for token, token_id in (getattr(config, "lang_to_id", None) or {}).items()}
    return by_id.get(ids[1], "en") if len(ids) > 1 else "en"


def _assemble(model: str, options: TranscriptionOptions, samples: np.ndarray, rate: int, starts: list[int],
              results: list[WindowResult]) -> Transcription:
    segments, texts = [], []
    for offset, result in zip(starts, results):
        for start, end, tokens, text in result.pieces:
            segments.append(Segment(id=len(segments), seek=round(offset * 100 / rate),
                                    start=round(offset / rate + start, 3), end=round(offset / rate + end, 3),
                                    text=text.strip(), tokens=tokens, temperature=options.temperature))
            texts.append(text)
    return Transcription(model=model, task=options.task, language=options.language or results[0].language,
                         duration=round(len(samples) / rate, 3), text="".join(texts).strip(), segments=segments,
                         batch_size=max(result.batch_size for result in results))


def _timestamp(seconds: float, separator: str) -> str:
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    return f"{hours:02d}:{minutes:02d}:{millis // 1000:02d}{separator}{millis % 1000:03d}"


def _cues(segments: list[Segment]) -> list[tuple[float, float, str]]:
    """(start, end, text) of segments with text, on one line each (a blank line would end a cue)."""
    return [(s.start, s.end, " ".join(s.text.split()).replace("-->", "->")) for s in segments if s.text.strip()]


def to_srt(segments: list[Segment]) -> str:
    return "".join(f"{i}\n{_timestamp(start, ',')} --> {_timestamp(end, ',')}\n{text}\n\n"
                   for i, (start, end, text) in enumerate(_cues(segments), 1))


def to_vtt(segments: list[Segment]) -> str:
    return "WEBVTT\n\n" + "".join(f"{_timestamp(start, '.')} --> {_timestamp(end, '.')}\n{text}\n\n"
                                  for start, end, text in _cues(segments))
