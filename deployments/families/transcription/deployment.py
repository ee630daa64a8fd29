"""Speech-to-text with Whisper: long audio in overlapping windows, segment and word timestamps,
batched across requests.

Audio is cut into windows of the model's chunk length (30 s) that overlap by `overlap_seconds`;
every window of every concurrent request joins one `@serve.batch` queue, so windows from
different requests share a `generate` call. Each window yields at least one segment; where the
model predicts timestamp tokens, the window is split at them (clamped to the window), and
`transcripts.merge_windows` joins the windows, so segments always cover the clip in order, even
for a model whose timestamps are nonsense. Per segment, `avg_logprob`, `compression_ratio` and
`no_speech_prob` come from the decode (OpenAI's verbose_json); word times come from Whisper's
cross-attention alignment heads (DTW), only when asked for, since they need the attention maps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import Field
from ray import serve

from deployments.errors import InvalidRequest
from deployments.families.transcription import protocol
from deployments.families.transcription.engines import ENGINES, WhisperEngine, check_options
from deployments.families.transcription.protocol import (
    Segment,
    TranscribedWord,
    Transcription,
    TranscriptionOptions,
)
from deployments.families.transcription.transcripts import (
    WindowResult,
    merge_windows,
    to_srt,
    to_vtt,
    window_starts,
)
from deployments.media.audio import AudioLimits, BadAudio, audio_header, decode_audio
from deployments.serving.batching import BatchConfig, raise_failed, run_in_groups
from deployments.serving.model_loading import FamilyDeployment
from deployments.serving.torch_threads import run_inference
from deployments.settings import ServiceSettings
from deployments.state.runner import JobContext
from registry import Catalog, ModelEntry

MAX_BATCH_SIZE = 16


class TranscriptionConfig(BatchConfig):
    """`user_config` of the deployment: 30 s windows per generate call, and how windows are cut and decoded."""

    default_batch, default_wait_s = MAX_BATCH_SIZE, 0.02
    max_new_tokens: int = Field(224, gt=0, le=440, description="Tokens generated per 30 s window "
                                "(224 = openai-whisper's default sample_len).")
    overlap_seconds: float = Field(5.0, ge=0, le=15, description="How much consecutive windows overlap, so "
                                   "a word across a window's edge is heard whole by one of them.")


@dataclass
class Window:
    """One window of one request's audio, as queued for batching."""

    model: str
    audio: np.ndarray
    options: TranscriptionOptions


@serve.deployment(max_ongoing_requests=2 * MAX_BATCH_SIZE, health_check_period_s=10)
class TranscriptionDeployment(FamilyDeployment):
    config_class, batched_methods = TranscriptionConfig, ("_generate_batch",)
    engines = tuple(ENGINES)

    def __init__(self, catalog: Catalog, settings: ServiceSettings, model_id: str | None = None):
        super().__init__(catalog, settings, model_id)
        self._service_settings = settings  # the audio limits decoding runs under

    async def transcribe(self, audio: bytes, options: TranscriptionOptions | dict | None = None, *,
                         model: str | None = None,
                         progress: Callable[[float], None] | None = None) -> Transcription:
        """Transcribe encoded audio (WAV, FLAC, MP3, OGG; any rate, any channels) with this deployment's model;
        `progress(fraction of windows done)` is for in-replica callers (jobs)."""
        entry = self._entry(model, protocol.TASK)
        options = TranscriptionOptions.model_validate(options or {})
        # Loaded before joining a batch: a failed load fails only its own requests.
        whisper: WhisperEngine = await self._models.get(entry)
        check_options(entry, whisper.generation_config, options)
        rate = whisper.sampling_rate
        limits = AudioLimits.from_settings(self._service_settings, entry.specs.max_duration_seconds,
                                           f"model '{entry.id}'s max_duration_seconds")
        try:
            protocol.check_duration(entry, (await asyncio.to_thread(audio_header, audio)).duration)  # before decoding
            samples = await asyncio.to_thread(decode_audio, audio, rate, limits)
        except BadAudio as bad:
            raise InvalidRequest(f"The audio cannot be read: {bad}") from None
        protocol.check_duration(entry, len(samples) / rate)
        window = int(min(entry.specs.chunk_length_seconds or whisper.chunk_length, whisper.chunk_length) * rate)
        starts = window_starts(len(samples), window, int(min(self._config.overlap_seconds * rate, window / 2)))
        pending = [asyncio.ensure_future(self._generate_batch(Window(entry.id, samples[s:s + window], options)))
                   for s in starts]
        if progress is not None:
            for done, future in enumerate(asyncio.as_completed(pending), 1):
                await future
                progress(done / len(pending))
        results = [raise_failed(result) for result in await asyncio.gather(*pending)]
        merged = merge_windows(results, starts, rate, window, len(samples), options.temperature)
        return Transcription(
            model=entry.id, task=options.task, language=options.language or results[0].language,
            duration=round(len(samples) / rate, 3), text=merged.text,
            segments=[Segment.model_validate(segment) for segment in merged.segments],
            words=None if merged.words is None else [TranscribedWord(**vars(word)) for word in merged.words],
            batch_size=max(result.batch_size for result in results))

    async def run_job(self, job_id: str) -> str:
        """A transcription job over an upload (seed 000's /process/whisper/{file_id})."""
        return await self._jobs.run(job_id, self._transcribe_job)

    async def _transcribe_job(self, context: JobContext) -> dict[str, Any]:
        params = protocol.TranscriptionJobInput.model_validate(context.job.input)
        upload = await asyncio.to_thread(self._store.get_upload, params.file_id)
        if upload is None:
            raise InvalidRequest(f"Upload '{params.file_id}' no longer exists")
        data = await asyncio.to_thread(self._store.read_upload, upload)
        context.report(0.0, "transcribing")
        result = await self.transcribe(data, params.model_dump(exclude={"file_id"}), model=context.job.model,
                                       progress=lambda done: context.report(0.95 * done, "transcribing"))
        for name, content in (("transcript.txt", result.text + "\n"), ("transcript.srt", to_srt(result.segments)),
                              ("transcript.vtt", to_vtt(result.segments))):
            (context.output_dir / name).write_text(content, encoding="utf-8")
        context.report(1.0, "written")
        return result.model_dump(exclude={"batch_size"})

    @serve.batch(max_batch_size=MAX_BATCH_SIZE, batch_wait_timeout_s=0.02)
    async def _generate_batch(self, windows: list[Window]) -> list[WindowResult | Exception]:
        """Windows that can share a generate call (same model, task, temperature, and either all with a
        language or all detecting it) go through one; the batch size is what each window reports."""
        async def generate(group: list[Window]) -> list[WindowResult]:
            whisper: WhisperEngine = await self._models.get(self._catalog.models[group[0].model])
            return await run_inference(whisper.transcribe, [w.audio for w in group], group[0].options,
                                       self._config.max_new_tokens)

        return await run_in_groups(windows, lambda w: (w.model, w.options.task, w.options.temperature,
                                                       w.options.language is None, w.options.word_timestamps),
                                   generate, "transcription")

    def _load(self, entry: ModelEntry, paths: dict[str, str]) -> WhisperEngine:
        return ENGINES[entry.engine or self.engines[0]](entry, paths, self._device)

    def _conversion(self, entry: ModelEntry) -> str | None:
        if entry.engine != "ctranslate2":
            return None
        return "ctranslate2-float16" if self._device == "cuda" else "ctranslate2-int8"
