"""Service settings from the environment (pydantic-settings), read once when the app is built.

The app builder passes this object to every deployment, so all replicas agree on the cache and
hub even when they run in processes that did not inherit the launching shell's environment.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _default_data_dir() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME", "~/.local/share")).expanduser() / "ray-inference"


def _default_cache_dir() -> Path:
    hub_cache = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME", "~/.cache/huggingface"), "hub"
    )
    return Path(hub_cache).expanduser()


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INFERENCE_", extra="ignore", frozen=True, populate_by_name=True)

    cache_dir: Path = Field(
        default_factory=_default_cache_dir,
        description="Model cache (Hugging Face cache layout); shared storage on a cluster.",
    )
    cache_layout: Literal["shared", "per-node"] = Field(
        "shared",
        description="shared: every node mounts cache_dir. per-node: each node keeps its own copy (at "
        "INFERENCE_NODE_CACHE_DIR in the node's environment, else cache_dir), fetched once per node.",
    )
    hub_endpoint: str | None = Field(
        default_factory=lambda: os.environ.get("HF_ENDPOINT"),
        description="Hugging Face Hub URL; defaults to HF_ENDPOINT, else huggingface.co.",
    )
    hub_token: str | None = Field(  # HF_API_KEY: seed 003's name for it
        default_factory=lambda: os.environ.get("HF_TOKEN") or os.environ.get("HF_API_KEY"), repr=False)
    catalog_path: Path | None = Field(None, description="Catalog file; default registry/catalog.yaml.")
    manager_name: str = Field("model-manager", description="Name of the detached ModelManager actor.")
    manager_namespace: str = Field("inference", description="Ray namespace of the ModelManager actor.")
    download_workers: int = Field(8, gt=0, description="Parallel file downloads per model.")
    download_attempts: int = Field(4, gt=0, description="Tries of a download that fails transiently (5xx, 429, "
                                   "a dropped connection) before it is failed; 1 = no retries.")
    large_model_gb: float = Field(10.0, ge=0, description="A model needing more GPU memory than this is large: "
                                  "POST /models/download fetches it only with enable_large_model: true (seed 001).")
    download_estimate_mb_per_s: float = Field(20.0, gt=0, description="Download speed the estimated_time of a "
                                              "starting download assumes until a download here has measured one.")
    download_retry_base_seconds: float = Field(1.0, ge=0, description="Wait before the first retry; doubled "
                                               "for each next one (1, 2, 4 s), up to download_retry_max_seconds.")
    download_retry_max_seconds: float = Field(8.0, ge=0, description="Longest wait between tries, a 429's "
                                              "Retry-After included.")
    cpu_threads: int = Field(
        0, ge=0, description="Torch threads per CPU replica; 0 = every core but one, which is left to "
        "the HTTP proxy and ingress. Ray would otherwise set OMP_NUM_THREADS to the replica's num_cpus.",
    )
    cpu_dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "float32", description="Weights of a chat, captioning or vision-language model on a CPU replica; "
        "auto = bfloat16 where the CPU multiplies bfloat16 natively (AMX or AVX512-BF16: 2-3x faster decoding, "
        "half the memory), else float32.",
    )
    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Job store on one machine: uploads, job records (SQLite) and result files, on local disk; "
        "with job_database_url and storage_url set, only scratch space for staging files.",
    )
    job_database_url: str | None = Field(
        None, repr=False,
        description="Job records: None = SQLite in data_dir (one machine, local disk only); on a cluster "
        "postgresql://user:password@host/db (psycopg 3), shared by every node.",
    )
    storage_url: str | None = Field(
        None, description="Uploads and result files: None = data_dir (local disk); s3://bucket/prefix puts them "
        "in an S3-compatible store every node reaches, with presigned download URLs.",
    )
    s3_endpoint_url: str | None = Field(
        default_factory=lambda: os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"),
        description="S3 API endpoint for storage_url and s3:// models (MinIO, SeaweedFS, ...); None = AWS.",
    )
    s3_access_key_id: str | None = Field(default_factory=lambda: os.environ.get("AWS_ACCESS_KEY_ID"), repr=False)
    s3_secret_access_key: str | None = Field(
        default_factory=lambda: os.environ.get("AWS_SECRET_ACCESS_KEY"), repr=False)
    s3_region: str = Field(default_factory=lambda: os.environ.get("AWS_REGION", "us-east-1"))
    presigned_url_seconds: int = Field(3600, gt=0, description="How long a result file's presigned URL works.")
    max_upload_bytes: int = Field(200 * 1024 * 1024, gt=0, description="Largest accepted upload.")
    job_heartbeat_seconds: float = Field(2.0, gt=0, description="How often a running job proves it is alive.")
    job_lease_seconds: float = Field(
        30.0, gt=0, description="A running job silent this long is taken as lost and re-queued."
    )
    job_max_attempts: int = Field(3, gt=0, description="Times a job is started before it is failed.")
    job_sweep_seconds: float = Field(5.0, gt=0, description="How often the ingress looks for lost jobs.")
    job_retention_seconds: float = Field(7 * 86400.0, gt=0, description="Finished jobs (rows and result files) "
                                         "this long finished are deleted by the ingress' retention sweep.")
    upload_retention_seconds: float = Field(
        86400.0, gt=0, description="Uploads older than this are deleted, except a saved voice's sample and an "
        "upload a pending or running job reads.")
    retention_sweep_seconds: float = Field(600.0, gt=0, description="How often the retention sweep runs (and "
                                           "once at start, with staging folders a crash left).")
    runtime_model_sources: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated hub organisations (e.g. Qwen) and S3 buckets "
        "(s3://bucket) that models added at run time may come from, or * for any. Empty (the default): the "
        "organisations and buckets the catalog's own models come from, no other.")
    model_cache_max_bytes: int = Field(0, ge=0, description="Quota of the model cache: a download that would "
                                       "pass it is refused with 507; 0 = only the disk's free space bounds it.")
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, repr=False,
        description="Comma-separated user keys. With any key configured (user or admin) every route but GET "
        "/health and the console's files needs one (Authorization: Bearer <key> or X-API-Key), and each key "
        "sees only the jobs, uploads, results and voices it created.",
    )
    admin_api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, repr=False,
        description="Comma-separated admin keys: everything a user key may, and they alone download, delete or "
        "manage models, switch current models and add run-time models.",
    )
    allow_open_network: bool = Field(
        False, description="Serve on a non-loopback address with no API key configured (the launcher refuses "
        "that otherwise): only behind something else that authenticates.",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["http://localhost:3000"],
        validation_alias=AliasChoices("INFERENCE_CORS_ORIGINS", "ALLOWED_ORIGINS"),
        description="Comma-separated origins allowed by CORS, or * for any; ALLOWED_ORIGINS is seed 003's name. "
        "Default http://localhost:3000 (seed 003's: a web front end in development); empty for none.",
    )
    log_level: str = Field("INFO", validation_alias=AliasChoices("INFERENCE_LOG_LEVEL", "LOG_LEVEL"),
                           description="Level of the service's own loggers (DEBUG, INFO, WARNING, ERROR); "
                           "LOG_LEVEL is seed 003's name.")

    cold_start_wait_seconds: float = Field(
        120.0, ge=0, description="How long a request waits for a model scaled to zero to start and load "
        "(a request may ask for less with `Prefer: wait=N`); past it, 503 with Retry-After.")
    request_timeout_seconds: float = Field(
        120.0, gt=0, validation_alias=AliasChoices("INFERENCE_REQUEST_TIMEOUT_SECONDS", "REQUEST_TIMEOUT"),
        description="How long an inference request may run on its model (after any cold start) before it is "
        "cancelled with a 504 TIMEOUT_ERROR; REQUEST_TIMEOUT is seed 003's name. Jobs are not bound by it.")
    idle_after_seconds: float = Field(60.0, gt=0, description="A loaded model unused this long shows as idle.")
    realtime_max_sessions: int = Field(8, gt=0, description="Realtime WebSocket sessions (/v1/realtime) one "
                                       "ingress replica holds at once; one more is told to retry (close 1013).")
    realtime_session_seconds: int = Field(1800, gt=0, description="Longest a realtime session stays open.")
    realtime_idle_seconds: float = Field(120.0, gt=0, description="A realtime session whose client sends no "
                                         "event this long is closed.")
    realtime_buffer_seconds: float = Field(120.0, gt=0, description="Uncommitted audio a realtime session "
                                           "buffers at most; an append past it is refused.")
    realtime_event_bytes: int = Field(4 * 1024 * 1024, gt=0, description="Largest client event of a realtime "
                                      "session (an append of 24 kHz PCM: 64 KiB per second of audio).")
    pool_max_models: int = Field(
        2, gt=0, description="Models one replica of a family pool (models added at run time) holds; the "
        "least recently used is unloaded to load another.")

    fetch_timeout_seconds: float = Field(
        10.0, gt=0, description="Time limit for fetching a URL a request names (image_url, audio_prompt_url): "
        "connecting, the headers and the body together. A url download must have its headers within it.")
    download_min_bytes_per_second: int = Field(
        32 * 1024, ge=0, description="A url download slower than this over any 30 s is stopped (a server that "
        "trickles would hold it for ever); 0 = no minimum.")
    image_max_bytes: int = Field(20 * 1024 * 1024, gt=0, description="Largest image accepted, uploaded or fetched.")
    private_url_allowlist: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated networks (CIDR) that URLs in requests may reach although they are "
        "private, loopback or link-local, e.g. 10.0.0.0/8 for an internal image store; none by default.",
    )

    # media limits: bodies are capped per route (deployments/ingress/body_limits.py), none above max_upload_bytes;
    # audio is measured from its header and refused before it is decoded (deployments/media/audio.py's defaults)
    max_json_bytes: int = Field(1024 * 1024, gt=0, description="Largest JSON body; routes that carry a base64 "
                                "voice sample add audio_max_bytes x 4/3 to it.")
    audio_max_bytes: int = Field(25 * 1024 * 1024, gt=0, description="Largest audio file sent to a route "
                                 "(/api/stt, /v1/audio/*, voice samples): OpenAI's 25 MB. /upload takes "
                                 "max_upload_bytes.")
    audio_max_duration_seconds: float = Field(
        4 * 3600.0, gt=0, description="Longest audio any route accepts; uploads are stored before a model is "
        "chosen, so each model's catalog max_duration_seconds (Whisper: 3 h) is checked again when it is used.")
    audio_max_channels: int = Field(8, gt=0, description="Most audio channels (7.1 surround); more is refused.")
    audio_max_sample_rate: int = Field(192_000, gt=0, description="Highest audio sample rate, Hz.")
    audio_max_decoded_samples: int = Field(
        1_036_800_000, gt=0, description="Most samples (frames x channels) one audio file may decode to: 3 h of "
        "48 kHz stereo. Decoding reads blocks and stops past it, so no process holds more than this many "
        "float32 (a voice sample: only its mono audio, at most the model's sample length).")

    @field_validator("api_keys", "admin_api_keys", "runtime_model_sources", "cors_origins", "private_url_allowlist",
                     mode="before")
    @classmethod
    def _comma_separated(cls, value):
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError(f"'{value}' is not a log level; use DEBUG, INFO, WARNING or ERROR")
        return level

    @field_validator("cache_dir", "data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        """Replicas run in other working directories: pin relative paths to the launching one."""
        return value.expanduser().resolve()

    def apply_log_level(self) -> None:
        """Set the level of the service's loggers (`deployments.*`, `registry.*`) in this process."""
        for name in ("deployments", "registry"):
            logging.getLogger(name).setLevel(self.log_level)
