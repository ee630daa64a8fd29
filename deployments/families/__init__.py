"""One folder per model family: `deployment.py` (the Serve deployment, one model each), its engines, and
`protocol.py` (request/response types and limits: the only module of a family the ingress imports).

FAMILIES is a family's one registration here: the catalog's `deployment:` kind -> "module:class" of its Serve
deployment, imported when the app is built (the ingress never imports them)."""

from __future__ import annotations

import importlib
from typing import Any

FAMILIES = {
    "embedding": "deployments.families.embedding.deployment:EmbeddingDeployment",
    "separation": "deployments.families.separation.deployment:SeparationDeployment",
    "music": "deployments.families.music.deployment:MusicDeployment",
    "transcription": "deployments.families.transcription.deployment:TranscriptionDeployment",
    "speech": "deployments.families.speech.deployment:SpeechDeployment",
    "chat": "deployments.families.chat.deployment:ChatDeployment",
    "vision": "deployments.families.vision.deployment:VisionDeployment",
    "image-generation": "deployments.families.image_generation.deployment:ImageGenerationDeployment",
    "video-generation": "deployments.families.video_generation.deployment:VideoGenerationDeployment",
}


def family_deployments() -> dict[str, Any]:
    """Every registered kind -> its Serve Deployment (typed Any: Serve's stubs type them as the classes)."""
    found = {}
    for kind, where in FAMILIES.items():
        module, name = where.split(":")
        found[kind] = getattr(importlib.import_module(module), name)
    return found
