"""Per task, what a job's input must hold; checked against the catalog and the upload before the
job is queued, so a bad request is a 4xx now rather than a failed job later."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from deployments.errors import InvalidRequest, UnsupportedMediaType
from deployments.ingress.embedding_routes import EmbeddingRequest
from deployments.ingress.services import Services
from deployments.jobs.store import Upload
from deployments.separation.params import SeparationInput, check_separation
from registry import ModelEntry

Schema = TypeVar("Schema", bound=BaseModel)


def parse(schema: type[Schema], data: Any) -> Schema:
    """Validate like a FastAPI body, so errors come back as the same 400 naming each field."""
    try:
        return schema.model_validate(data)
    except ValidationError as error:
        raise RequestValidationError(error.errors()) from None


def check_file_type(services: Services, entry: ModelEntry, upload: Upload) -> None:
    accepted = services.catalog.families[entry.family].file_types
    kind = Path(upload.filename).suffix.lower().lstrip(".")
    if kind not in accepted:
        raise UnsupportedMediaType(
            f"File '{upload.filename}' cannot be processed by {entry.family}; it takes {', '.join(accepted)}"
        )


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
