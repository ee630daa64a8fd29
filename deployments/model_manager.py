"""ModelManager: the one writer of the model cache, a named detached Ray actor.

Every deployment calls `ensure` before loading weights. Concurrent callers for the same model
share one download (one fetch per file, however many replicas ask), and the manager keeps each
model's status and byte progress for the management API. Files land in the Hugging Face cache
layout through huggingface_hub itself, which writes `*.incomplete` blobs and renames them only
when whole, so a failed download leaves no half-written file in a snapshot.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import ray

from deployments.errors import ModelUnavailable
from deployments.settings import ServiceSettings
from registry import HubRepo

logger = logging.getLogger(__name__)

DOWNLOAD_STATUSES = ("pending", "downloading", "completed", "failed", "cancelled")


@dataclass
class DownloadRecord:
    """What the manager knows about one model's files."""

    model: str
    repos: list[HubRepo]
    status: str = "pending"
    bytes_total: int = 0
    bytes_done: int = 0
    error: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    paths: dict[str, str] = field(default_factory=dict)
    callers: int = 0  # ensure() calls that waited on this download

    def view(self) -> dict:
        progress = 100.0 if self.status == "completed" else (
            round(100.0 * self.bytes_done / self.bytes_total, 1) if self.bytes_total else 0.0
        )
        data = asdict(self)
        data["repos"] = [repo.repo_id for repo in self.repos]
        return {**data, "progress": progress}


@ray.remote(num_cpus=0, max_restarts=-1)
class ModelManager:
    def __init__(self, settings: ServiceSettings):
        self._settings = settings
        self._records: dict[str, DownloadRecord] = {}
        self._downloads: dict[str, asyncio.Task] = {}
        settings.cache_dir.mkdir(parents=True, exist_ok=True)

    async def ensure(self, model: str, repos: list[HubRepo]) -> dict[str, str]:
        """Local snapshot folder per repo role ('weights', 'vocoder', ...), downloading once."""
        record = self._records.get(model)
        if record and record.status == "completed" and all(os.path.isdir(p) for p in record.paths.values()):
            return record.paths
        download = self._downloads.get(model)
        if download is None or download.done():
            record = self._records[model] = DownloadRecord(model=model, repos=list(repos))
            download = self._downloads[model] = asyncio.create_task(self._download(record))
        self._records[model].callers += 1
        # shield: one caller going away must not cancel the download the others wait on
        return await asyncio.shield(download)

    def status(self, model: str | None = None) -> dict | list[dict]:
        """Status and byte progress of one model, or of every model asked for so far."""
        if model is not None:
            record = self._records.get(model)
            return self._view(record) if record else {"model": model, "status": "unknown"}
        return [self._view(record) for record in self._records.values()]

    def _view(self, record: DownloadRecord) -> dict:
        if record.status == "downloading":  # bytes so far, read off the cache's blobs
            record.bytes_done = min(record.bytes_total, sum(self._bytes_on_disk(r) for r in record.repos))
        return record.view()

    async def _download(self, record: DownloadRecord) -> dict[str, str]:
        record.status, record.started_at = "downloading", time.time()
        try:
            sizes = await asyncio.gather(*(asyncio.to_thread(self._repo_size, r) for r in record.repos))
            record.bytes_total = sum(sizes)
            for repo in record.repos:
                record.paths[repo.role] = await asyncio.to_thread(self._snapshot, repo)
        except Exception as exc:  # any failure is reported as the model's status
            record.status, record.error, record.finished_at = "failed", f"{type(exc).__name__}: {exc}", time.time()
            logger.warning("download of %s failed: %s", record.model, record.error)
            raise ModelUnavailable(
                f"Model '{record.model}' could not be downloaded: {record.error}", error="Download failed"
            ) from None
        record.status, record.bytes_done, record.finished_at = "completed", record.bytes_total, time.time()
        logger.info("model %s ready (%d bytes) in %.1fs", record.model, record.bytes_total,
                    record.finished_at - record.started_at)
        return record.paths

    def _repo_size(self, repo: HubRepo) -> int:
        from huggingface_hub import HfApi
        from huggingface_hub.hf_api import RepoFile

        api = HfApi(endpoint=self._settings.hub_endpoint, token=self._settings.hub_token)
        files = api.list_repo_tree(repo.repo_id, revision=repo.revision, repo_type=repo.repo_type, recursive=True)
        return sum(f.size for f in files if isinstance(f, RepoFile))

    def _snapshot(self, repo: HubRepo) -> str:
        from huggingface_hub import snapshot_download

        return snapshot_download(
            repo.repo_id,
            revision=repo.revision,
            repo_type=repo.repo_type,
            cache_dir=self._settings.cache_dir,
            endpoint=self._settings.hub_endpoint,
            token=self._settings.hub_token,
            max_workers=self._settings.download_workers,
        )

    def _bytes_on_disk(self, repo: HubRepo) -> int:
        from huggingface_hub.file_download import repo_folder_name

        blobs = Path(self._settings.cache_dir) / repo_folder_name(repo_id=repo.repo_id, repo_type=repo.repo_type) / "blobs"
        return sum(p.stat().st_size for p in blobs.glob("*")) if blobs.is_dir() else 0


def get_model_manager(settings: ServiceSettings) -> ray.actor.ActorHandle:
    """The cluster's one ModelManager, created by whichever caller comes first."""
    return ModelManager.options(
        name=settings.manager_name,
        namespace=settings.manager_namespace,
        lifetime="detached",
        get_if_exists=True,
    ).remote(settings)
