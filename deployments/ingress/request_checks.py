"""Checks several routes share: a body validated like FastAPI's, an upload's type against its family; and how
the spec states what those checks refuse (a multipart body, a form field that cannot be null)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from deployments.errors import UnsupportedMediaType
from deployments.ingress.services import Services
from deployments.jobs.store import Upload
from deployments.music_params import NONBLANK as NONBLANK  # the routes' non-blank pattern, from its one home
from registry import ModelEntry

Schema = TypeVar("Schema", bound=BaseModel)


def parse(schema: type[Schema], data: Any) -> Schema:
    """Validate like a FastAPI body, so errors come back as the same 400 naming each field."""
    try:
        return schema.model_validate(data)
    except ValidationError as error:
        raise RequestValidationError(error.errors()) from None


def not_null(schema: dict[str, Any]) -> None:
    """json_schema_extra of an optional multipart field: a form part is text and cannot be null (the text
    'null' is a value like any other), so the spec offers the field's own type and leaves it optional."""
    branches = [branch for branch in schema.get("anyOf", []) if branch.get("type") != "null"]
    if branches:
        del schema["anyOf"]
        schema.update(branches[0] if len(branches) == 1 else {"anyOf": branches})


def multipart_body(fields: type[BaseModel], files: dict[str, str], required: tuple[str, ...]) -> dict[str, Any]:
    """openapi_extra of a route that reads its multipart body itself (read_form): `fields`' text parts (none
    null) and the file parts, {name: description}."""
    schema = fields.model_json_schema()
    properties: dict[str, Any] = {name: {"type": "string", "format": "binary", "description": description}
                                  for name, description in files.items()}
    for name, field in schema["properties"].items():
        properties[name] = dict(field)
        not_null(properties[name])
    body = {key: value for key, value in schema.items() if key not in ("properties", "required", "title")}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        **body, "properties": properties, "required": list(required)}}}}}


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
