"""Source separation with Demucs: one deployment serving every Demucs variant in the catalog.

Weights come through the model manager and load with Demucs' own code; a track's segments run
through the model in batches (`separate`), and stems are written into the job's staged folder.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from ray import serve

from deployments.errors import InvalidRequest
from deployments.families.separation.batched import separate
from deployments.families.separation.protocol import SeparationInput
from deployments.families.separation.weights import load_separator
from deployments.media.audio import read_audio, write_audio
from deployments.serving.model_loading import FamilyDeployment
from deployments.state.runner import JobContext
from registry import ModelEntry

AUTOCAST_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class SeparationConfig(BaseModel):
    """`user_config` of the deployment in serve_config.yaml; changed live through `reconfigure`."""

    model_config = ConfigDict(extra="forbid")

    segment_batch_size: int = Field(8, gt=0, description="Segments per forward pass.")
    autocast: Literal["none", "bf16", "fp16"] = Field("none", description="Reduced precision on GPU only.")
    concurrent_tracks: int = Field(1, gt=0, description="Tracks separated at once per replica.")


@serve.deployment(max_ongoing_requests=16, health_check_period_s=10, ray_actor_options={"num_cpus": 1})
class SeparationDeployment(FamilyDeployment):
    config_class = SeparationConfig

    def reconfigure(self, config: dict[str, Any]) -> None:
        super().reconfigure(config)
        self._tracks = asyncio.Semaphore(self._config.concurrent_tracks)

    def _load(self, entry: ModelEntry, paths: dict[str, str]):
        return load_separator(Path(paths["weights"]), entry.variant).to(self._device)

    async def run_job(self, job_id: str) -> str:
        """Run a queued separation job; returns the status it ended in."""
        return await self._jobs.run(job_id, self._separate_job)

    async def _separate_job(self, context: JobContext) -> dict[str, Any]:
        entry = self._catalog.resolve(context.job.model)
        params = SeparationInput.model_validate(context.job.input)
        upload = await asyncio.to_thread(self._store.get_upload, params.file_id)
        if upload is None:
            raise InvalidRequest(f"Upload '{params.file_id}' no longer exists")
        context.report(0.0, "loading model")
        model = await self._models.get(entry)
        async with self._tracks:
            context.report(0.0, "separating")
            path = await asyncio.to_thread(self._store.upload_path, upload)  # fetched first when in S3
            return await asyncio.to_thread(self._separate_file, model, params, path, context)

    def _separate_file(self, model, params: SeparationInput, path: Path, context: JobContext) -> dict[str, Any]:
        from demucs.audio import convert_audio, prevent_clip

        audio, rate = read_audio(path)
        wav = convert_audio(torch.from_numpy(audio), rate, model.samplerate, model.audio_channels)
        reference = wav.mean(0)  # normalize as demucs.separate does, and undo it afterwards
        mean, std = reference.mean(), reference.std().clamp_min(1e-8)
        try:
            sources = separate(
                model, ((wav - mean) / std)[None], shifts=params.shifts, overlap=params.overlap,
                segment=params.segment, batch_size=self._config.segment_batch_size, device=self._device,
                autocast_dtype=AUTOCAST_DTYPES[self._config.autocast] if self._device == "cuda" else None,
                progress=lambda done, total: context.report(0.95 * done / total, f"separated {done}/{total} segments"),
            )[0] * std + mean
        except ValueError as error:  # parameters the model itself rules out, e.g. a long segment
            raise InvalidRequest(str(error)) from None
        stems = dict(zip(model.sources, sources))
        if params.two_stems:
            kept = stems.pop(params.two_stems)
            stems = {params.two_stems: kept, f"no_{params.two_stems}": sum(stems.values())}
        for name, stem in stems.items():
            write_audio(context.output_dir / f"{name}.{params.output_format}",
                        prevent_clip(stem, mode="rescale").numpy(), model.samplerate, params.output_format)
        context.report(1.0, "written")
        return {"stems": list(stems), "sample_rate": model.samplerate, "channels": model.audio_channels,
                "duration": round(wav.shape[-1] / model.samplerate, 3), "format": params.output_format}
