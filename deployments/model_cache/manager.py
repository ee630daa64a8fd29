"""ModelManager: the one writer of the model cache, a named detached Ray actor.

Every deployment calls `ensure` before loading weights. Concurrent callers for the same model
share one download (one fetch per file, however many replicas ask), and the manager keeps each
model's status and byte progress for the management API. Files land in the Hugging Face cache
layout through huggingface_hub itself, which writes `*.incomplete` blobs and renames them only
when whole, so a failed download leaves no half-written file in a snapshot.

The management API (seed 001) uses `start` (a download id at once), `download_status`, `cancel`,
`restart` (retry/update), `remove` and `cache_info`. Cancelling stops huggingface_hub's download
threads at their next chunk (through the progress class it reports chunks to) and deletes the
partial blobs. `url` downloads (url_downloads.py) and `s3://` prefixes (object_storage.py) land
through hidden `*.incomplete` files renamed only when whole, the same way.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import threading
import time
import uuid
from pathlib import Path

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from deployments.errors import HubError, ModelUnavailable
from deployments.model_cache.conversions import convert_once, converted_root
from deployments.model_cache.download_records import DownloadRecord, forget, recall, remember
from deployments.model_cache.download_retries import with_retries
from deployments.model_cache.hub_snapshots import commit_of, remove_orphaned_partials, snapshot
from deployments.model_cache.url_downloads import fetch_url
from deployments.serving.service_metrics import DownloadGauges
from deployments.settings import ServiceSettings
from deployments.state import object_storage
from deployments.state.safe_paths import check_name, inside
from registry import HubRepo

logger = logging.getLogger(__name__)


# Restarted when it dies; calls in flight then are re-run on the new instance (every method is safe to
# repeat: a download it had under way starts again and resumes from the partial file huggingface_hub kept).
@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class ModelManager:
    def __init__(self, settings: ServiceSettings):
        self._settings = settings = on_this_node(settings)
        self._node_id = ray.get_runtime_context().get_node_id()
        self._node_copies: dict[tuple[str, str], asyncio.Task] = {}  # (node, model) -> its copy
        self._conversions: dict[tuple[str | None, str, str], asyncio.Task] = {}  # (node, model, conversion)
        self._records: dict[str, DownloadRecord] = {}
        self._downloads: dict[str, asyncio.Task] = {}
        self._stops: dict[str, threading.Event] = {}  # model -> set to stop its download threads mid-file
        self._ids: dict[str, str] = {}  # download id -> model, for the status API
        self._latest_ids: dict[str, str] = {}  # model -> its newest download id (what GET /models shows)
        self._url_args: dict[str, dict] = {}  # model -> its url download's arguments, for retries
        self._sizes: dict[tuple[str, str, str], int | None] = {}  # hub repo -> bytes, for /models/available
        self._asked = [0, 0]  # download requests (start), and those the cache already answered
        self._gauges = DownloadGauges()  # published at every status read (the ingress reads it every 10 s)
        settings.cache_dir.mkdir(parents=True, exist_ok=True)
        remove_orphaned_partials(settings.cache_dir)
        self._records.update({record.model: record for record in recall(settings.cache_dir)})

    async def ensure(self, model: str, repos: list[HubRepo], node_id: str | None = None) -> dict[str, str]:
        """Snapshot folder per repo role ('weights', 'vocoder', ...), downloading once; with the
        per-node layout, folders on `node_id`'s own disk, copied there once per node."""
        paths = await self._ensure_here(model, repos)
        if self._settings.cache_layout == "shared" or node_id in (None, self._node_id):
            return paths
        copy = self._node_copies.get((node_id, model))
        if copy is None or (copy.done() and (copy.cancelled() or copy.exception())):
            copier = NodeCopier.options(  # type: ignore[attr-defined]
                name=f"model-copier-{node_id}", namespace=self._settings.manager_namespace, lifetime="detached",
                get_if_exists=True, scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
            ).remote(self._settings)
            copy = self._node_copies[(node_id, model)] = asyncio.ensure_future(copier.snapshot.remote(list(repos)))
        return await asyncio.shield(copy)

    async def convert(self, model: str, repos: list[HubRepo], conversion: str, node_id: str | None = None) -> str:
        """The folder of `model`'s weights converted by `conversion` (conversions.py) for an engine that
        reads no hub checkpoint, converted once per model, conversion and snapshot (callers at the same
        time share it); with the per-node layout, on `node_id`'s own disk by its copier."""
        paths = await self.ensure(model, repos, node_id)
        per_node = self._settings.cache_layout != "shared" and node_id not in (None, self._node_id)
        key = (node_id if per_node else None, model, conversion)
        work = self._conversions.get(key)
        if work is None or (work.done() and (work.cancelled() or work.exception())):
            if per_node:
                copier = NodeCopier.options(  # type: ignore[attr-defined]
                    name=f"model-copier-{node_id}", namespace=self._settings.manager_namespace, get_if_exists=True,
                    lifetime="detached", scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
                ).remote(self._settings)
                work = asyncio.ensure_future(copier.convert.remote(model, paths["weights"], conversion))
            else:
                work = asyncio.ensure_future(asyncio.to_thread(
                    convert_once, self._settings.cache_dir, model, paths["weights"], conversion))
            self._conversions[key] = work
            work.add_done_callback(_retrieve)
        return await asyncio.shield(work)

    async def _ensure_here(self, model: str, repos: list[HubRepo]) -> dict[str, str]:
        if self._ready(model):
            return self._records[model].paths
        download = self._task_for(model, list(repos))
        self._records[model].callers += 1
        try:  # shield: one caller going away must not cancel the download the others wait on
            return await asyncio.shield(download)
        except asyncio.CancelledError:
            if download.cancelled():
                raise ModelUnavailable(f"The download of '{model}' was cancelled", error="Download cancelled") from None
            raise

    def _ready(self, model: str) -> bool:
        record = self._records.get(model)
        return bool(record and record.status == "completed" and record.paths
                    and all(os.path.exists(p) for p in record.paths.values()))

    def _task_for(self, model: str, repos: list[HubRepo], url: dict | None = None,
                  task: str | None = None, fresh: bool = False) -> asyncio.Task:
        """The running download of `model`, or a new one: callers at the same time share it."""
        download = self._downloads.get(model)
        if fresh or download is None or download.done():
            if download is not None and not download.done():
                self._stop(model)
            record = self._records[model] = DownloadRecord(model=model, repos=repos, task=task,
                                                           url=url["url"] if url else None)
            stop = self._stops[model] = threading.Event()
            work = self._download_url(record, stop, **url) if url else self._download(record, stop)
            download = self._downloads[model] = asyncio.create_task(work)
            download.add_done_callback(_retrieve)  # failures are reported by status, not logged as lost
        return download

    # --- the management API (seed 001): start without waiting, poll by download id ---

    async def start(self, model: str, repos: list[HubRepo], *, url: dict | None = None, task: str | None = None,
              fresh: bool = False) -> dict:
        """A download id for `model` at once; the download runs (or is joined) in the background."""
        download_id = uuid.uuid4().hex[:12]
        self._ids[download_id] = model
        self._latest_ids[model] = download_id
        if url:
            self._url_args[model] = url
        self._asked[0] += 1
        if self._ready(model) and not fresh:
            self._asked[1] += 1
            return {"download_id": download_id, **self._records[model].view(), "status": "already_exists"}
        self._task_for(model, repos, url=url, task=task, fresh=fresh)
        self._records[model].callers += 1
        return {"download_id": download_id, **self._view(self._records[model])}

    async def restart(self, model: str, repos: list[HubRepo] | None = None, fresh: bool = False) -> dict | None:
        """Download `model` again from what it was last asked with (retry_download, update); None if never asked."""
        record = self._records.get(model)
        if record is None and not repos and model not in self._url_args:
            return None
        return await self.start(model, record.repos if record else list(repos or []), url=self._url_args.get(model),
                          task=record.task if record else None, fresh=fresh)

    async def repo_sizes(self, repos: list[HubRepo]) -> list[int | None]:
        """Bytes of each repo at its revision, as the hub lists them (remembered; None if the hub can't say)."""
        async def size(repo: HubRepo) -> int | None:
            key = (repo.repo_id, repo.revision, repo.repo_type)
            if key not in self._sizes:
                try:
                    self._sizes[key] = await asyncio.wait_for(asyncio.to_thread(self._repo_size, repo), 20)
                except Exception:  # unreachable hub, gated repo: the size is just unknown
                    return None
            return self._sizes[key]

        return list(await asyncio.gather(*(size(repo) for repo in repos)))

    async def commit_of(self, repo: HubRepo) -> str | None:
        """The commit `repo.revision` names on the hub now (hub_snapshots.commit_of), asked from here so no
        ingress thread waits on the hub."""
        try:
            return await asyncio.wait_for(asyncio.to_thread(commit_of, self._settings, repo), 20)
        except Exception:  # unreachable hub, missing repo: the download itself says what is wrong
            return None

    def download_status(self, download_id: str) -> dict | None:
        model = self._ids.get(download_id)
        record = self._records.get(model) if model else None
        return {"download_id": download_id, **self._view(record)} if record else None

    async def cancel(self, download_id: str) -> dict | None:
        """Cancel the download behind `download_id`: its threads stop at their next chunk, and the
        partial files they were writing are deleted."""
        model = self._ids.get(download_id)
        record = self._records.get(model) if model else None
        if record is None:
            return None
        download = self._downloads.get(model)
        if record.status in ("pending", "downloading") and download is not None and not download.done():
            self._stop(model)
            record.status, record.finished_at = "cancelled", time.time()
        return {"download_id": download_id, **self._view(record)}

    async def remove(self, model: str, repos: list[HubRepo]) -> list[str]:
        """Delete a model's files from the cache (hub repos and url files); the paths removed."""
        from huggingface_hub import scan_cache_dir

        download = self._downloads.get(model)
        if download is not None and not download.done():
            self._stop(model)
        self._downloads.pop(model, None)
        record = self._records.pop(model, None)
        forget(self._settings.cache_dir, model)
        removed = []
        sources = (record.repos if record else repos) or repos
        wanted = {(r.repo_id, r.repo_type) for r in sources}
        if wanted and Path(self._settings.cache_dir).is_dir():
            for repo in scan_cache_dir(self._settings.cache_dir).repos:
                if (repo.repo_id, repo.repo_type) in wanted:
                    shutil.rmtree(inside(self._settings.cache_dir, repo.repo_path.name), ignore_errors=True)
                    removed.append(str(repo.repo_path))
        for source in sources:
            folder = object_storage.model_folder(self._settings.cache_dir, source.repo_id) if source.is_s3 else None
            if folder is not None and folder.is_dir():
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(str(folder))
        for folder in (self._url_folder(model), converted_root(self._settings.cache_dir, model)):
            if folder.is_dir():
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(str(folder))
        self._conversions = {key: work for key, work in self._conversions.items() if key[1] != model}
        return removed

    def cache_info(self) -> dict:
        """The cache as it is on disk: hub repos (huggingface_hub's own scan) and url downloads."""
        from huggingface_hub import scan_cache_dir

        cache = Path(self._settings.cache_dir)
        repos = []
        if cache.is_dir():
            for repo in scan_cache_dir(cache).repos:
                repos.append({"repo_id": repo.repo_id, "repo_type": repo.repo_type, "size_bytes": repo.size_on_disk,
                              "files": repo.nb_files, "revisions": sorted(r.commit_hash for r in repo.revisions),
                              "last_modified": repo.last_modified, "path": str(repo.repo_path)})
        urls = []
        if (cache / URL_FOLDER).is_dir():
            for folder in sorted(p for p in (cache / URL_FOLDER).iterdir() if p.is_dir()):
                files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
                urls.append({"name": folder.name, "size_bytes": sum(p.stat().st_size for p in files),
                             "files": len(files), "path": str(folder)})
        hit_rate = round(self._asked[1] / self._asked[0], 3) if self._asked[0] else None
        return {"cache_directory": str(cache), "repos": repos, "url_downloads": urls, "hit_rate": hit_rate}

    def _url_folder(self, model: str) -> Path:
        """A url download's folder: the name was checked where it entered, and is again here."""
        return inside(Path(self._settings.cache_dir) / URL_FOLDER, check_name(model, "model name"))

    def status(self, model: str | None = None) -> dict | list[dict]:
        """Status and byte progress of one model, or of every model asked for so far."""
        if model is not None:
            record = self._records.get(model)
            return self._with_id(model, record) if record else {"model": model, "status": "unknown"}
        return [self._with_id(name, record) for name, record in self._records.items()]

    def _with_id(self, model: str, record: DownloadRecord) -> dict:
        """A record's view with the id of its newest download: what a client cancels or polls it by."""
        return {**self._view(record), "download_id": self._latest_ids.get(model)}

    def _view(self, record: DownloadRecord) -> dict:
        if record.status == "downloading" and record.repos:  # bytes so far, read off the cache's blobs
            record.bytes_done = min(record.bytes_total, sum(self._bytes_on_disk(r) for r in record.repos))
        view = record.view()
        self._gauges.publish(view)
        return view

    def _stop(self, model: str) -> None:
        """Cancel a running download (cancel, remove, a fresh restart): the task at once, its threads
        (hub or url) at their next chunk."""
        self._downloads[model].cancel()
        if model in self._stops:
            self._stops[model].set()

    async def _retrying(self, record: DownloadRecord, stop: threading.Event, attempt) -> None:
        """`attempt()` with download_retries' backoff; a failure left is the model's status, and a 503."""
        settings = self._settings
        try:
            await with_retries(record, stop, settings.download_attempts, settings.download_retry_base_seconds,
                               settings.download_retry_max_seconds, attempt)
        except Exception as exc:  # any failure is reported as the model's status
            status = "cancelled" if stop.is_set() and record.status == "cancelled" else "failed"
            record.status, record.error, record.finished_at = status, f"{type(exc).__name__}: {exc}", time.time()
            record.next_retry_at = None
            logger.warning("download of %s %s: %s", record.model, status, record.error)
            raise (ModelUnavailable if record.url else HubError)(
                f"Model '{record.model}' could not be downloaded: {record.error}", error="Download failed"
            ) from None
        record.error = None

    async def _download(self, record: DownloadRecord, stop: threading.Event) -> dict[str, str]:
        record.status, record.started_at = "downloading", time.time()

        async def attempt() -> None:
            sizes = await asyncio.gather(*(asyncio.to_thread(self._repo_size, r) for r in record.repos))
            record.bytes_total = sum(sizes)
            for repo in record.repos:
                record.paths[repo.role] = await asyncio.to_thread(snapshot, self._settings, repo, stop)
            if not record.bytes_total:  # listed before its files arrived (an s3 prefix filled meanwhile)
                record.bytes_total = sum(await asyncio.gather(
                    *(asyncio.to_thread(self._bytes_on_disk, r) for r in record.repos)))

        await self._retrying(record, stop, attempt)
        record.status, record.bytes_done, record.finished_at = "completed", record.bytes_total, time.time()
        remember(self._settings.cache_dir, record)
        logger.info("model %s ready (%d bytes) in %.1fs", record.model, record.bytes_total,
                    record.finished_at - record.started_at)
        return record.paths

    async def _download_url(self, record: DownloadRecord, stop: threading.Event, url: str, sha256: str | None,
                            max_bytes: int) -> dict[str, str]:
        record.status, record.started_at = "downloading", time.time()
        path = ""

        async def attempt() -> None:
            nonlocal path
            path = await fetch_url(self._settings, self._url_folder(record.model), record, stop, url, sha256,
                                   max_bytes)

        await self._retrying(record, stop, attempt)
        record.paths = {"weights": path}
        record.status, record.finished_at = "completed", time.time()
        remember(self._settings.cache_dir, record)
        return record.paths

    def _repo_size(self, repo: HubRepo) -> int:
        if repo.is_s3:
            return object_storage.model_size(self._settings, repo.repo_id)
        from huggingface_hub import HfApi
        from huggingface_hub.hf_api import RepoFile

        api = HfApi(endpoint=self._settings.hub_endpoint, token=self._settings.hub_token)
        from huggingface_hub.utils import filter_repo_objects

        tree = api.list_repo_tree(repo.repo_id, revision=repo.revision, repo_type=repo.repo_type, recursive=True)
        files: list[RepoFile] = [f for f in tree if isinstance(f, RepoFile)]
        chosen = filter_repo_objects(files, allow_patterns=repo.allow_patterns, key=lambda f: f.path)
        return sum(f.size for f in chosen)

    def _bytes_on_disk(self, repo: HubRepo) -> int:
        if repo.is_s3:
            return object_storage.bytes_on_disk(self._settings.cache_dir, repo.repo_id)
        from huggingface_hub.file_download import repo_folder_name

        folder = repo_folder_name(repo_id=repo.repo_id, repo_type=repo.repo_type)
        blobs = Path(self._settings.cache_dir) / folder / "blobs"
        return sum(_size(p) for p in blobs.glob("*")) if blobs.is_dir() else 0


URL_FOLDER = "url-downloads"  # url-source files, inside the cache dir, beside the hub's models--* folders


def _size(path: Path) -> int:
    """A blob's size; 0 when huggingface_hub renamed its `.incomplete` file since we listed it."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _retrieve(task: asyncio.Task) -> None:
    if not task.cancelled():
        task.exception()


def on_this_node(settings: ServiceSettings) -> ServiceSettings:
    """With the per-node layout, a node may keep its cache elsewhere (INFERENCE_NODE_CACHE_DIR in the
    environment its raylet was started with)."""
    local = os.environ.get("INFERENCE_NODE_CACHE_DIR")
    if settings.cache_layout == "per-node" and local:
        return settings.model_copy(update={"cache_dir": Path(local).expanduser().resolve()})
    return settings


@ray.remote(num_cpus=0, max_restarts=-1)
class NodeCopier:
    """The manager's hands on one node (per-node layout): it is the only writer of that node's cache.
    The manager dedupes per (node, model), so each node fetches a model once."""

    def __init__(self, settings: ServiceSettings):
        self._settings = on_this_node(settings)
        self._settings.cache_dir.mkdir(parents=True, exist_ok=True)
        remove_orphaned_partials(self._settings.cache_dir)

    def snapshot(self, repos: list[HubRepo]) -> dict[str, str]:
        return {repo.role: snapshot(self._settings, repo) for repo in repos}

    def convert(self, model: str, source: str, conversion: str) -> str:
        return convert_once(self._settings.cache_dir, model, source, conversion)


def get_model_manager(settings: ServiceSettings) -> ray.actor.ActorHandle:
    """The cluster's one ModelManager, created by whichever caller comes first."""
    return ModelManager.options(  # type: ignore[attr-defined]
        name=settings.manager_name,
        namespace=settings.manager_namespace,
        lifetime="detached",
        get_if_exists=True,
    ).remote(settings)
