"""Text-to-music with MusicGen: small, medium and large from one deployment, batched across requests.

The checkpoints run through transformers' port (`MusicgenForConditionalGeneration` + `AutoProcessor`):
audiocraft 1.3 pins torch 2.1, torchaudio and xformers, which cannot be installed beside this
service's torch, while transformers loads the same `facebook/musicgen-*` repos.

Prompts arriving together share one `generate` call (@serve.batch), grouped by model and adapter;
each row is sampled with its own seeded generator (`SeededSampler`), so a request's audio does not
depend on what it was batched with. LoRA adapters (catalog `adapters:`) come through the model
manager like any repo and are switched per group (`music_adapters`); a failed switch never leaves
the base model changed.
"""

from __future__ import annotations

import asyncio
import io
import math
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import soundfile as sf
import torch
from ray import serve

from deployments.errors import InvalidRequest
from deployments.families.music import protocol
from deployments.families.music.adapters import (
    AdapterSlots,
    AdapterSwitchFailed,
    require_adapter_support,
)
from deployments.families.music.protocol import (
    MAX_BATCH_SIZE,
    TASK,
    Music,
    MusicConfig,
    MusicJobInput,
    MusicParams,
)
from deployments.families.protocol import new_seed
from deployments.media.audio import OUTPUT_FORMATS
from deployments.model_cache.manager import get_model_manager
from deployments.serving.batching import raise_failed, run_in_groups
from deployments.serving.model_loading import FamilyDeployment
from deployments.serving.torch_threads import run_inference
from deployments.settings import ServiceSettings
from deployments.state.runner import JobContext
from registry import AdapterEntry, Catalog, ModelEntry


class SeededSampler:
    """A logits processor that samples every request's rows with that request's own torch.Generator.

    transformers samples a whole batch from one global RNG, so a row's tokens would depend on its
    batch. This runs first in MusicGen's processor list, i.e. before the classifier-free-guidance
    processor that MusicGen appends: it applies the guidance itself (cond rows first, then the
    unconditional ones), the model's temperature/top-k/top-p warpers, samples, and hands back a
    one-hot score in both halves, which the guidance processor leaves as is and greedy decoding picks.
    """

    def __init__(self, seeds: list[int], rows_per_request: int, generation_config):
        from transformers import (
            ClassifierFreeGuidanceLogitsProcessor,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        self.generators = [torch.Generator().manual_seed(seed) for seed in seeds]
        self.rows = rows_per_request
        config = generation_config
        self.greedy = not config.do_sample  # a checkpoint configured for greedy decoding keeps it
        scale = config.guidance_scale
        self.guidance = ClassifierFreeGuidanceLogitsProcessor(scale) if scale and scale > 1 else None
        self.warpers = []  # the checkpoint's own sampling settings (the released ones: top_k 250)
        if config.temperature not in (None, 1.0):
            self.warpers.append(TemperatureLogitsWarper(config.temperature))
        if config.top_k:
            self.warpers.append(TopKLogitsWarper(config.top_k))
        if config.top_p is not None and config.top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(config.top_p))

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        guided = scores.shape[0] == 2 * input_ids.shape[0]
        logits = self.guidance(input_ids, scores) if guided else scores
        for warper in self.warpers:
            logits = warper(input_ids, logits)
        if self.greedy:
            tokens = logits.argmax(dim=-1, keepdim=True)
        else:
            probs = logits.float().softmax(dim=-1).cpu()
            tokens = torch.cat([
                torch.multinomial(probs[i * self.rows:(i + 1) * self.rows], 1, generator=generator)
                for i, generator in enumerate(self.generators)
            ]).to(scores.device)
        # finite "minus infinity": guidance computes uncond + (cond - uncond) * scale, and inf - inf is NaN
        one_hot = torch.full_like(logits, torch.finfo(scores.dtype).min).scatter_(1, tokens, 0.0)
        return torch.cat([one_hot, one_hot]) if guided else one_hot


@dataclass
class MusicGen:
    """A loaded checkpoint, its processor, and the adapters loaded into it so far."""

    model: Any
    processor: Any
    device: str
    adapters: AdapterSlots = field(default_factory=AdapterSlots)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def sample_rate(self) -> int:
        return self.model.config.audio_encoder.sampling_rate

    @property
    def frame_rate(self) -> int:
        return self.model.config.audio_encoder.frame_rate

    def generate(self, prompts: list[str], durations: list[float], seeds: list[int],
                 adapter: str | None, adapter_path: str | None) -> list[np.ndarray]:
        """(channels, samples) float32 per prompt; the longest duration is generated and the rest trimmed."""
        decoder = self.model.decoder
        delay = decoder.num_codebooks // decoder.config.audio_channels - 1  # the codebook delay pattern
        # frames = seconds * frame rate (50 Hz for the released checkpoints); the delay pattern needs
        # `delay` extra steps before the last codebook has the last frame.
        frames = max(math.ceil(max(durations) * self.frame_rate), delay + 1)
        with self.lock, torch.inference_mode():
            self.adapters.use(self.model, adapter, adapter_path)
            inputs = self.processor(text=prompts, padding=True, truncation=True, return_tensors="pt").to(self.device)
            sampler = SeededSampler(seeds, decoder.num_codebooks, self.model.generation_config)
            audio = self.model.generate(**inputs, do_sample=False, top_k=None, max_new_tokens=frames + delay,
                                        logits_processor=[sampler])
        audio = audio.float().cpu().numpy()
        return [audio[i, :, :round(d * self.sample_rate)] for i, d in enumerate(durations)]


@dataclass
class _Prompt:
    """One request as queued for batching."""

    model: str
    adapter: str | None
    adapter_path: str | None
    prompt: str
    duration: float
    seed: int


def encode(audio: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    """(channels, samples) float audio as a WAV/FLAC/MP3 file's bytes."""
    container, subtype, _ = OUTPUT_FORMATS[fmt]
    buffer = io.BytesIO()
    sf.write(buffer, np.ascontiguousarray(np.clip(audio, -1, 1).T), sample_rate, format=container, subtype=subtype)
    return buffer.getvalue()


# max_ongoing_requests must be at least the batch size, or @serve.batch never fills a batch.
@serve.deployment(max_ongoing_requests=2 * MAX_BATCH_SIZE, health_check_period_s=10)
class MusicDeployment(FamilyDeployment):
    config_class, batched_methods = MusicConfig, ("_generate_batch",)

    def __init__(self, catalog: Catalog, settings: ServiceSettings, model_id: str | None = None):
        super().__init__(catalog, settings, model_id)
        self._manager = get_model_manager(settings)
        self._adapter_paths: dict[str, str] = {}

    async def generate(self, prompt: str, params: MusicParams | dict | None = None, *,
                       model: str | None = None) -> Music:
        """Music for `prompt` with catalog model `model` (default: the adapter's base, else this deployment's
        model, else the task default)."""
        params = MusicParams.model_validate(params or {})
        adapter = protocol.find_adapter(self._catalog, params.adapter) if params.adapter else None
        name = model or (adapter.base_model if adapter else self._model_id or self._catalog.tasks[TASK].default_model)
        entry = self._entry(name, TASK)
        if adapter:
            protocol.check_adapter(self._catalog, entry, adapter)
            require_adapter_support()
        duration = params.duration or protocol.default_duration(entry)
        protocol.check_duration(entry, duration)
        if not prompt.strip():
            raise InvalidRequest("prompt must not be empty")
        seed = new_seed() if params.seed is None else params.seed
        # Model and adapter files are ready before joining a batch: a failed download fails only its
        # own request, and a batch never waits on one.
        musicgen = await self._models.get(entry)
        adapter_path = await self._adapter_path(adapter) if adapter else None
        audio, batch_size = raise_failed(await self._generate_batch(_Prompt(entry.id, adapter and adapter.id,
                                                                            adapter_path, prompt, duration, seed)))
        data = await asyncio.to_thread(encode, audio, musicgen.sample_rate, params.output_format)
        return Music(data, params.output_format, OUTPUT_FORMATS[params.output_format][2], musicgen.sample_rate,
                     round(audio.shape[-1] / musicgen.sample_rate, 6), entry.id, adapter and adapter.id, seed,
                     batch_size)

    async def run_job(self, job_id: str) -> str:
        """A generation job (seed 000's /process/musicgen/{file_id}); the audio becomes its result file."""
        return await self._jobs.run(job_id, self._music_job)

    async def _music_job(self, context: JobContext) -> dict[str, Any]:
        params = MusicJobInput.model_validate(context.job.input)
        prompt = params.prompt
        if prompt is None:
            upload = await asyncio.to_thread(self._store.get_upload, params.file_id)
            if upload is None:
                raise InvalidRequest(f"Upload '{params.file_id}' no longer exists")
            prompt = (await asyncio.to_thread(self._store.read_upload, upload)).decode("utf-8")
        context.report(0.0, "generating")
        music = await self.generate(prompt.strip(), params.model_dump(include=set(MusicParams.model_fields)),
                                    model=context.job.model)
        name = f"music.{music.format}"
        await asyncio.to_thread((context.output_dir / name).write_bytes, music.audio)
        context.report(1.0, "written")
        return {"file": name, "format": music.format, "sample_rate": music.sample_rate,
                "duration": music.duration, "model": music.model, "adapter": music.adapter, "seed": music.seed,
                "batch_size": music.batch_size, "prompt": prompt.strip()}

    async def _adapter_path(self, adapter: AdapterEntry) -> str:
        """The adapter's snapshot folder, downloaded once through the model manager."""
        if adapter.id not in self._adapter_paths:
            paths = await self._manager.ensure.remote(adapter.id, [adapter.hub])
            self._adapter_paths[adapter.id] = paths[adapter.hub.role]
        return self._adapter_paths[adapter.id]

    @serve.batch(max_batch_size=MAX_BATCH_SIZE, batch_wait_timeout_s=0.05)
    async def _generate_batch(self, prompts: list[_Prompt]) -> list[tuple[np.ndarray, int] | Exception]:
        """One generate call per (model, adapter) group; a group's failure is returned to its own requests."""
        async def generate(group: list[_Prompt]) -> list[tuple[np.ndarray, int]]:
            audios = await self._generate_group(group[0].model, group[0].adapter, group)
            return [(audio, len(group)) for audio in audios]

        return await run_in_groups(prompts, lambda p: (p.model, p.adapter), generate, "music generation")

    async def _generate_group(self, model_id: str, adapter: str | None, group: list[_Prompt]) -> list[np.ndarray]:
        """One generate call on a model whose adapters are in a known state: a copy tainted by a failed
        adapter switch is reloaded first, and plain prompts that meet a failed switch-off run on a fresh copy."""
        def generate(musicgen: MusicGen):
            return run_inference(musicgen.generate, [p.prompt for p in group], [p.duration for p in group],
                                 [p.seed for p in group], adapter, group[0].adapter_path)

        try:
            return await generate(await self._untainted(model_id))
        except AdapterSwitchFailed:
            if adapter is not None:
                raise
            return await generate(await self._untainted(model_id))  # a fresh copy has no adapter to switch off

    async def _untainted(self, model_id: str) -> MusicGen:
        musicgen = await self._models.get(self._catalog.models[model_id])
        if musicgen.adapters.tainted:
            self._models.unload(model_id)
            musicgen = await self._models.get(self._catalog.models[model_id])
        return musicgen

    def _load(self, entry: ModelEntry, paths: dict[str, str]) -> MusicGen:
        from transformers import AutoProcessor, MusicgenForConditionalGeneration

        model = MusicgenForConditionalGeneration.from_pretrained(paths["weights"]).to(self._device).eval()
        return MusicGen(model, AutoProcessor.from_pretrained(paths["weights"]), self._device)
