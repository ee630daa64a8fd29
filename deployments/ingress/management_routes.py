"""Seed 001's model management routes (downloads, cache, managed models) over the ModelManager actor."""

from __future__ import annotations

from fastapi import APIRouter

from deployments.ingress.http_errors import ERROR_RESPONSES

router = APIRouter(tags=["model management"], responses=ERROR_RESPONSES)
