"""What a POST /models/download body (seed 001) asks for: which model, which repos, for which task, and
whether its flags allow it. Apart from the routes so that every rule a download request meets is here.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deployments.errors import InsufficientStorage, InvalidRequest, ModelNotFound, SourceNotAllowed
from deployments.ingress.model_features import MB, TTS_TASK, mb
from deployments.ingress.request_checks import catalog_tasks, given
from deployments.ingress.services import Services
from deployments.media.safe_urls import URL_PATTERN
from deployments.state.safe_paths import NAME_MAX, NAME_SCHEMA_PATTERN, check_name
from registry import HubRepo, ModelEntry, UnknownModelError

SUPPORTED_SOURCES = ("huggingface", "url", "s3", "torchvision", "pytorch_hub")
# Seed 001's torch-side sources: torchvision has no CPU build beside torch 2.13, so their names are
# served by the catalog's hub-hosted model of the same architecture, and the answer says which.
MAPPED_SOURCES = ("torchvision", "pytorch_hub")
MAPPED_TASK = "image-classification"
UNSUPPORTED_SOURCES = ("tts_auto",)  # seed 001 names it; there is no automatic TTS conversion here
MAX_URL_DOWNLOAD_BYTES = 20 * 2**30
# What a model added at run time may download: weights as safetensors only (no pickles, nothing that runs
# code when loaded), configs, tokenizers and the yaml of Demucs bags.
RUNTIME_FILES = ["*.json", "*.safetensors", "*.txt", "*.md", "*.model", "*.tiktoken", "*.yaml"]
# For the spec: the repo ids hub_target and s3_target take (HubRepo's, no '..'), narrowed so that a hub repo
# outside the catalog, managed as 'owner--name', makes a name check_name takes (ASCII, at most 128 characters);
# an s3 prefix's parts are at most 128 characters.
HUB_REPO_ID = r"^[A-Za-z0-9](\.?[A-Za-z0-9_-])*\.?/(\.?[A-Za-z0-9_-])+\.?$"
HUB_REPO_MAX = NAME_MAX - 1
S3_PREFIX = r"^s3://[a-z0-9](\.?[a-z0-9-]){1,31}(/(\.?[A-Za-z0-9_=+-]){1,64})*/?$"
S3_PREFIX_MAX = 512


def download_rules(schema: dict[str, Any]) -> None:
    """json_schema_extra of DownloadRequest: what start_download takes, per source. A catalog model (a 404
    lists them) or a torchvision / torch.hub name needs nothing more; a hub repo outside the catalog needs
    `task` (and an owner/name id); s3 and url need a `name` to manage the files by (s3 a `task` too). Which
    sources may be fetched from is settings (403)."""
    hub = {"enum": ["huggingface"]}  # the default source
    not_s3 = {"type": "string", "not": {"pattern": "^s3://"}}  # an s3:// model_id is read as source=s3
    schema["anyOf"] = [
        {"required": ["source"], "properties": {"source": {"enum": list(MAPPED_SOURCES)}, "model_id": not_s3}},
        {"properties": {"source": hub, "model_id": not_s3, "task": {"type": "null"}}},
        {"allOf": [given("task"), given("model_id", pattern=HUB_REPO_ID, maxLength=HUB_REPO_MAX)],
         "properties": {"source": hub}},
        {"allOf": [given("source", enum=["s3"]), given("model_id", pattern=S3_PREFIX, maxLength=S3_PREFIX_MAX),
                   given("name"), given("task")]},
        {"allOf": [given("source", enum=["url"]), given("model_id", pattern=URL_PATTERN), given("name")]},
    ]


class DownloadRequest(BaseModel):
    """POST /models/download, as seed 001 writes it."""

    model_config = ConfigDict(extra="ignore", json_schema_extra=download_rules)

    # an enum in the spec, checked by check_source so that a refusal lists the sources
    source: str = Field("huggingface", json_schema_extra={"enum": list(SUPPORTED_SOURCES)})
    model_id: str = Field(min_length=1, description="Catalog id/alias/hub repo id, the URL for source=url, "
                          "s3://bucket/prefix for source=s3 (a folder laid out as the hub repo would be), or a "
                          "torchvision / torch.hub name such as 'resnet50' or 'pytorch/vision:v0.10.0/resnet50'.")
    name: str | None = Field(None, json_schema_extra={"pattern": NAME_SCHEMA_PATTERN, "maxLength": NAME_MAX},
                             description="Name to manage it by; a catalog model keeps its catalog id.")
    task: str | None = Field(None, json_schema_extra=catalog_tasks, description="A task or its alias; needed for "
                             "a hub repo outside the catalog; seed 001's 'text-generation' means chat.")
    revision: str = "main"
    include_vocoder: bool = False
    vocoder_model: str | None = Field(None, json_schema_extra={"pattern": f"{HUB_REPO_ID}|{S3_PREFIX}"},
                                      description="A hub repo id: with include_vocoder, downloaded beside the model.")
    sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$", description="Checked for source=url.")
    max_size_mb: float | None = Field(None, gt=0, description="Refuse a url download larger than this.")
    enable_large_model: bool = Field(False, description="Needed for a model that needs more GPU memory than "
                                     "INFERENCE_LARGE_MODEL_GB.")
    experimental: bool = Field(False, description="Needed for a model the catalog marks experimental.")
    load: bool = Field(True, description="Load the model once its files are here (seed 001: download and "
                       "load); false: only download it. A model this profile does not deploy is only downloaded.")
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
            repos = [HubRepo(repo_id=body.model_id, revision=body.revision, allow_patterns=RUNTIME_FILES)]
        except ValidationError:
            raise InvalidRequest(f"model_id must be a hub repo id like 'owner/name', got {body.model_id!r}") from None
        key = check_name((body.name or body.model_id.replace("/", "--")).lower())
    if body.include_vocoder and body.vocoder_model and all(r.repo_id != body.vocoder_model for r in repos):
        try:
            repos.append(HubRepo(repo_id=body.vocoder_model, role="vocoder", allow_patterns=RUNTIME_FILES))
        except ValidationError:
            raise InvalidRequest(f"vocoder_model must be a hub repo id, got {body.vocoder_model!r}") from None
    check_sources(services, [r for r in repos if r.allow_patterns == RUNTIME_FILES])
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
    check_sources(services, [repo])
    return check_name(body.name.lower()), [repo], task, None


def source_of(repo: HubRepo) -> str:
    """A repo's source as INFERENCE_RUNTIME_MODEL_SOURCES names it: its hub organisation, or s3://bucket."""
    return "s3://" + repo.repo_id[5:].split("/")[0] if repo.is_s3 else repo.repo_id.split("/")[0]


def check_sources(services: Services, repos: list[HubRepo]) -> None:
    """403 for a repo outside the catalog from a source the settings do not allow (by default the
    catalog's own organisations and buckets): the service would fetch and run whatever it holds."""
    allowed = set(services.settings.runtime_model_sources) or {
        source_of(repo) for entry in services.catalog.base.models.values() for repo in entry.repos}
    for repo in repos:
        if "*" not in allowed and source_of(repo) not in allowed:
            raise SourceNotAllowed(f"Models added at run time may come from {', '.join(sorted(allowed))}; "
                                   f"'{source_of(repo)}' ({repo.repo_id}) is not one of them "
                                   "(INFERENCE_RUNTIME_MODEL_SOURCES)")


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


async def check_room(services: Services, repos: list[HubRepo]) -> None:
    """507 with the numbers when the repos' missing bytes would pass the cache quota or the disk's free space
    (sizes the hub or bucket cannot tell are not counted)."""
    if not repos:
        return
    sizes, info = await asyncio.gather(services.manager.repo_sizes.remote(repos), services.manager.cache_info.remote())
    on_disk = {(r["repo_id"], r["repo_type"]): r["size_bytes"] for r in info["repos"]}
    need = sum(max(0, (size or 0) - on_disk.get((repo.repo_id, repo.repo_type), 0)) for repo, size in zip(repos, sizes))
    used = sum(on_disk.values()) + sum(u["size_bytes"] for u in info["url_downloads"])
    quota = services.settings.model_cache_max_bytes
    if quota and need and used + need > quota:
        raise InsufficientStorage(f"Downloading needs {mb(need)} MB more; the model cache holds {mb(used)} MB of its "
                                  f"{mb(quota)} MB quota (INFERENCE_MODEL_CACHE_MAX_BYTES). Delete a model first "
                                  "(DELETE /models/download/{name})")
    free = (await asyncio.to_thread(shutil.disk_usage, info["cache_directory"])).free
    if need > free:
        raise InsufficientStorage(f"Downloading needs {mb(need)} MB; the model cache's disk has {mb(free)} MB free")
