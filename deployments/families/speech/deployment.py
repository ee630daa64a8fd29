"""Text-to-speech: SpeechT5 with its HiFi-GAN vocoder and speaker embeddings, and Bark with voice presets.

One deployment serves both families. Requests that arrive together are synthesized together
(`@serve.batch`): SpeechT5 takes one speaker embedding per row, so a batch mixes voices; Bark takes
one voice preset per `generate` call, so its batches are split by voice. Audio is encoded
(wav/flac/mp3) here in the replica, so the ingress only passes bytes on.
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import numpy as np
from ray import serve

from deployments.errors import InvalidRequest, ModelUnavailable
from deployments.families.speech import protocol
from deployments.families.speech.engines import ENGINES
from deployments.families.speech.protocol import (
    Speech,
    SpeechPiece,
    SpeechRequest,
    SpeechStart,
)
from deployments.media.audio import SPEECH_FORMATS, STREAM_FORMATS, pcm16, wav_stream_header
from deployments.serving.batching import BatchConfig, raise_failed, run_in_groups
from deployments.serving.model_loading import FamilyDeployment
from deployments.serving.torch_threads import run_inference
from deployments.state.runner import JobContext
from registry import ModelEntry

logger = logging.getLogger(__name__)

MAX_ONGOING_REQUESTS = 32










SENTENCE_END = re.compile(r"(?<=[.!?;。！？])\s+|\n+")


def sentences(text: str, shortest: int = 12) -> list[str]:
    """`text` cut after sentence ends (and at line breaks); a piece shorter than `shortest` characters
    joins the next, so a stream does not stop and start on "Dr." or "Hi!"."""
    pieces: list[str] = []
    for piece in filter(None, (p.strip() for p in SENTENCE_END.split(text))):
        if pieces and len(pieces[-1]) < shortest:
            pieces[-1] = f"{pieces[-1]} {piece}"
        else:
            pieces.append(piece)
    return pieces or [text]






class SpeechConfig(BatchConfig):
    """`user_config` of the deployment: texts per model call (Bark: per voice)."""

    default_batch, default_wait_s, largest_batch = 8, 0.01, MAX_ONGOING_REQUESTS


@serve.deployment(max_ongoing_requests=MAX_ONGOING_REQUESTS, health_check_period_s=10)
class SpeechDeployment(FamilyDeployment):
    config_class, batched_methods = SpeechConfig, ("_synthesize_batch",)

    async def synthesize(self, request: SpeechRequest) -> Speech:
        """Speak `request.text`; bad input (voice, speed, length, format) raises InvalidRequest (400)."""
        request, engine, _ = await self._prepare(request, SPEECH_FORMATS)
        audio, batch_size = await self._speak(request)
        return await asyncio.to_thread(_encode, request, audio, engine.sample_rate, batch_size)

    async def synthesize_stream(self, request: SpeechRequest) -> AsyncIterator[SpeechStart | SpeechPiece]:
        """`SpeechStart`, then each sentence's audio as soon as it is spoken (wav: a header for an
        open-ended stream, then 16-bit PCM; pcm: the PCM alone). Every sentence joins the batch queue on
        its own, so concurrent streams share model calls. Bad input raises before anything is yielded."""
        request, engine, tokens = await self._prepare(request, dict.fromkeys(STREAM_FORMATS))
        _, _, media_type = SPEECH_FORMATS[request.format]
        yield SpeechStart(request.model, request.voice or "", request.format, media_type, engine.sample_rate, tokens)
        header = wav_stream_header(engine.sample_rate) if request.format == "wav" else b""
        for sentence in sentences(request.text):
            audio, batch_size = await self._speak(replace(request, text=sentence))
            rate = engine.sample_rate
            yield SpeechPiece(header + pcm16(_unclipped(audio), rate), round(len(audio) / rate, 3), batch_size)
            header = b""

    async def _prepare(self, request: SpeechRequest, formats: dict) -> tuple[SpeechRequest, Any, int]:
        """The request with the catalog's model id and voice, its loaded engine, and the text's tokens."""
        entry = self._entry(request.model, protocol.TASK)
        if request.format not in formats:
            raise InvalidRequest(f"Unknown format '{request.format}'; supported: {', '.join(formats)}")
        request = replace(request, model=entry.id, voice=protocol.resolve_voice(entry, request.voice))
        protocol.check_speed(self._catalog, entry, request.speed)
        # loaded before joining a batch: a failed load fails only its own requests
        engine = await self._models.get(entry)
        tokens = engine.check_text(request.text)
        if request.voice not in engine.voices:  # the catalog names it, the downloaded files lack it
            raise ModelUnavailable(f"Voice '{request.voice}' of model '{entry.id}' is missing from its files; "
                                   f"voices available: {', '.join(engine.voices)}")
        return request, engine, tokens

    async def _speak(self, request: SpeechRequest) -> tuple[np.ndarray, int]:
        return raise_failed(await self._synthesize_batch(request))

    async def check_text(self, text: str, *, model: str | None = None) -> int:
        """Tokens `text` is read as, or InvalidRequest naming the model's limit (jobs check before queueing)."""
        return (await self._models.get(self._entry(model, protocol.TASK))).check_text(text)

    async def run_job(self, job_id: str) -> str:
        """Speech as a queued job (seed 004's /api/v1/run): the audio becomes the job's result file."""
        return await self._jobs.run(job_id, self._speech_job)

    async def _speech_job(self, context: JobContext) -> dict[str, Any]:
        context.report(0.0, "synthesizing")
        job_input = dict(context.job.input)
        inline = job_input.pop("voice_sample_base64", None)  # jobs queued before samples were kept as uploads
        sample = base64.b64decode(inline) if inline else None
        if file_id := job_input.pop("voice_sample_file_id", None):  # the sample, kept when the job was queued
            upload = await asyncio.to_thread(self._store.get_upload, file_id)
            if upload is None:
                raise InvalidRequest(f"Voice sample upload '{file_id}' no longer exists")
            sample = await asyncio.to_thread(self._store.read_upload, upload)
        speech = await self.synthesize(SpeechRequest(model=context.job.model, **job_input, voice_sample=sample))
        name = f"speech.{speech.format}"
        await asyncio.to_thread((context.output_dir / name).write_bytes, speech.audio)
        context.report(1.0, "written")
        return {"file": name, "voice": speech.voice, "format": speech.format,
                "sample_rate": speech.sample_rate, "duration": speech.duration}

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def _synthesize_batch(self, requests: list[SpeechRequest]) -> list[tuple[np.ndarray, int] | Exception]:
        """(audio, group size) per request, in order; a group that fails hands its error to its own requests."""
        engines = {}
        for request in requests:
            engines[request.model] = await self._models.get(self._catalog.models[request.model])

        async def synthesize(group: list[SpeechRequest]) -> list[tuple[np.ndarray, int]]:
            audio = await run_inference(engines[group[0].model].synthesize, group)
            return [(clip, len(group)) for clip in audio]

        return await run_in_groups(requests, lambda r: (r.model, engines[r.model].batch_key(r)), synthesize,
                                   "speech synthesis")

    def _load(self, entry: ModelEntry, paths: dict[str, str]):
        engine = ENGINES.get(entry.family)
        if engine is None:
            raise InvalidRequest(f"Model '{entry.id}' of family '{entry.family}' has no speech engine")
        return engine(entry, paths, self._device)


def _unclipped(audio: np.ndarray) -> np.ndarray:
    """Audio scaled down if it would clip (16-bit formats wrap around otherwise); a stream does it per sentence."""
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    return audio / peak if peak > 1.0 else audio


def _encode(request: SpeechRequest, audio: np.ndarray, sample_rate: int, batch_size: int) -> Speech:
    """Encode mono float audio, scaled down if it would clip (16-bit formats wrap around otherwise)."""
    import soundfile as sf

    audio = _unclipped(audio)
    container, subtype, media_type = SPEECH_FORMATS[request.format]
    buffer = io.BytesIO()
    sf.write(buffer, audio.astype(np.float32), sample_rate, format=container, subtype=subtype,
             endian="LITTLE" if container == "RAW" else "FILE")
    return Speech(model=request.model, voice=request.voice, format=request.format, media_type=media_type,
                  sample_rate=sample_rate, duration=round(len(audio) / sample_rate, 3), audio=buffer.getvalue(),
                  batch_size=batch_size)










