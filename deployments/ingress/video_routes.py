"""Video routes (seed 003): POST /api/video/text-to-video (JSON) and /api/video/image-to-video (multipart
`image`), each queued as a job (202 + the job; `?wait=` seconds to answer with it finished), and the job
input of /api/v1/run for both tasks. Limits (size, steps, guidance, duration, duration x fps frames) are
checked before the job is queued; the MP4 is the job's file `video.mp4`."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from deployments.errors import InvalidRequest
from deployments.families.video_generation.protocol import IMAGE_TO_VIDEO, TEXT_TO_VIDEO, VideoParams, resolve_video
from deployments.ingress.http_errors import ERROR_RESPONSES
from deployments.ingress.image_routes import fitted_size, read_form, read_image_upload
from deployments.ingress.job_replies import JOB_REPLY, WAIT_QUERY, job_reply
from deployments.ingress.request_checks import JobInput, check_file_type, given, multipart_body, parse
from deployments.ingress.services import Services, get_services
from deployments.media.images import open_image
from deployments.state.safe_paths import display_filename, extension, stored_name
from registry import ModelEntry

router = APIRouter(tags=["video"], responses=ERROR_RESPONSES)


class VideoRequest(VideoParams):
    model: str | None = Field(None, description="Catalog id, alias or hub id; default the task's default model.")


class VideoJobFields(VideoParams):
    """/api/v1/run's input for video tasks: the request's fields; image-to-video adds an upload's file_id."""

    file_id: str | None = Field(None, description="Image-to-video: the upload of the first frame.")


@router.post("/api/video/text-to-video", status_code=202, responses=JOB_REPLY,
             description="Queues a text-to-video job; the job's progress rises per denoising step and its file "
             "video.mp4 holds duration x fps frames (H.264).")
async def text_to_video(body: VideoRequest, wait: float | None = WAIT_QUERY,
                        services: Services = Depends(get_services)) -> JSONResponse:
    entry = services.model_for(TEXT_TO_VIDEO, body.model)
    job = resolve_video(entry, body)
    return await job_reply(services, await services.submit(entry, job.model_dump()), wait)


I2V_DOC = multipart_body(VideoRequest, {"image": "The first frame."}, required=("image", "prompt"))


@router.post("/api/video/image-to-video", status_code=202, openapi_extra=I2V_DOC, responses=JOB_REPLY,
             description="Queues an image-to-video job that starts from `image` and follows `prompt`; the "
                         "video keeps the image's shape (fitted to the model's size rules) unless width/height "
                         "are given.")
async def image_to_video(request: Request, wait: float | None = WAIT_QUERY,
                         services: Services = Depends(get_services)) -> JSONResponse:
    fields, files = await read_form(request, ("image",))
    params = parse(VideoRequest, fields)
    entry = services.model_for(IMAGE_TO_VIDEO, params.model)
    if "image" not in files:
        raise InvalidRequest("No `image`: upload the first frame as a multipart file")
    data = await read_image_upload(services, entry, files["image"], "image")
    _, info = await asyncio.to_thread(open_image, data, "image")
    width, height = fitted_size(entry, info.width, info.height)
    params = params.model_copy(update={"width": params.width or width, "height": params.height or height})
    job = resolve_video(entry, params)  # checked before the upload is kept
    upload = await asyncio.to_thread(_keep_upload, services, entry, files["image"].filename or "image.png",
                                     data, info.model_dump())
    job = job.model_copy(update={"file_id": upload.file_id})
    return await job_reply(services, await services.submit(entry, job.model_dump()), wait)


def _keep_upload(services: Services, entry: ModelEntry, filename: str, data: bytes, info: dict[str, Any]):
    """The first frame as an upload; named as the client named it, with the extension of what it is."""
    filename, kind = display_filename(filename, default="image"), str(info.get("format") or "png").lower()
    if extension(filename) != kind:
        filename = f"{filename}.{kind}"
    with services.store.staging() as folder:
        staged = folder / stored_name(filename)  # the client's name is only metadata
        staged.write_bytes(data)
        return services.keep_upload(entry.family, filename, staged, info)


async def video_job_input(services: Services, entry: ModelEntry, data: dict[str, Any]) -> dict[str, Any]:
    """The stored input of a video job from /api/v1/run, checked now so a bad request is a 4xx."""
    params = parse(VideoJobFields, {key: value for key, value in data.items() if key != "model_variant"})
    if services.catalog.task_of(entry) == IMAGE_TO_VIDEO:
        if params.file_id is None:
            raise InvalidRequest("Image-to-video needs the file_id of an uploaded image (POST /upload)")
        upload = await services.upload(params.file_id)
        check_file_type(services, entry, upload)
        if params.width is None or params.height is None:
            width, height = fitted_size(entry, upload.info.get("width", 512), upload.info.get("height", 512))
            params = params.model_copy(update={"width": params.width or width, "height": params.height or height})
    return resolve_video(entry, params, params.file_id).model_dump()


JOBS = {TEXT_TO_VIDEO: JobInput(video_job_input, (VideoJobFields,)),
        IMAGE_TO_VIDEO: JobInput(video_job_input, (VideoJobFields,), given("file_id"))}
