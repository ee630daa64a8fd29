"""Routes of the text-to-music family."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from deployments.errors import InvalidRequest
from deployments.ingress.http_errors import ERROR_RESPONSES
from deployments.ingress.services import Services
from registry import ModelEntry

router = APIRouter(tags=["music"], responses=ERROR_RESPONSES)


async def music_job_input(services: Services, entry: ModelEntry, data: dict[str, Any]) -> dict[str, Any]:
    """The stored input of a text-to-music job (/process/{model}/{file_id} and /api/v1/run), checked."""
    raise InvalidRequest(f"Model '{entry.id}' (text-to-music) does not run as a job yet")
