"""Per task, what a job's input must hold; checked against the catalog and the upload before the
job is queued, so a bad request is a 4xx now rather than a failed job later."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from deployments.errors import InvalidRequest
from deployments.ingress.chat_routes import chat_job_input
from deployments.ingress.embedding_routes import EmbeddingRequest
from deployments.ingress.music_routes import music_job_input
from deployments.ingress.request_checks import check_file_type, parse
from deployments.ingress.services import Services
from deployments.ingress.speech_routes import speech_job_input
from deployments.ingress.transcription_routes import transcription_job_input
from deployments.ingress.video_routes import video_job_input
from deployments.ingress.vision_routes import vision_job_input
from deployments.separation.params import SeparationInput, check_separation
from registry import ModelEntry


async def _separation(services: Services, entry: ModelEntry, data: dict[str, Any]) -> dict[str, Any]:
    params = parse(SeparationInput, data)
    upload = await services.upload(params.file_id)
    check_file_type(services, entry, upload)
    check_separation(entry, params, upload)
    return params.model_dump(exclude={"model_variant"})


async def _embedding(services: Services, entry: ModelEntry, data: dict[str, Any]) -> dict[str, Any]:
    request = parse(EmbeddingRequest, data)
    return {"texts": [request.text] if isinstance(request.text, str) else request.text}


JOB_INPUTS: dict[str, Callable[[Services, ModelEntry, dict[str, Any]], Awaitable[dict[str, Any]]]] = {
    "source-separation": _separation,
    "text-embedding": _embedding,
    "text-to-music": music_job_input,
    "speech-to-text": transcription_job_input,
    "text-to-speech": speech_job_input,
    "chat": chat_job_input,
    "image-classification": vision_job_input,
    "image-to-text": vision_job_input,
    "text-to-video": video_job_input,
    "image-to-video": video_job_input,
}


async def job_input(services: Services, entry: ModelEntry, data: dict[str, Any]) -> dict[str, Any]:
    task = services.catalog.task_of(entry)
    build = JOB_INPUTS.get(task)
    if build is None:
        raise InvalidRequest(
            f"Model '{entry.id}' ({task}) does not run as a job in this build; "
            f"jobs run for {', '.join(sorted(JOB_INPUTS))}"
        )
    return await build(services, entry, data)
