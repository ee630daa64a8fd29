"""Per task, what a job's input must hold; checked against the catalog and the upload before the
job is queued, so a bad request is a 4xx now rather than a failed job later. The same rules, as schemas,
are what the spec says a job's `input` holds (TaskInput, run_by_task_or_model)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import reduce
from operator import or_
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator

from deployments.errors import InvalidRequest
from deployments.families.chat.protocol import ProductRequest
from deployments.families.music.protocol import MusicJobInput
from deployments.families.separation.protocol import SeparationInput, check_separation
from deployments.families.transcription.protocol import TranscriptionJobInput
from deployments.families.vision.protocol import ClassifyInput, DescribeInput
from deployments.ingress.chat_routes import ChatJob, chat_job_input
from deployments.ingress.embedding_routes import EmbeddingRequest
from deployments.ingress.music_routes import music_job_input
from deployments.ingress.request_checks import check_file_type, given, parse
from deployments.ingress.services import Services
from deployments.ingress.speech_routes import SpeechInput, speech_job_input
from deployments.ingress.transcription_routes import transcription_job_input
from deployments.ingress.video_routes import VideoJobFields, video_job_input
from deployments.ingress.vision_routes import vision_job_input
from deployments.media.safe_urls import URL_PATTERN
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


# vision_job_input's rule: an image from exactly one place (an empty image_url gives none), a URL as check_url
# takes it.
ONE_IMAGE = {"anyOf": [{**given("file_id"), "not": given("image_url", minLength=1)},
                       {**given("image_url", pattern=URL_PATTERN), "not": given("file_id")}]}
# Per task: the schemas its builder above validates the input against, and a rule across fields it checks too.
TASK_INPUTS: dict[str, tuple[tuple[type[BaseModel], ...], dict[str, Any]]] = {
    "source-separation": ((SeparationInput,), {}),
    "text-embedding": ((EmbeddingRequest,), {}),
    "text-to-music": ((MusicJobInput,), {}),
    "speech-to-text": ((TranscriptionJobInput,), {}),
    "text-to-speech": ((SpeechInput,), {}),
    "chat": ((ChatJob, ProductRequest), {}),
    "image-classification": ((ClassifyInput,), ONE_IMAGE),
    "image-to-text": ((DescribeInput,), ONE_IMAGE),
    "text-to-video": ((VideoJobFields,), {}),
    "image-to-video": ((VideoJobFields,), given("file_id")),
}
INPUT_SCHEMAS = tuple(dict.fromkeys(schema for schemas, _ in TASK_INPUTS.values() for schema in schemas))
# A job's `input`: a dict for the builders, stated in the spec as any task's input (the model decides which).
TaskInput = Annotated[dict[str, Any], BeforeValidator(lambda value: value,
                                                      json_schema_input_type=reduce(or_, INPUT_SCHEMAS))]


def run_by_task_or_model(schema: dict[str, Any]) -> None:
    """json_schema_extra of a run request (`model`, `task`, `input`: TaskInput), as submit_run checks it: a task
    named, and an input of that task's; or a model named (not empty), and an input of its task, which only
    the catalog knows. Branches, not if/then: schemathesis generates from those."""
    refs = dict(zip(INPUT_SCHEMAS, schema["properties"]["input"].pop("anyOf")))
    schema["properties"]["input"]["type"] = "object"
    schema["anyOf"] = [
        {"required": ["task"], "properties": {
            "task": {"const": task}, "input": {"allOf": [{"anyOf": [refs[s] for s in schemas]}, rule]}}}
        for task, (schemas, rule) in TASK_INPUTS.items()
    ] + [{"required": ["model"], "properties": {"model": {"type": "string", "minLength": 1}, "task": {"type": "null"},
                                                "input": {"anyOf": list(refs.values())}}}]


async def job_input(services: Services, entry: ModelEntry, data: dict[str, Any]) -> dict[str, Any]:
    task = services.catalog.task_of(entry)
    build = JOB_INPUTS.get(task)
    if build is None:
        raise InvalidRequest(
            f"Model '{entry.id}' ({task}) does not run as a job in this build; "
            f"jobs run for {', '.join(sorted(JOB_INPUTS))}"
        )
    return await build(services, entry, data)
