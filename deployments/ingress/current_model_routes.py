"""Each task's current model, switched at run time (seed 002's Settings page and its "Reload Model"):
the model a request that names none gets. Kept in the job database, so every ingress replica, on
every node, and a restarted service see the same choice."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from deployments.errors import Conflict, NotFound
from deployments.ingress.http_errors import ERROR_RESPONSES
from deployments.ingress.replies import ModelLifecycle, json_reply
from deployments.ingress.services import Services, get_services
from registry import UnknownModelError

router = APIRouter(tags=["catalog"])


class CurrentModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, description="Catalog id, alias or hub repo id of a model of the task.")


class CurrentModels(BaseModel):
    success: bool
    current_models: dict[str, str] = Field(description="Task -> the model a request naming none gets now.")


class CurrentModelSwitched(BaseModel):
    success: bool
    task: str = Field(description="The task (a task alias in the path reads as its task).")
    current_model: str
    previous_model: str
    lifecycle: ModelLifecycle = Field(description="The new current model's; wait for state `ready`.")


@router.get("/models/current", response_model=Any, responses=json_reply(CurrentModels, "Each task's current model."))
async def current_models(services: Services = Depends(get_services)) -> dict[str, Any]:
    """Task -> the model requests that name none get now."""
    return {"success": True, "current_models": {task: services.catalog.current_model(task)
                                                for task in services.catalog.tasks}}


@router.put("/models/current/{task}", response_model=Any,
            responses={**ERROR_RESPONSES, **json_reply(CurrentModelSwitched, "Switched; the model is loading.")})
async def switch_current_model(task: str, body: CurrentModel, services: Services = Depends(get_services)
                               ) -> dict[str, Any]:
    """Make `body.model` the task's current model and start loading it (a replica starts if it has
    none); the answer carries its lifecycle, so a client can wait for `ready`."""
    catalog = services.catalog
    named = catalog.task_named(task)  # a task alias (text-generation) means its task
    if named is None:
        raise NotFound(f"Unknown task '{task}'; tasks: {', '.join(catalog.tasks)}")
    task = named
    try:
        entry = catalog.resolve(body.model, task=task)
    except UnknownModelError:
        services.model_for(task, body.model)  # raises the 404 or 400 a request naming it gets
        raise
    if not services.is_served(entry):
        deployed = [m.id for m in catalog.models_for_task(task) if services.is_served(m)]
        raise Conflict(f"Model '{entry.id}' is not deployed in this application, so it cannot be the current "
                       f"{task} model; deployed {task} models: {', '.join(deployed) or 'none'}")
    previous = catalog.current_model(task)
    await asyncio.to_thread(catalog.set_current, task, entry.id)
    services.load_soon(entry)
    return {"success": True, "task": task, "current_model": entry.id, "previous_model": previous,
            "lifecycle": await services.lifecycle(entry)}

