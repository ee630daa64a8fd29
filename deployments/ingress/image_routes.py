"""Image generation routes: seed 003's POST /api/image and POST /api/edit-image, and OpenAI's
POST /v1/images/generations and /v1/images/edits (the official client works unchanged).

Every limit (size multiple and maximum, steps, guidance, images per request) is checked here against
the catalog before the request reaches the model's deployment; uploads are type- and size-checked and
decoded (Pillow, no torch) so a bad image or a mask of another size is a 4xx now.
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile

from deployments.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from deployments.families.image_generation.protocol import (
    INPAINT,
    MAX_PROMPT_CHARS,
    MAX_SEED,
    TEXT_TO_IMAGE,
    GeneratedImages,
    ImageParams,
    check_same_size,
    resolve_image,
)
from deployments.ingress.auth import current_owner
from deployments.ingress.http_errors import ERROR_RESPONSES
from deployments.ingress.replies import Absent, json_reply
from deployments.ingress.request_checks import NONBLANK, check_upload_kind, multipart_body, parse
from deployments.ingress.services import Services, get_services
from deployments.media.images import open_image
from deployments.state.safe_paths import display_filename, extension
from registry import ModelEntry

router = APIRouter(tags=["images"], responses=ERROR_RESPONSES)


class ImageRequest(ImageParams):
    model: str | None = Field(None, description="Catalog id, alias or hub id; default sd-turbo.")


class GeneratedImagesReply(BaseModel):
    """Seed 003's image reply, plus every image and its seed."""

    success: bool
    image: str = Field(description="The first image: base64 PNG.")
    images: list[str] = Field(description="Every image (num_images), base64 PNG.")
    model: str
    generation_time: float = Field(description="Seconds the pipeline call took.")
    size: int = Field(description="Bytes of the first PNG.")
    format: Literal["png"]
    width: int
    height: int
    seed: int = Field(description="The first image's seed; image i used seed + i.")
    seeds: list[int]
    batch_size: int = Field(description="Requests that shared the pipeline call.")


IMAGES = json_reply(GeneratedImagesReply, "The images.")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _seed_reply(result: GeneratedImages) -> dict[str, Any]:
    """Seed 003's response (image, model, generation_time, size = PNG bytes) plus every image and seed."""
    return {"success": True, "image": _b64(result.images[0]), "images": [_b64(i) for i in result.images],
            "model": result.model, "generation_time": result.generation_time, "size": len(result.images[0]),
            "format": "png", "width": result.width, "height": result.height, "seed": result.seeds[0],
            "seeds": result.seeds, "batch_size": result.batch_size}


@router.post("/api/image", response_model=Any, responses=IMAGES,
             description="Images from a prompt, as base64 PNG. Requests for one model with the same size, steps and "
             "guidance share a pipeline call; a seed gives the same image either way.")
async def generate_image(body: ImageRequest, services: Services = Depends(get_services)) -> dict[str, Any]:
    entry = services.model_for(TEXT_TO_IMAGE, body.model)
    job = resolve_image(entry, body, body.num_images)
    return _seed_reply(await services.call(entry, "generate", job.model_dump(), model=entry.id))


async def read_image_upload(services: Services, entry: ModelEntry, file: Any, field: str) -> bytes:
    """An uploaded image's bytes, checked against the family's file types and the image size limit."""
    if not isinstance(file, UploadFile):
        raise InvalidRequest(f"`{field}` must be a file upload (multipart/form-data)")
    name = display_filename(file.filename, default=field)
    kind = extension(name)
    content_type = file.content_type or ""
    if not kind and content_type.startswith("image/"):
        kind = content_type.split("/", 1)[1]
    check_upload_kind(services, entry.family, kind, name)
    limit = min(services.settings.image_max_bytes, services.settings.max_upload_bytes)
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"Image '{name}' exceeds the limit of {limit} bytes")
    return data


async def read_form(request: Request, files: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(text fields, file fields) of a multipart body; a 415 for any other body."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "multipart/form-data":
        raise UnsupportedMediaType(f"Send a multipart/form-data body with {', '.join(files)}; "
                                   f"got content type '{kind or 'none'}'")
    form = await request.form()
    found = {name.removesuffix("[]"): value for name, value in form.multi_items() if name.removesuffix("[]") in files}
    fields = {key: value for key, value in form.items() if key.removesuffix("[]") not in files and value != ""}
    return fields, found


def fitted_size(entry: ModelEntry, width: int, height: int) -> tuple[int, int]:
    """An upload's size scaled to fit the model's max_image_size, rounded down to its size multiple."""
    multiple = entry.specs.image_size_multiple or 8
    scale = min(1.0, (entry.specs.max_image_size or max(width, height)) / max(width, height))
    return (max(multiple, int(width * scale) // multiple * multiple),
            max(multiple, int(height * scale) // multiple * multiple))


class EditFields(ImageParams):
    model: str | None = Field(None, description="Default stable-diffusion-inpainting.")
    strength: float = Field(1.0, gt=0, le=1, description="How far the masked region moves from the original.")


EDIT_DOC = multipart_body(EditFields, {"image": "The image to repaint.", "mask": "White: repaint; black: keep."},
                          required=("image", "mask", "prompt"))


@router.post("/api/edit-image", openapi_extra=EDIT_DOC, response_model=Any, responses=IMAGES,
             description="Inpainting: the mask's white region is repainted after the prompt. Image and mask must "
             "be the same size; the result keeps that size (fitted to the model's size rules) unless width/height "
             "are given.")
async def edit_image(request: Request, services: Services = Depends(get_services)) -> dict[str, Any]:
    fields, files = await read_form(request, ("image", "mask"))
    params = parse(EditFields, fields)
    entry = services.model_for(INPAINT, params.model)
    for name in ("image", "mask"):
        if name not in files:
            raise InvalidRequest(f"No `{name}`: upload it as a multipart file")
    image = await read_image_upload(services, entry, files["image"], "image")
    mask = await read_image_upload(services, entry, files["mask"], "mask")
    (_, info), (_, mask_info) = await asyncio.gather(asyncio.to_thread(open_image, image, "image"),
                                                     asyncio.to_thread(open_image, mask, "mask"))
    check_same_size((info.width, info.height), (mask_info.width, mask_info.height))
    width, height = fitted_size(entry, info.width, info.height)
    params = params.model_copy(update={"width": params.width or width, "height": params.height or height})
    job = resolve_image(entry, params, params.num_images).model_copy(update={"strength": params.strength})
    return _seed_reply(await services.call(entry, "inpaint", job.model_dump(), image, mask, model=entry.id))


# --- OpenAI's image API ---

OPENAI_RESPONSE_SIZES = ("1024x1024", "1024x1536", "1536x1024")  # ImagesResponse.size: an enum of these only
SIZE_PATTERN = r"^(auto|[1-9][0-9]*[xX][1-9][0-9]*)?$"  # what parse_size reads (no side may be 0)


class OpenAIImageRequest(BaseModel):
    """POST /v1/images/generations; fields this service has no use for (quality, style, user...) are ignored."""

    model_config = ConfigDict(extra="ignore")

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS, json_schema_extra={"pattern": NONBLANK})
    model: str | None = None
    n: int = Field(1, ge=1, description="Images to generate; at most the model's max_images.")
    size: str | None = Field(None, json_schema_extra={"pattern": SIZE_PATTERN},
                             description="'WIDTHxHEIGHT' or 'auto' (the model's default).")
    response_format: Literal["b64_json", "url"] = Field("b64_json", description="url: a file of a completed "
                                                         "job, /jobs/{id}/files/image-N.png.")
    negative_prompt: str | None = Field(None, max_length=MAX_PROMPT_CHARS)
    num_inference_steps: int | None = Field(None, gt=0)
    guidance_scale: float | None = Field(None, ge=0)
    seed: int | None = Field(None, ge=0, le=MAX_SEED)


class OpenAIImage(BaseModel):
    b64_json: str | Absent = Field(None, description="response_format b64_json: base64 PNG.")
    url: str | Absent = Field(None, description="response_format url: the image as a completed job's file.")


class OpenAIImages(BaseModel):
    """OpenAI's ImagesResponse: nothing null; `size` only when it is one of the three its schema allows."""

    created: int
    data: list[OpenAIImage]
    output_format: Literal["png"]
    size: Literal["1024x1024", "1024x1536", "1536x1024"] | Absent = None


OPENAI_IMAGES = json_reply(OpenAIImages, "The images, in OpenAI's shape.")


def parse_size(size: str | None) -> tuple[int | None, int | None]:
    if size in (None, "", "auto"):
        return None, None
    width, sep, height = size.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        raise InvalidRequest(f"size must be 'WIDTHxHEIGHT' (e.g. '512x512') or 'auto'; got '{size}'")
    return int(width), int(height)


def _params(body: OpenAIImageRequest, width: int | None, height: int | None) -> ImageParams:
    return parse(ImageParams, {"prompt": body.prompt, "negative_prompt": body.negative_prompt, "width": width,
                               "height": height, "num_inference_steps": body.num_inference_steps,
                               "guidance_scale": body.guidance_scale, "seed": body.seed, "num_images": body.n})


async def _openai_reply(request: Request, services: Services, entry: ModelEntry, body: OpenAIImageRequest,
                        result: GeneratedImages) -> dict[str, Any]:
    """OpenAI's ImagesResponse. Its schema allows no null, so nothing is sent as one (no revised_prompt: the
    prompt is used as given), and its `size` is an enum of three sizes: any other size is left out (the
    images themselves say it)."""
    if body.response_format == "b64_json":
        data = [{"b64_json": _b64(image)} for image in result.images]
    else:
        job_id = await asyncio.to_thread(_store_images, services, entry, body.prompt, result)
        base = str(request.base_url).rstrip("/")
        data = [{"url": f"{base}/jobs/{job_id}/files/image-{i}.png"} for i in range(len(result.images))]
    reply: dict[str, Any] = {"created": int(time.time()), "data": data, "output_format": "png"}
    size = f"{result.width}x{result.height}"
    if size in OPENAI_RESPONSE_SIZES:
        reply["size"] = size
    return reply


def _store_images(services: Services, entry: ModelEntry, prompt: str, result: GeneratedImages) -> str:
    """The images as the files of a completed job, so `url` results are served by GET /jobs/{id}/files."""
    store = services.store
    job = store.create_job(services.catalog.task_of(entry), entry.id, {"prompt": prompt}, current_owner())
    claimed = store.claim(job.id) or job
    with store.job_staging(claimed) as folder:
        for i, image in enumerate(result.images):
            (folder / f"image-{i}.png").write_bytes(image)
        store.complete(claimed, folder, {"model": result.model, "seeds": result.seeds,
                                         "width": result.width, "height": result.height})
    return job.id


@router.post("/v1/images/generations", tags=["openai"], response_model=Any, responses=OPENAI_IMAGES)
async def openai_generations(body: OpenAIImageRequest, request: Request,
                             services: Services = Depends(get_services)) -> dict[str, Any]:
    entry = services.model_for(TEXT_TO_IMAGE, body.model)
    job = resolve_image(entry, _params(body, *parse_size(body.size)), body.n)
    result = await services.call(entry, "generate", job.model_dump(), model=entry.id)
    return await _openai_reply(request, services, entry, body, result)


def alpha_mask(image: bytes, mask: bytes | None) -> bytes:
    """OpenAI's mask rule as a white-repaints PNG: transparent pixels (of the mask, else of the image) are
    edited. A mask without transparency is read as white-repaints, as /api/edit-image reads it."""
    import io

    from PIL import Image

    source = Image.open(io.BytesIO(mask if mask is not None else image))
    if "A" not in source.getbands() and source.info.get("transparency") is None:
        if mask is None:
            raise InvalidRequest("No mask: give `mask`, or an image whose transparent pixels mark what to edit")
        return mask
    edit = source.convert("RGBA").getchannel("A").point(lambda a: 255 if a == 0 else 0)
    out = io.BytesIO()
    edit.save(out, format="PNG")
    return out.getvalue()


OPENAI_EDIT_DOC = multipart_body(OpenAIImageRequest, {
    "image": "The image to edit; without `mask`, its transparent pixels are what is edited.",
    "mask": "Transparent pixels: edit; opaque: keep. The image's size."}, required=("image", "prompt"))


@router.post("/v1/images/edits", tags=["openai"], openapi_extra=OPENAI_EDIT_DOC, response_model=Any,
             responses=OPENAI_IMAGES)
async def openai_edits(request: Request, services: Services = Depends(get_services)) -> dict[str, Any]:
    fields, files = await read_form(request, ("image", "mask"))
    body = parse(OpenAIImageRequest, fields)
    entry = services.model_for(INPAINT, body.model)
    if "image" not in files:
        raise InvalidRequest("No `image`: upload it as a multipart file")
    image = await read_image_upload(services, entry, files["image"], "image")
    mask = await read_image_upload(services, entry, files["mask"], "mask") if "mask" in files else None
    _, info = await asyncio.to_thread(open_image, image, "image")
    if mask is not None:
        _, mask_info = await asyncio.to_thread(open_image, mask, "mask")
        check_same_size((info.width, info.height), (mask_info.width, mask_info.height))
    mask = await asyncio.to_thread(alpha_mask, image, mask)
    width, height = parse_size(body.size)
    if width is None:
        width, height = fitted_size(entry, info.width, info.height)
    job = resolve_image(entry, _params(body, width, height), body.n)
    result = await services.call(entry, "inpaint", job.model_dump(), image, mask, model=entry.id)
    return await _openai_reply(request, services, entry, body, result)
