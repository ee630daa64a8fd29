"""Text-to-music with MusicGen (transformers' port), LoRA adapters per request, @serve.batch."""

from __future__ import annotations

from ray import serve

from deployments.settings import ServiceSettings
from registry import Catalog


@serve.deployment(health_check_period_s=10)
class MusicDeployment:
    def __init__(self, catalog: Catalog, settings: ServiceSettings):
        self._catalog = catalog
        self._settings = settings
