"""Text-to-speech: SpeechT5 with its HiFi-GAN vocoder and speaker embeddings, and Bark with voice presets."""

from __future__ import annotations

from ray import serve

from deployments.settings import ServiceSettings
from registry import Catalog


@serve.deployment(health_check_period_s=10)
class SpeechDeployment:
    def __init__(self, catalog: Catalog, settings: ServiceSettings):
        self._catalog = catalog
        self._settings = settings
