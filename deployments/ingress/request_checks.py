"""Checks several routes share: a body validated like FastAPI's, an upload's type against its family."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from deployments.errors import UnsupportedMediaType
from deployments.ingress.services import Services
from deployments.jobs.store import Upload
from registry import ModelEntry

Schema = TypeVar("Schema", bound=BaseModel)


def parse(schema: type[Schema], data: Any) -> Schema:
    """Validate like a FastAPI body, so errors come back as the same 400 naming each field."""
    try:
        return schema.model_validate(data)
    except ValidationError as error:
        raise RequestValidationError(error.errors()) from None


def check_upload_kind(services: Services, family: str, kind: str, name: str) -> None:
    """A file about to be received: a 415 listing what `family` takes when it does not take `kind`."""
    accepted = services.catalog.families[family].file_types
    if kind not in accepted:
        raise UnsupportedMediaType(
            f"File type '{kind or name}' is not accepted by {family}; it takes {', '.join(accepted)}"
        )


def check_file_type(services: Services, entry: ModelEntry, upload: Upload) -> None:
    accepted = services.catalog.families[entry.family].file_types
    kind = Path(upload.filename).suffix.lower().lstrip(".")
    if kind not in accepted:
        raise UnsupportedMediaType(
            f"File '{upload.filename}' cannot be processed by {entry.family}; it takes {', '.join(accepted)}"
        )
