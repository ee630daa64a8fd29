"""What seed 001's model management routes (management_routes.py) answer, for the OpenAPI spec."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from deployments.ingress.replies import Absent, LoadStats, ModelLifecycle, TtsFeatures


class DownloadInfo(BaseModel):
    download_id: str
    model_type: str | None = Field(description="'tts' for a speech model, else its task.")
    task: str | None
    description: str | None = Field(description="A catalog model's description.")
    estimated_size_mb: float | None = Field(description="From the hub's file sizes; None when unknown.")
    supports_voice_cloning: bool
    repos: list[str] = Field(description="The hub repos (or s3:// prefixes) it downloads.")
    url: str | None = Field(description="source=url: the URL.")
    vocoder_included: bool
    vocoder_models: list[str]
    tts_conversion: str | None = Field(description="What became of auto_convert_tts (None: not asked).")


class DownloadStarted(BaseModel):
    success: bool
    download_id: str = Field(description="Poll GET /models/download/status/{download_id}.")
    message: str
    model_name: str = Field(description="The name the model is managed by (a catalog model's id).")
    source: str
    model_id: str = Field(description="As the request gave it.")
    status: str = Field(description="pending, downloading, completed, failed, or already_exists (in the cache).")
    estimated_time: str | None = Field(description="A starting download's time in words ('about 3 minutes').")
    load: str = Field(description="Whether the model is loaded once downloaded, in words.")
    download_info: DownloadInfo


class DownloadStatus(BaseModel):
    success: bool = Field(description="False once the download failed or was cancelled.")
    download_id: str
    model_name: str
    status: str = Field(description="pending, downloading, completed, failed or cancelled.")
    progress: float = Field(description="Percent, 0-100.")
    eta: float | None = Field(description="Seconds left, while downloading.")
    message: str
    error: str | None
    bytes_done: int
    bytes_total: int
    attempt: int = Field(description="Tries so far; transient failures are retried with backoff.")
    next_retry_at: float | None = Field(description="Epoch seconds of the next try, while waiting for it.")


class ModelRemoved(BaseModel):
    success: bool
    message: str
    model_name: str
    removed_paths: list[str] = Field(description="What was deleted (and a run-time model's registration).")
    unloaded: bool = Field(description="A replica unloaded it now (the others drop it on next use).")


class AvailableModel(BaseModel):
    name: str
    display_name: str
    source: Literal["s3", "huggingface"]
    model_id: str = Field(description="Hub repo id or s3:// prefix.")
    companions: list[str]
    task: str
    family: str
    description: str
    size_bytes: int | None = Field(description="The hub's file sizes summed; None when it cannot tell.")
    size_mb: float | None
    tags: list[str]
    capabilities: list[str]
    quality: str | None
    speed: str | None
    experimental: bool
    large: bool = Field(description="Needs more GPU memory than INFERENCE_LARGE_MODEL_GB: enable_large_model.")
    tts_features: TtsFeatures
    downloaded: bool


class DownloadRecommendations(BaseModel):
    beginners: list[str]
    advanced: list[str]
    fast_setup: list[str]
    highest_quality: list[str]
    task_defaults: dict[str, str]
    family_defaults: dict[str, str]
    smallest_per_task: dict[str, str | None] = Field(description="None: no size known for the task's models.")


class AvailableModels(BaseModel):
    success: bool
    available_models: dict[str, AvailableModel]
    total_available: int
    supported_sources: list[str]
    categories: dict[str, list[str]] = Field(description="Model ids by task, and seed 001's tts_models / "
                                             "general_models split.")
    popular_tts_models: list[str]
    download_recommendations: DownloadRecommendations


class MemoryUsage(BaseModel):
    allocated_mb: float
    reserved_mb: float


class ReplicaModel(BaseModel):
    """A loaded model as its replica reports it."""

    name: str
    loaded: bool
    device: str = Field(description="cpu, cuda:0...")
    optimized: bool
    optimization: str | None = Field(description="float16 (GPU) or dynamic-int8 (CPU) once optimized.")
    memory_usage: MemoryUsage
    weight_bytes: int
    parameters: int
    dtypes: list[str]
    load: LoadStats
    idle_s: float = Field(description="Seconds since the replica last used it.")


class ReplicaCopy(BaseModel):
    replica: str
    deployment: str
    node_id: str
    device: str
    optimized: bool
    optimization: str | None
    memory_usage: MemoryUsage
    load: LoadStats
    idle_s: float


class ManagedModel(ReplicaModel):
    """A model some replica holds: its first copy's report, and every copy in `replicas`."""

    replica: str
    node_id: str
    deployment: str
    family: str | None = Field(description="The kind of deployment that runs it; None: not a catalog model.")
    is_tts: bool
    task: str | None
    replica_count: int
    replicas: list[ReplicaCopy]
    lifecycle: ModelLifecycle | None


class LoadedModelBrief(BaseModel):
    name: str
    loaded: bool
    optimized: bool | Absent = Field(None, description="In the per-task lists.")
    is_tts: bool


class ManagedSummary(BaseModel):
    total_loaded: int
    tts_models_count: int
    optimized_count: int
    total_parameters: int
    replicas_reporting: int
    states: dict[str, int] = Field(description="Deployed models by lifecycle state.")


class ManagedModels(BaseModel):
    success: bool
    total_models: int
    downloaded_models: list[ManagedModel] = Field(description="Every model a replica holds loaded.")
    categories: dict[str, list[LoadedModelBrief]] = Field(description="By '{task}_models', and seed 001's "
                                                          "tts_models / other_models.")
    summary: ManagedSummary
    lifecycles: dict[str, ModelLifecycle] = Field(description="Every deployed model's.")
    unavailable_deployments: dict[str, str | None] = Field(description="Failed models and why.")


class CacheEntry(BaseModel):
    """A hub repo in the cache, or a url download (source url: no repo fields)."""

    name: str = Field(description="The catalog models that use it (or the repo id), comma-separated.")
    models: list[str]
    source: Literal["huggingface", "url"]
    repo_id: str | Absent = None
    repo_type: str | Absent = None
    size_bytes: int
    files: int
    revisions: list[str] | Absent = None
    last_modified: float | Absent = Field(None, description="Epoch seconds.")
    path: str
    size_mb: float | None


class TtsCacheEntry(BaseModel):
    name: str
    size_mb: float | None
    source: str
    task: str
    tags: list[str]


class TtsShare(BaseModel):
    tts_models_count: int
    tts_models: list[TtsCacheEntry]
    tts_total_size_mb: float | None
    tts_percentage: float


class CacheOptimization(BaseModel):
    cache_hit_rate: float | None = Field(description="Share of download requests the cache answered without "
                                         "fetching; None before the first.")
    optimization_enabled: bool = Field(description="POST /models/manage?action=optimize.")
    auto_cleanup: bool = Field(description="Always false: the cache is never pruned behind a user's back.")


class CacheInfo(BaseModel):
    success: bool
    cache_directory: str
    quota_bytes: int | None = Field(description="INFERENCE_MODEL_CACHE_MAX_BYTES; None: the disk alone bounds it.")
    quota_mb: float | None
    free_bytes: int
    total_models: int
    total_size_bytes: int
    total_size_mb: float | None
    models: list[str]
    entries: list[CacheEntry]
    tts_specific: TtsShare
    cache_optimization: CacheOptimization


class ModelOptimized(BaseModel):
    """action optimize."""

    success: bool
    message: str
    action: Literal["optimize"]
    model_name: str
    model: ReplicaModel = Field(description="The copy in the replica the request reached, optimized.")


class DownloadRestarted(BaseModel):
    """action retry_download or update."""

    success: bool
    message: str
    action: Literal["retry_download", "update"]
    model_name: str
    download_id: str
    status: str
