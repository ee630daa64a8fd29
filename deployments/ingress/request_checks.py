"""Checks several routes share: a body validated like FastAPI's, an upload's type against its family; and how
the spec states what those checks refuse (a multipart body, a form field that cannot be null, a task name)."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from deployments.errors import UnsupportedMediaType
from deployments.families.protocol import NONBLANK as NONBLANK  # the routes' non-blank pattern, from its one home
from deployments.ingress.services import Services
from deployments.state.store import Upload
from registry import ModelEntry, TaskConfig

Schema = TypeVar("Schema", bound=BaseModel)
# Marks a schema whose enum is the catalog's task names: data of the catalog the app serves, not of this code,
# so stated when the app builds its spec (state_catalog), once, at the first GET /openapi.json.
CATALOG_TASKS = "x-catalog-tasks"


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


@dataclasses.dataclass(frozen=True)
class JobInput:
    """How a task runs as a job (POST /api/v1/run, /process): `build(services, entry, data)` checks a job's
    input against the catalog and uploads and returns what is stored; `schemas` (any one of them) and `rule`
    (across fields) are what the spec says that input holds. A routes module exports {task: JobInput} as JOBS."""

    build: Callable[[Any, Any, dict[str, Any]], Awaitable[dict[str, Any]]]
    schemas: tuple[type[BaseModel], ...]
    rule: dict[str, Any] = dataclasses.field(default_factory=dict)


def given(field: str, **schema: Any) -> dict[str, Any]:
    """The schema of an object whose `field` is given (present and not null), a string as `schema` says."""
    return {"required": [field], "properties": {field: {"type": "string", **schema}}}


def catalog_tasks(schema: dict[str, Any]) -> None:
    """json_schema_extra of a field that names a task (Catalog.task_named: its name or an alias): the enum the
    app states for it (state_catalog); null stays allowed where the field allows it."""
    strings = [branch for branch in schema.get("anyOf", []) if branch.get("type") == "string"]
    for branch in strings or [schema]:
        branch[CATALOG_TASKS] = True


def state_catalog(spec: Any, tasks: Mapping[str, TaskConfig]) -> None:
    """Give every schema in `spec` that catalog_tasks marked the enum of the catalog's `tasks`, by name and
    alias (fixed while the app runs: a model added at run time joins a task of the catalog file)."""
    if isinstance(spec, list):
        for item in spec:
            state_catalog(item, tasks)
    elif isinstance(spec, dict):
        if spec.pop(CATALOG_TASKS, False):
            spec["enum"] = [name for task, config in tasks.items() for name in (task, *config.aliases)]
        for value in spec.values():
            state_catalog(value, tasks)


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
    if required:
        body["required"] = list(required)
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        **body, "properties": properties}}}}}


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
