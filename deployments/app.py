"""The Serve application builder that `serve run` / `serve deploy` point at (import_path)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from ray.serve import Application, Deployment

from deployments.chat import ChatDeployment
from deployments.embedding import EmbeddingDeployment
from deployments.ingress import Ingress
from deployments.music import MusicDeployment
from deployments.separation.deployment import SeparationDeployment
from deployments.settings import ServiceSettings
from deployments.speech import SpeechDeployment
from deployments.transcription import TranscriptionDeployment
from deployments.vision import VisionDeployment
from registry import Catalog, load_catalog

# Catalog family `deployment` name -> Serve deployment. A new family adds one line here.
FAMILY_DEPLOYMENTS = {
    "embedding": EmbeddingDeployment,
    "separation": SeparationDeployment,
    "music": MusicDeployment,
    "transcription": TranscriptionDeployment,
    "speech": SpeechDeployment,
    "chat": ChatDeployment,
    "vision": VisionDeployment,
}


class AppArgs(BaseModel):
    """`args:` of the application in serve_config.yaml."""

    model_config = ConfigDict(extra="forbid")

    catalog_path: str | None = Field(None, description="Catalog file; default registry/catalog.yaml.")
    deployments: list[str] = Field(
        default_factory=lambda: list(FAMILY_DEPLOYMENTS),
        description=f"Family deployments to run; any of {sorted(FAMILY_DEPLOYMENTS)}.",
    )


def build_app(args: AppArgs | dict) -> Application:
    """Load and check the catalog (failing here, at start, if it is broken) and bind the deployments."""
    args = args if isinstance(args, AppArgs) else AppArgs.model_validate(args or {})
    settings = ServiceSettings()
    catalog = load_catalog(args.catalog_path or settings.catalog_path)
    unknown = sorted(set(args.deployments) - set(FAMILY_DEPLOYMENTS))
    if unknown:
        raise ValueError(f"Unknown deployments {unknown}; this build has {sorted(FAMILY_DEPLOYMENTS)}")
    return compose_app(catalog, settings, {name: FAMILY_DEPLOYMENTS[name] for name in args.deployments})


def compose_app(catalog: Catalog, settings: ServiceSettings, deployments: dict[str, Deployment]) -> Application:
    """The ingress bound to the given family deployments (tests pass ones with other options)."""
    families = {name: deployment.bind(catalog, settings) for name, deployment in deployments.items()}
    return Ingress.bind(catalog, settings, families)  # type: ignore[attr-defined]
