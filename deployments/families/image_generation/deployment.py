"""Image generation: text-to-image (SD-Turbo, SD3) and inpainting, on diffusers pipelines.

One deployment per model, as every family. Requests that arrive together with the same size, steps,
guidance and strength share one pipeline call (`@serve.batch`) of the model's engine (engines.py, one per
catalog family). Pipelines come from diffusers' Auto classes, so any text-to-image or inpainting repo in
diffusers layout is a catalog entry away.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time

from PIL import Image
from ray import serve

from deployments.families.image_generation.engines import ENGINES, Canvas, Painter
from deployments.families.image_generation.protocol import (
    INPAINT,
    MAX_BATCH_SIZE,
    TEXT_TO_IMAGE,
    GeneratedImages,
    ImageJob,
    check_same_size,
)
from deployments.media.images import open_image
from deployments.serving.batching import BatchConfig, raise_failed, run_in_groups
from deployments.serving.model_loading import FamilyDeployment
from deployments.serving.torch_threads import run_inference
from registry import ModelEntry

logger = logging.getLogger(__name__)


class ImageGenerationConfig(BatchConfig):
    """`user_config` of the deployment: requests per pipeline call."""

    default_batch, default_wait_s, largest_batch = 4, 0.05, MAX_BATCH_SIZE


def png_bytes(image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


# max_ongoing_requests must be at least the batch size, or @serve.batch never fills a batch.
@serve.deployment(max_ongoing_requests=2 * MAX_BATCH_SIZE, health_check_period_s=5)
class ImageGenerationDeployment(FamilyDeployment):
    config_class, batched_methods = ImageGenerationConfig, ("_generate_batch",)

    async def generate(self, job: dict | ImageJob, *, model: str | None = None) -> GeneratedImages:
        """`num_images` PNGs for the prompt; limits were checked by the ingress (resolve_image)."""
        entry = self._entry(model, TEXT_TO_IMAGE)
        return await self._run(entry, Canvas(entry.id, ImageJob.model_validate(job)))

    async def inpaint(self, job: dict | ImageJob, image: bytes, mask: bytes, *,
                      model: str | None = None) -> GeneratedImages:
        """The image with the mask's white region repainted after the prompt, at the job's size; the
        rest keeps the original's pixels."""
        entry = self._entry(model, INPAINT)
        job = ImageJob.model_validate(job)
        picture, info = await asyncio.to_thread(open_image, image, "image")
        mask_image, mask_info = await asyncio.to_thread(open_image, mask, "mask")
        check_same_size((info.width, info.height), (mask_info.width, mask_info.height))
        size = (job.width, job.height)
        picture, mask_image = picture.resize(size), mask_image.convert("L").resize(size)
        return await self._run(entry, Canvas(entry.id, job, picture, mask_image))

    async def _run(self, entry: ModelEntry, item: Canvas) -> GeneratedImages:
        started = time.perf_counter()
        await self._models.get(entry)  # loaded before joining a batch: a failed load fails only its own
        pictures, batch_size = raise_failed(await self._generate_batch(item))
        job = item.job
        if item.mask is not None:  # pixels outside the mask stay the original's, not the VAE's round trip
            pictures = [Image.composite(p.resize(item.image.size), item.image, item.mask) for p in pictures]
        images = await asyncio.to_thread(lambda: [png_bytes(p) for p in pictures])
        return GeneratedImages(images=images, seeds=[job.seed + i for i in range(job.num_images)],
                               width=job.width, height=job.height, model=entry.id,
                               generation_time=round(time.perf_counter() - started, 3), batch_size=batch_size)

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.05)
    async def _generate_batch(self, items: list[Canvas]) -> list[tuple[list, int] | Exception]:
        """(PIL images, images in the call) per item; one pipeline call per group of equal settings."""
        async def generate(group: list[Canvas]) -> list[tuple[list, int]]:
            engine: Painter = await self._models.get(self._catalog.models[group[0].model])
            pictures = await run_inference(engine.paint, group)
            start, outcomes = 0, []  # (the request's images, the batch size) per request
            for item in group:
                outcomes.append((pictures[start:start + item.job.num_images], len(pictures)))
                start += item.job.num_images
            return outcomes

        return await run_in_groups(items, Canvas.batch_key, generate, "image generation")

    def _load(self, entry: ModelEntry, paths: dict[str, str]) -> Painter:
        return ENGINES[entry.family](entry, paths, self._device)
