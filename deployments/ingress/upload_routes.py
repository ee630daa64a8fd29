"""Seed 000's file routes: POST /upload[/{model}], POST /process/{model}/{file_id}, POST /separate/{file_id}.

An upload is checked (type, size, decodable audio or image) in a staging folder and only then enters the
job store; processing it queues a job and answers 202 at once (or waits, with `?wait=`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any, BinaryIO

from fastapi import APIRouter, Body, Depends, File, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel, BeforeValidator, Field

from deployments.errors import InvalidRequest, ModelNotFound, NotFound, PayloadTooLarge
from deployments.families.separation.protocol import SeparationParams
from deployments.ingress.areas import TEXT_UPLOAD_TASKS
from deployments.ingress.http_errors import ERROR_RESPONSES
from deployments.ingress.job_inputs import job_input
from deployments.ingress.job_replies import JOB_REPLY, WAIT_QUERY, job_reply
from deployments.ingress.replies import Absent, json_reply
from deployments.ingress.request_checks import check_upload_kind
from deployments.ingress.services import Services, get_services
from deployments.media.audio import AudioLimits, AudioTooLarge, BadAudio, probe_audio
from deployments.media.images import open_image
from deployments.state.safe_paths import display_filename, extension, stored_name
from registry import ModelEntry, UnknownModelError

router = APIRouter(tags=["uploads and processing"], responses=ERROR_RESPONSES)

AUDIO_TYPES = {"wav", "flac", "mp3", "ogg", "m4a", "mp4", "webm"}  # m4a/mp4/webm: PyAV (FFmpeg)
IMAGE_TYPES = {"png", "jpg", "jpeg", "webp"}
# Families that read text take a .txt upload as that text (seed 000: every model, the same two routes);
# music reads its prompt file in the replica, as it always has.
PROCESS_BODY = Body(None, description="Seed 000's parameters, "
                                      "e.g. {'model_variant': 'mdx_extra', 'two_stems': 'vocals'}")
# /separate's body: a dict for _process, stated in the spec as the separation parameters it must be.
SeparationBody = Annotated[dict[str, Any], BeforeValidator(lambda value: value,
                                                           json_schema_input_type=SeparationParams)]


class UploadReply(BaseModel):
    """An upload, kept: what its check learned of the file is at the top level (seed 000's `duration`)."""

    success: bool
    file_id: str = Field(description="Names the upload in /process/{model}/{file_id}, file_id inputs and "
                                     "voice_sample_file_id.")
    filename: str = Field(description="The client's file name, made safe.")
    model: str = Field(description="The model family it was uploaded for.")
    size: int = Field(description="Bytes.")
    duration: float | Absent = Field(None, description="Audio: seconds.")
    sample_rate: int | Absent = Field(None, description="Audio.")
    channels: int | Absent = Field(None, description="Audio.")
    format: str | None = Field(None, description="Audio or image: the format as read from the file.")
    width: int | Absent = Field(None, description="Image: pixels.")
    height: int | Absent = Field(None, description="Image: pixels.")
    characters: int | Absent = Field(None, description="Text (.txt): its length.")
    process_url: str = Field(description="/process/{family}/{file_id}: POST there to run it.")


UPLOADED = json_reply(UploadReply, "The upload, checked and kept.", status=201)


def _family(services: Services, name: str) -> tuple[str, ModelEntry | None]:
    """`{model}` in the routes: a family (demucs) or a model of one (mdx_extra)."""
    if name in services.catalog.families:
        return name, None
    try:
        entry = services.catalog.resolve(name)
    except UnknownModelError:
        raise ModelNotFound(
            f"Model '{name}' not found. Known families: {', '.join(services.catalog.families)}; "
            f"known models: {', '.join(services.catalog.models)}"
        ) from None
    return entry.family, entry


def _copy_capped(source: BinaryIO, target: Path, limit: int) -> int:
    size = 0
    with open(target, "wb") as out:
        while chunk := source.read(1 << 20):
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"Upload exceeds the limit of {limit} bytes")
            out.write(chunk)
    return size


def _check_content(path: Path, kind: str, name: str, limits: AudioLimits) -> dict[str, Any]:
    """What a processor will need to know, learned by reading the file once (`name`: the client's, for messages);
    audio over `limits` is refused from its header before it is decoded."""
    if kind in AUDIO_TYPES:
        try:
            info = probe_audio(path, limits)
        except BadAudio as bad:
            raise InvalidRequest(f"File '{name}' is not valid audio: {bad}") from None
        except AudioTooLarge as too:
            raise AudioTooLarge(f"File '{name}': {too.message}") from None
        return {"duration": round(info.duration, 3), "sample_rate": info.sample_rate,
                "channels": info.channels, "format": info.format}
    if kind in IMAGE_TYPES:  # open_image names the problem: not an image, truncated, too many pixels
        _, image = open_image(path.read_bytes(), name)
        return image.model_dump()
    if kind == "txt":
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise InvalidRequest(f"File '{name}' is not UTF-8 text") from None
        if not text.strip():
            raise InvalidRequest(f"File '{name}' is empty")
        return {"characters": len(text)}
    return {}


async def _store_upload(services: Services, family: str, file: UploadFile) -> dict[str, Any]:
    accepted = services.catalog.families[family].file_types
    if not accepted:
        raise InvalidRequest(f"Model family '{family}' does not take file uploads")
    filename = display_filename(file.filename)
    kind = extension(filename)
    check_upload_kind(services, family, kind, filename)
    with services.store.staging() as folder:
        staged = folder / stored_name(filename)
        await asyncio.to_thread(_copy_capped, file.file, staged, services.settings.max_upload_bytes)
        info = await asyncio.to_thread(_check_content, staged, kind, filename,
                                       AudioLimits.from_settings(services.settings))
        upload = await asyncio.to_thread(services.keep_upload, family, filename, staged, info)
    return {
        "success": True,
        "file_id": upload.file_id,
        "filename": upload.filename,
        "model": family,
        "size": upload.size,
        **upload.info,
        "process_url": f"/process/{family}/{upload.file_id}",
    }


@router.post("/upload", status_code=201, response_model=Any, responses=UPLOADED)
async def upload_default(file: UploadFile = File(...), services: Services = Depends(get_services)) -> dict[str, Any]:
    """Seed 000: the generic upload goes to the source-separation family."""
    family = services.catalog.default_model("source-separation").family
    return await _store_upload(services, family, file)


@router.post("/upload/{model}", status_code=201, response_model=Any, responses=UPLOADED)
async def upload(model: str, file: UploadFile = File(...),
                 services: Services = Depends(get_services)) -> dict[str, Any]:
    family, _ = _family(services, model)
    return await _store_upload(services, family, file)


async def _process(services: Services, model: str, file_id: str, body: dict[str, Any] | None,
                   wait: float | None) -> JSONResponse:
    family, named = _family(services, model)
    data = dict(body or {})
    variant = data.get("model_variant")
    try:
        chosen = services.catalog.variant(family, variant) if isinstance(variant, str) else None
    except UnknownModelError as missing:
        raise ModelNotFound(f"Unknown model_variant '{variant}' for {family}; known variants: "
                            f"{', '.join(missing.known)}") from None
    if named is not None and chosen is not None and chosen != named:
        raise InvalidRequest(f"model_variant '{variant}' contradicts the model '{named.id}' in the path")
    entry = named or chosen or _current_of(services, family)
    task = services.catalog.task_of(entry)
    entry = services.model_for(task, entry.id)
    data = await _with_upload(services, task, data, file_id)
    job = await services.submit(entry, await job_input(services, entry, data))
    return await job_reply(services, job, wait)


def _current_of(services: Services, family: str) -> ModelEntry:
    """The model a request naming only the family gets: its task's current model (PUT /models/current) when
    that is of this family, else the family's default."""
    default = services.catalog.variant(family, None)
    current = services.catalog.models.get(services.catalog.current_model(services.catalog.task_of(default)))
    return current if current is not None and current.family == family else default


async def _with_upload(services: Services, task: str, data: dict[str, Any], file_id: str) -> dict[str, Any]:
    """The job input with its upload: a .txt upload of a text-reading family becomes the text to speak or
    embed, or the user's turn of a chat; any other upload is passed by its file_id."""
    if task not in TEXT_UPLOAD_TASKS:
        return {**data, "file_id": file_id}
    try:
        upload = await services.upload(file_id)
    except NotFound:
        upload = None
    if upload is None or not upload.filename.lower().endswith(".txt"):
        return {**data, "file_id": file_id}  # a voice sample for a model that clones; the task's check answers
    text = (await asyncio.to_thread(services.store.read_upload, upload)).decode("utf-8").strip()
    if task == "chat":
        earlier = data.get("messages", [])  # a system turn, say; not a list: left for the check to refuse
        return {**data, "messages": [*earlier, {"role": "user", "content": text}] if isinstance(earlier, list)
                else earlier}
    return {**data, "text": text}


@router.post("/process/{model}/{file_id}", status_code=202, responses=JOB_REPLY)
async def process(model: str, file_id: str, body: dict[str, Any] | None = PROCESS_BODY,
                  wait: float | None = WAIT_QUERY, services: Services = Depends(get_services)) -> JSONResponse:
    return await _process(services, model, file_id, body, wait)


@router.post("/separate/{file_id}", status_code=202, responses=JOB_REPLY)
async def separate(file_id: str, body: SeparationBody | None = PROCESS_BODY,
                   wait: float | None = WAIT_QUERY, services: Services = Depends(get_services)) -> JSONResponse:
    """Seed 000's back-compatible route: /process with the source-separation family."""
    family = services.catalog.default_model("source-separation").family
    return await _process(services, family, file_id, body, wait)
