"""Vision routes: POST /api/image/classify, POST /api/image/describe, and the job input of
/api/v1/run and /process/{model}/{file_id} (seed 004's image-description service).

An image comes as a multipart `file` upload or as an `image_url` (a JSON or form field). URLs are
fetched here, in a thread, through deployments.media.safe_urls: http/https only, no private address
unless allow-listed, a size cap and a time limit. Decoding and the model run in the vision deployment.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile

from deployments.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from deployments.families.vision.protocol import (
    CLASSIFY,
    DESCRIBE,
    MAX_NEW_TOKENS,
    Classification,
    ClassifyInput,
    DescribeInput,
    Description,
)
from deployments.ingress.http_errors import ERROR_RESPONSES
from deployments.ingress.replies import json_reply
from deployments.ingress.request_checks import (
    JobInput,
    check_file_type,
    check_upload_kind,
    given,
    multipart_body,
    parse,
)
from deployments.ingress.services import Services, get_services
from deployments.media.images import check_image_header, open_image
from deployments.media.safe_urls import URL_PATTERN, fetch_bytes
from deployments.state.safe_paths import display_filename, extension, stored_name
from registry import ModelEntry

router = APIRouter(tags=["vision"], responses=ERROR_RESPONSES)

BATCH_HEADER = "X-Batch-Size"  # images that shared the model call with this request's


class ImageRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image_url: str | None = Field(None, description="http(s) URL of the image; or upload it as multipart `file`.")
    model: str | None = Field(None, description="Catalog id, alias or hub repo id; default the task's default model.")


class ClassifyRequest(ImageRequest):
    top_k: int = Field(5, ge=1, description="Labels to return, best first; at most the model's number of labels.")


class DescribeRequest(ImageRequest):
    prompt: str | None = Field(None, max_length=2000, description="Instruction (Qwen2-VL) or the caption's first "
                               "words (BLIP); default 'Describe this image.' / an unconditional caption.")
    max_tokens: int | None = Field(None, ge=1, le=MAX_NEW_TOKENS, description="Most tokens to generate.")


class ClassifyReply(Classification):
    success: bool
    processing_time: float = Field(description="Seconds.")


class DescribeReply(Description):
    success: bool
    processing_time: float = Field(description="Seconds.")


BATCHED = {BATCH_HEADER: "Images that shared the model call with this request's."}


def _body_doc(schema: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI for a body that is JSON with `image_url`, or a multipart form with the same fields (none null)
    and the image from exactly one of `file` and `image_url` (_check_source), the URL as check_url takes it."""
    fields = schema.model_json_schema()
    url = {"type": "string", "pattern": URL_PATTERN, "description": ImageRequest.model_fields["image_url"].description}
    json_body = {**fields, "properties": {**fields["properties"], "image_url": url}, "required": ["image_url"]}
    doc = multipart_body(schema, {"file": "The image."}, required=())
    content = doc["requestBody"]["content"]
    form = content["multipart/form-data"]["schema"]
    form["properties"]["image_url"] = url
    form["oneOf"] = [{"required": ["file"]}, {"required": ["image_url"]}]
    doc["requestBody"]["content"] = {"application/json": {"schema": json_body}, **content}
    return doc


async def _read(request: Request, schema: type[BaseModel]) -> tuple[Any, UploadFile | None]:
    """The request's fields, validated, and its uploaded `file` (None for JSON bodies)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in ("multipart/form-data", "application/x-www-form-urlencoded"):
        form = await request.form()
        file = form.get("file")
        if file is not None and not isinstance(file, UploadFile):
            raise InvalidRequest("`file` must be a file upload (multipart/form-data), not a text field")
        fields = {key: value for key, value in form.items() if key != "file" and value != ""}
        return parse(schema, fields), file
    if kind == "application/json":
        try:
            data = await request.json()
        except ValueError:
            raise InvalidRequest("The body is not valid JSON") from None
        return parse(schema, data), None
    raise UnsupportedMediaType(f"Send the image as multipart/form-data (`file`) or JSON with `image_url`; "
                               f"got content type '{kind or 'none'}'")


def _check_source(has_file: bool, image_url: str | None, file_field: str = "file") -> None:
    if has_file and image_url:
        raise InvalidRequest(f"Send either `{file_field}` or `image_url`, not both")
    if not has_file and not image_url:
        how = "upload one as multipart `file`" if file_field == "file" else "give the `file_id` of an upload"
        raise InvalidRequest(f"No image: {how}, or give its `image_url`")


async def fetch_image(services: Services, url: str) -> bytes:
    """The bytes at `url`, fetched with the SSRF checks and the image size limit."""
    return await fetch_bytes(url, services.settings, services.settings.image_max_bytes)


async def _image(services: Services, entry: ModelEntry, image_url: str | None,
                 file: UploadFile | None) -> tuple[bytes, str]:
    """(bytes, name for messages) of the request's image: the upload, type- and size-checked, or the URL's."""
    _check_source(file is not None, image_url)
    if image_url:
        data = await fetch_image(services, image_url)
        await asyncio.to_thread(check_image_header, data, image_url)  # a bomb stops here, not in the replica
        return data, image_url
    name = display_filename(file.filename)
    kind = extension(name)
    if not kind and (file.content_type or "").startswith("image/"):
        kind = file.content_type.split("/", 1)[1]
    check_upload_kind(services, entry.family, kind, name)
    limit = min(services.settings.image_max_bytes, services.settings.max_upload_bytes)
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"Image '{name}' exceeds the limit of {limit} bytes")
    await asyncio.to_thread(check_image_header, data, name)
    return data, name


def _reply(result: BaseModel, started: float) -> JSONResponse:
    body = {"success": True, **result.model_dump(mode="json"),
            "processing_time": round(time.perf_counter() - started, 4)}
    return JSONResponse(body, headers={BATCH_HEADER: str(result.batch_size)})


@router.post("/api/image/classify", openapi_extra=_body_doc(ClassifyRequest),
             responses=json_reply(ClassifyReply, "The labels.", headers=BATCHED),
             description="Top-k labels with softmax scores, best first. Concurrent requests for one model "
                         "share a forward pass; X-Batch-Size says how many images did.")
async def classify(request: Request, services: Services = Depends(get_services)) -> JSONResponse:
    started = time.perf_counter()
    params, file = await _read(request, ClassifyRequest)
    entry = services.model_for(CLASSIFY, params.model)
    data, name = await _image(services, entry, params.image_url, file)
    result = await services.call(entry, "classify", data, params.top_k, name, model=entry.id)
    return _reply(result, started)


@router.post("/api/image/describe", openapi_extra=_body_doc(DescribeRequest),
             responses=json_reply(DescribeReply, "The description.", headers=BATCHED),
             description="A description of the image (BLIP caption or Qwen2-VL answer), guided by `prompt`.")
async def describe(request: Request, services: Services = Depends(get_services)) -> JSONResponse:
    started = time.perf_counter()
    params, file = await _read(request, DescribeRequest)
    entry = services.model_for(DESCRIBE, params.model)
    data, name = await _image(services, entry, params.image_url, file)
    result = await services.call(entry, "describe", data, params.prompt, params.max_tokens, name,
                                 model=entry.id)
    return _reply(result, started)


async def vision_job_input(services: Services, entry: ModelEntry, data: dict[str, Any]) -> dict[str, Any]:
    """The stored input of a vision job (/api/v1/run, /process/{model}/{file_id}), checked now so a bad
    request is a 4xx rather than a failed job. An `image_url` is fetched now and kept as an upload, so
    the job does not depend on the URL still answering later."""
    data = {key: value for key, value in data.items() if key != "model_variant"}
    params = parse(ClassifyInput if services.catalog.task_of(entry) == CLASSIFY else DescribeInput, data)
    _check_source(params.file_id is not None, params.image_url, "file_id")
    if params.image_url:
        image = await fetch_image(services, params.image_url)
        _, info = await asyncio.to_thread(open_image, image, params.image_url)
        upload = await _store_fetched(services, entry, image, info.model_dump(), params.image_url)
        params.file_id = upload.file_id
    else:
        upload = await services.upload(params.file_id)
        check_file_type(services, entry, upload)
        if upload.size > services.settings.image_max_bytes:
            raise PayloadTooLarge(f"Upload '{upload.filename}' is {upload.size} bytes; images may be at most "
                                  f"{services.settings.image_max_bytes} bytes")
        # (its image was decoded when it was uploaded: upload_routes refuses one that is not)
    return params.model_dump()


async def _store_fetched(services: Services, entry: ModelEntry, image: bytes, info: dict[str, Any], url: str):
    filename = f"image.{(info.get('format') or 'bin').lower()}"

    def store():
        with services.store.staging() as folder:
            staged = folder / stored_name(filename)
            staged.write_bytes(image)
            return services.keep_upload(entry.family, filename, staged, {**info, "source_url": url})

    return await asyncio.to_thread(store)


# vision_job_input's rule: an image from exactly one place (an empty image_url gives none), a URL as check_url
# takes it.
ONE_IMAGE = {"anyOf": [{**given("file_id"), "not": given("image_url", minLength=1)},
                       {**given("image_url", pattern=URL_PATTERN), "not": given("file_id")}]}
JOBS = {CLASSIFY: JobInput(vision_job_input, (ClassifyInput,), ONE_IMAGE),
        DESCRIBE: JobInput(vision_job_input, (DescribeInput,), ONE_IMAGE)}
