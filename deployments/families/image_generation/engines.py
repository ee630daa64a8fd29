"""The image-generation engines, one per catalog family, behind one contract (Painter): the deployment
picks the engine by the model's catalog family (ENGINES); every engine loads a diffusers-layout folder
through diffusers' Auto class for its task and paints a group of requests of equal settings in one
pipeline call, one seeded generator per image, so a seed gives the same pixels batched or alone."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Protocol

from deployments.families.image_generation.protocol import ImageJob
from registry import ModelEntry


@dataclass
class Canvas:
    """One request as the engine sees it: the checked job and, to inpaint, the RGB image and its L mask."""

    model: str
    job: ImageJob
    image: Any = None
    mask: Any = None

    def batch_key(self) -> Hashable:
        """Requests with equal keys share one pipeline call."""
        j = self.job
        return (self.model, j.height, j.width, j.num_inference_steps, j.guidance_scale, j.strength,
                self.image is not None)


class Painter(Protocol):
    """What the image-generation deployment asks of an engine."""

    def __init__(self, entry: ModelEntry, paths: dict[str, str], device: str) -> None: ...

    def paint(self, group: list[Canvas]) -> list:
        """PIL images for a group of equal batch keys: each canvas' num_images, in order."""

    def torch_modules(self) -> list:
        """The modules a replica reports (memory, dtypes) and optimizes."""


def pipeline_dtype(device: str):
    import torch

    return torch.float16 if device == "cuda" else torch.float32


def load_pipeline(path: str, device: str, auto_class: str):
    """The pipeline of a diffusers-layout folder through diffusers' Auto (or named) class."""
    import diffusers

    pipeline = getattr(diffusers, auto_class).from_pretrained(path, torch_dtype=pipeline_dtype(device))
    pipeline.set_progress_bar_config(disable=True)
    return pipeline.to(device)


def pipeline_modules(pipeline) -> list:
    import torch

    return [c for c in pipeline.components.values() if isinstance(c, torch.nn.Module)]


class TextToImage:
    """Stable Diffusion, SD-Turbo, SD3 and any text-to-image repo diffusers' AutoPipeline knows."""

    auto_class = "AutoPipelineForText2Image"

    def __init__(self, entry: ModelEntry, paths: dict[str, str], device: str):
        self.device = device
        self.pipeline = load_pipeline(paths["weights"], device, self.auto_class)

    def torch_modules(self) -> list:
        return pipeline_modules(self.pipeline)

    def paint(self, group: list[Canvas]) -> list:
        import torch

        first = group[0].job
        prompts, negatives, generators = [], [], []
        for canvas in group:
            for i in range(canvas.job.num_images):
                prompts.append(canvas.job.prompt)
                negatives.append(canvas.job.negative_prompt or "")
                generators.append(torch.Generator(self.device).manual_seed(canvas.job.seed + i))
        options: dict[str, Any] = {"prompt": prompts, "negative_prompt": negatives, "height": first.height,
                                   "width": first.width, "num_inference_steps": first.num_inference_steps,
                                   "guidance_scale": first.guidance_scale, "generator": generators}
        with torch.inference_mode():
            return self.pipeline(**options | self._images(group)).images

    def _images(self, group: list[Canvas]) -> dict[str, Any]:
        return {}


class Inpainting(TextToImage):
    """Inpainting pipelines: each canvas' image and mask go in once per image it asks for."""

    auto_class = "AutoPipelineForInpainting"

    def _images(self, group: list[Canvas]) -> dict[str, Any]:
        images = [c.image for c in group for _ in range(c.job.num_images)]
        masks = [c.mask for c in group for _ in range(c.job.num_images)]
        return {"image": images, "mask_image": masks, "strength": group[0].job.strength}


ENGINES: dict[str, type[Painter]] = {"stable-diffusion": TextToImage, "sd-inpainting": Inpainting}
