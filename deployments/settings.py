"""Service settings from the environment (pydantic-settings), read once when the app is built.

The app builder passes this object to every deployment, so all replicas agree on the cache and
hub even when they run in processes that did not inherit the launching shell's environment.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_cache_dir() -> Path:
    hub_cache = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME", "~/.cache/huggingface"), "hub"
    )
    return Path(hub_cache).expanduser()


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INFERENCE_", extra="ignore", frozen=True)

    cache_dir: Path = Field(
        default_factory=_default_cache_dir,
        description="Model cache (Hugging Face cache layout); shared storage on a cluster.",
    )
    hub_endpoint: str | None = Field(
        default_factory=lambda: os.environ.get("HF_ENDPOINT"),
        description="Hugging Face Hub URL; defaults to HF_ENDPOINT, else huggingface.co.",
    )
    hub_token: str | None = Field(default_factory=lambda: os.environ.get("HF_TOKEN"), repr=False)
    catalog_path: Path | None = Field(None, description="Catalog file; default registry/catalog.yaml.")
    manager_name: str = Field("model-manager", description="Name of the detached ModelManager actor.")
    manager_namespace: str = Field("inference", description="Ray namespace of the ModelManager actor.")
    download_workers: int = Field(8, gt=0, description="Parallel file downloads per model.")
    cpu_threads: int = Field(
        0, ge=0, description="Torch threads per CPU replica; 0 = every core but one, which is left to "
        "the HTTP proxy and ingress. Ray would otherwise set OMP_NUM_THREADS to the replica's num_cpus.",
    )
