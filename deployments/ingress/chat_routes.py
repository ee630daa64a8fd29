"""Chat routes. (stub: being written)"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from deployments.ingress.http_errors import ERROR_RESPONSES
from deployments.ingress.services import Services
from registry import ModelEntry

router = APIRouter(tags=["chat"], responses=ERROR_RESPONSES)


async def chat_job_input(services: Services, entry: ModelEntry, data: dict[str, Any]) -> dict[str, Any]:
    raise NotImplementedError
