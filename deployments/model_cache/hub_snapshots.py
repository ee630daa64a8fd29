"""Files into the model cache: one hub repo (or s3:// prefix) per call, atomic per file, stoppable
mid-file; and the start-up sweep of partial files a dead writer left. Only the ModelManager (and its
per-node copiers) call these: the manager is the cache's one writer.
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
from pathlib import Path

from deployments.model_cache.url_downloads import DownloadStopped
from deployments.settings import ServiceSettings
from deployments.state import object_storage
from registry import HubRepo

logger = logging.getLogger(__name__)


def remove_orphaned_partials(cache_dir: Path) -> None:
    """At start, every `*.incomplete` file (huggingface_hub's and ours) was left by a writer that died:
    this process is the cache's only writer and has written nothing yet. Removed, so a crash mid-download
    leaves no partial file behind; the next download fetches the file again."""
    orphans = list(Path(cache_dir).rglob("*.incomplete"))
    for orphan in orphans:  # files, and the folders of conversions (conversions.py)
        if orphan.is_dir():
            shutil.rmtree(orphan, ignore_errors=True)
        else:
            orphan.unlink(missing_ok=True)
    if orphans:
        logger.warning("removed %d partial files left by a writer that died: %s", len(orphans),
                       ", ".join(o.name for o in orphans[:5]))


def snapshot(settings: ServiceSettings, repo: HubRepo, stop: threading.Event | None = None) -> str:
    """One repo into the cache through huggingface_hub (atomic per file); its local snapshot folder.
    Setting `stop` ends the download mid-file and deletes the partial (`.incomplete`) blobs."""
    if repo.is_s3:
        try:
            return object_storage.snapshot_model(settings, repo.repo_id, stop)
        except object_storage.Stopped as stopped:
            raise DownloadStopped(str(stopped)) from None
    from huggingface_hub import snapshot_download
    from huggingface_hub.file_download import repo_folder_name

    try:
        return snapshot_download(
            repo.repo_id,
            revision=repo.revision,
            repo_type=repo.repo_type,
            cache_dir=settings.cache_dir,
            endpoint=settings.hub_endpoint,
            token=settings.hub_token,
            max_workers=settings.download_workers,
            allow_patterns=repo.allow_patterns,
            tqdm_class=_stoppable_progress(stop) if stop else None,
        )
    except DownloadStopped:
        blobs = Path(settings.cache_dir) / repo_folder_name(repo_id=repo.repo_id, repo_type=repo.repo_type) / "blobs"
        for partial in blobs.glob("*.incomplete"):
            partial.unlink(missing_ok=True)
        raise


def _stoppable_progress(stop: threading.Event) -> type:
    """A progress-bar class for snapshot_download: huggingface_hub reports every chunk of every file
    to it, from each worker thread, so raising there is how a running file download ends early."""
    from huggingface_hub.utils import tqdm as hf_tqdm

    class StoppableProgress(hf_tqdm):
        def update(self, n: float | None = 1):
            if stop.is_set():
                raise DownloadStopped("the download was cancelled")
            return super().update(n)

    return StoppableProgress


def commit_of(settings: ServiceSettings, repo: HubRepo) -> str | None:
    """The commit `repo.revision` names on the hub now, to pin a model added at run time to what was checked
    (None for an s3:// prefix or a revision that is a commit already)."""
    if repo.is_s3 or re.fullmatch(r"[0-9a-f]{40}", repo.revision):
        return None
    from huggingface_hub import HfApi

    api = HfApi(endpoint=settings.hub_endpoint, token=settings.hub_token)
    return api.repo_info(repo.repo_id, revision=repo.revision, repo_type=repo.repo_type).sha
