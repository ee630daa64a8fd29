"""What a POST /models/download body (seed 001) asks for: which model, which repos, for which task, and
whether its flags allow it. Apart from the routes so that every rule a download request meets is here.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deployments.errors import InvalidRequest, ModelNotFound
from deployments.ingress.model_features import MB, TTS_TASK
from deployments.ingress.services import Services
from deployments.safe_paths import check_name
from registry import HubRepo, ModelEntry, UnknownModelError

SUPPORTED_SOURCES = ("huggingface", "url", "s3", "torchvision", "pytorch_hub")
# Seed 001's torch-side sources: torchvision has no CPU build beside torch 2.13, so their names are
# served by the catalog's hub-hosted model of the same architecture, and the answer says which.
MAPPED_SOURCES = ("torchvision", "pytorch_hub")
MAPPED_TASK = "image-classification"
UNSUPPORTED_SOURCES = ("tts_auto",)  # seed 001 names it; there is no automatic TTS conversion here
MAX_URL_DOWNLOAD_BYTES = 20 * 2**30


class DownloadRequest(BaseModel):
    """POST /models/download, as seed 001 writes it."""

    model_config = ConfigDict(extra="ignore")

    source: str = "huggingface"
    model_id: str = Field(min_length=1, description="Catalog id/alias/hub repo id, the URL for source=url, "
                          "s3://bucket/prefix for source=s3 (a folder laid out as the hub repo would be), or a "
                          "torchvision / torch.hub name such as 'resnet50' or 'pytorch/vision:v0.10.0/resnet50'.")
    name: str | None = Field(None, description="Name to manage it by; a catalog model keeps its catalog id.")
    task: str | None = Field(None, description="Needed for a hub repo outside the catalog; seed 001's "
                             "'text-generation' means chat.")
    revision: str = "main"
    include_vocoder: bool = False
    vocoder_model: str | None = None
    sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$", description="Checked for source=url.")
    max_size_mb: float | None = Field(None, gt=0, description="Refuse a url download larger than this.")
    enable_large_model: bool = Field(False, description="Needed for a model that needs more GPU memory than "
                                     "INFERENCE_LARGE_MODEL_GB.")
    experimental: bool = Field(False, description="Needed for a model the catalog marks experimental.")
    auto_convert_tts: bool = Field(False, description="Seed 001's flag. No model is converted to speech here: "
                                   "the answer's download_info.tts_conversion says so for a model of another task.")


def check_source(source: str) -> None:
    if source not in SUPPORTED_SOURCES:
        raise InvalidRequest(
            f"Invalid source. Must be one of: [{', '.join(SUPPORTED_SOURCES)}]"
            + (f" ('{source}' is not available in this build)" if source in UNSUPPORTED_SOURCES else ""),
            error=f"Invalid source: {source}",
        )


def check_task(services: Services, task: str) -> str:
    """The task `task` names (or an alias of it, e.g. text-generation for chat); a 400 listing them if none."""
    known = services.catalog.task_named(task)
    if known is None:
        raise InvalidRequest(f"Unknown task '{task}'. Known tasks: {', '.join(services.catalog.tasks)}")
    return known


def catalog_entry(services: Services, name: str) -> ModelEntry | None:
    try:
        return services.catalog.resolve(name)
    except UnknownModelError:
        return None


def is_large(services: Services, entry: ModelEntry) -> bool:
    """Needs more GPU memory than INFERENCE_LARGE_MODEL_GB: downloaded only with enable_large_model."""
    return (entry.specs.vram_requirement_gb or 0) > services.settings.large_model_gb


def check_flags(services: Services, entry: ModelEntry, body: DownloadRequest) -> None:
    """enable_large_model and experimental gate what their names say, with a 400 saying which flag to set."""
    memory, limit = entry.specs.vram_requirement_gb, services.settings.large_model_gb
    if is_large(services, entry) and not body.enable_large_model:
        raise InvalidRequest(f"Model '{entry.id}' is a large model: it needs {memory:g} GB of GPU memory, over "
                             f"this service's {limit:g} GB; send enable_large_model: true to download it",
                             error="Large model not enabled")
    if entry.experimental and not body.experimental:
        raise InvalidRequest(f"Model '{entry.id}' is experimental; send experimental: true to download it",
                             error="Experimental model not enabled")


def mapped_source_entry(services: Services, body: DownloadRequest) -> ModelEntry:
    """The catalog model that serves a torchvision / torch.hub name ('resnet50', 'pytorch/vision:v0.10.0/resnet50')."""
    name = re.split(r"[/:]", body.model_id.strip())[-1]
    try:
        return services.catalog.resolve(name, task=MAPPED_TASK)
    except UnknownModelError as missing:
        names = [alias for m in services.catalog.models_for_task(MAPPED_TASK) for alias in (m.id, *m.aliases)]
        raise ModelNotFound(f"{body.source} model '{body.model_id}' has no hub-hosted equivalent here; torchvision "
                            f"is not installed, so {body.source} names are served by the catalog's "
                            f"{MAPPED_TASK} models: {', '.join(names)}") from missing


def hub_target(services: Services, body: DownloadRequest) -> tuple[str, list[HubRepo], str, ModelEntry | None]:
    """(manager key, repos, task, catalog entry) for a hub download: a catalog model, or any repo when
    `task` is given."""
    catalog = services.catalog
    if body.source in MAPPED_SOURCES:
        entry: ModelEntry | None = mapped_source_entry(services, body)
    else:
        entry = catalog_entry(services, body.model_id) or (catalog_entry(services, body.name) if body.name else None)
    if entry:
        repos, task = list(entry.repos), catalog.task_of(entry)
        key = entry.id
    else:
        if not body.task:
            raise ModelNotFound(
                f"Model '{body.model_id}' is not in the catalog; give `task` ({', '.join(catalog.tasks)}) to download "
                f"a hub repo outside it. Known models: {', '.join(catalog.models)}"
            )
        task = check_task(services, body.task)
        try:
            repos = [HubRepo(repo_id=body.model_id, revision=body.revision)]
        except ValidationError:
            raise InvalidRequest(f"model_id must be a hub repo id like 'owner/name', got {body.model_id!r}") from None
        key = check_name((body.name or body.model_id.replace("/", "--")).lower())
    if body.include_vocoder and body.vocoder_model and all(r.repo_id != body.vocoder_model for r in repos):
        try:
            repos.append(HubRepo(repo_id=body.vocoder_model, role="vocoder"))
        except ValidationError:
            raise InvalidRequest(f"vocoder_model must be a hub repo id, got {body.vocoder_model!r}") from None
    return key, repos, task, entry


def s3_target(services: Services, body: DownloadRequest) -> tuple[str, list[HubRepo], str, ModelEntry | None]:
    """(manager key, repos, task, None) for an s3:// prefix, served by `task`'s family like a hub repo."""
    if not body.model_id.startswith("s3://"):
        raise InvalidRequest(f"source=s3 takes s3://bucket/prefix, got {body.model_id!r}",
                             error="Unsupported URL scheme")
    if not body.name or not body.task:
        raise InvalidRequest("source=s3 needs a `name` to manage the model by and the `task` it serves "
                             f"({', '.join(services.catalog.tasks)})")
    task = check_task(services, body.task)
    try:
        repo = HubRepo(repo_id=body.model_id)
    except ValidationError:
        raise InvalidRequest(f"model_id must be s3://bucket/prefix, got {body.model_id!r}") from None
    return check_name(body.name.lower()), [repo], task, None


def url_args(body: DownloadRequest) -> dict:
    parts = urlsplit(body.model_id)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidRequest(f"source=url takes an http or https URL, got {body.model_id!r}",
                             error="Unsupported URL scheme")
    if not body.name:
        raise InvalidRequest("source=url needs a `name` to manage the file by")
    limit = int(min(body.max_size_mb * MB, MAX_URL_DOWNLOAD_BYTES) if body.max_size_mb else MAX_URL_DOWNLOAD_BYTES)
    return {"url": body.model_id, "sha256": body.sha256, "max_bytes": limit}


def tts_conversion(services: Services, body: DownloadRequest, task: str | None) -> str | None:
    """What became of auto_convert_tts: nothing to convert for a speech model; refused in words for the rest."""
    if not body.auto_convert_tts:
        return None
    if task == TTS_TASK:
        return "not needed: the model speaks already"
    speakers = ", ".join(m.id for m in services.catalog.models_for_task(TTS_TASK))
    return (f"not applied: '{body.model_id}' is downloaded as a {task or 'file'} model; this service converts no "
            f"model to speech. Models that speak: {speakers}")
