"""Image generation requests (video builds on them), their limits and results: what the ingress checks against the
catalog before any work reaches a diffusion deployment. Plain pydantic and Pillow, no torch, so the
ingress stays light. Every limit comes from the model's catalog `specs` (and so from its env override)."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator

from deployments.errors import InvalidRequest
from deployments.families.protocol import (
    MAX_PROMPT_CHARS,
    MAX_SEED,
    NONBLANK,
    format_seconds,
    new_seed,
    nonblank_prompt,
)
from registry import ModelEntry

TEXT_TO_IMAGE, INPAINT = "text-to-image", "image-inpainting"
MAX_BATCH_SIZE = 16  # upper bound of user_config's max_batch_size; max_ongoing_requests is twice this


class GenerationParams(BaseModel):
    """What an image or video request may set besides the model; absent values are the model's defaults."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS, json_schema_extra={"pattern": NONBLANK},
                        description="What to draw.")
    negative_prompt: str | None = Field(None, max_length=MAX_PROMPT_CHARS, description="What to keep out.")
    height: int | None = Field(None, gt=0, description="Pixels; a multiple of the model's image_size_multiple, "
                               "at most its max_image_size; default its default_image_size.")
    width: int | None = Field(None, gt=0, description="As height.")
    num_inference_steps: int | None = Field(None, gt=0, description="Denoising steps; at most the model's "
                                            "max_inference_steps.")
    guidance_scale: float | None = Field(None, ge=0, description="Classifier-free guidance; at most the "
                                         "model's max_guidance_scale (0 or 1: none).")
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="Same seed, prompt and settings: same "
                             "pixels, batched or alone. Image i of a request uses seed + i.")

    @field_validator("prompt")
    @classmethod
    def _check_prompt(cls, value: str) -> str:
        nonblank_prompt(value)
        return value.strip()


class ImageParams(GenerationParams):
    num_images: int = Field(1, ge=1, description="Images to generate; at most the model's max_images.")




class ImageJob(BaseModel):
    """An image request with every default filled in and every limit checked: what the deployment runs."""

    model_config = ConfigDict(extra="forbid")

    prompt: str
    negative_prompt: str | None
    height: int
    width: int
    num_inference_steps: int
    guidance_scale: float
    seed: int
    num_images: int = 1
    strength: float = 1.0  # inpainting: 1 repaints the masked region from noise




@dataclass
class GeneratedImages:
    """PNG files of one request and how they were made; `batch_size` = images in the pipeline call."""

    images: list[bytes]
    seeds: list[int]
    width: int
    height: int
    model: str
    generation_time: float
    batch_size: int


def _check_side(entry: ModelEntry, name: str, value: int) -> None:
    specs = entry.specs
    if specs.max_image_size is not None and value > specs.max_image_size:
        raise InvalidRequest(f"{name.capitalize()} {value} px exceeds model limit of {specs.max_image_size} px")
    multiple = specs.image_size_multiple or 8
    if value % multiple:
        lower = max(multiple, value // multiple * multiple)
        raise InvalidRequest(f"{name.capitalize()} {value} px is not a multiple of {multiple}, which model "
                             f"'{entry.id}' requires; try {lower} or {lower + multiple}")


def _limit(entry: ModelEntry, name: str, value: float, limit: float | None) -> None:
    if limit is not None and value > limit:
        raise InvalidRequest(f"{name} {format_seconds(value)} exceeds model limit of {format_seconds(limit)}")


def resolve_image(entry: ModelEntry, params: GenerationParams, num_images: int = 1) -> ImageJob:
    """The request with the model's defaults, checked against its limits (a 400 naming the limit)."""
    specs = entry.specs
    size = specs.default_image_size or 512
    height, width = params.height or size, params.width or size
    _check_side(entry, "height", height)
    _check_side(entry, "width", width)
    steps = params.num_inference_steps or specs.default_inference_steps or 25
    _limit(entry, "num_inference_steps", steps, specs.max_inference_steps)
    guidance = params.guidance_scale if params.guidance_scale is not None else specs.default_guidance_scale
    guidance = 7.5 if guidance is None else guidance
    _limit(entry, "guidance_scale", guidance, specs.max_guidance_scale)
    _limit(entry, "num_images", num_images, specs.max_images or 1)
    seed = params.seed if params.seed is not None else new_seed()
    return ImageJob(prompt=params.prompt, negative_prompt=params.negative_prompt or None, height=height,
                    width=width, num_inference_steps=steps, guidance_scale=guidance, seed=seed, num_images=num_images)




def check_same_size(image_size: tuple[int, int], mask_size: tuple[int, int]) -> None:
    if image_size != mask_size:
        raise InvalidRequest(f"The mask is {mask_size[0]}x{mask_size[1]} px but the image is "
                             f"{image_size[0]}x{image_size[1]} px; they must be the same size")
