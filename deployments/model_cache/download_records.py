"""What the model manager knows about each model's files, and the ledger that keeps it across restarts.

A download that completes is written to `<cache>/.downloads/<model>.json` (its repos, task, url and the
folders it landed in); a manager that starts reads the ledger back, so a model already on disk is `cached`
at once, and a download request for it answers `already_exists`, after a restart as before it. An entry
whose folders are gone (deleted by hand) is dropped."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from deployments.state.safe_paths import check_name, inside
from registry import HubRepo

logger = logging.getLogger(__name__)
LEDGER_FOLDER = ".downloads"
KEPT = ("model", "task", "url", "bytes_total", "started_at", "finished_at", "paths")


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
    url: str | None = None  # set for `url` downloads (one file, no hub repo)
    task: str | None = None  # what the model is for, as the download request said
    attempt: int = 0  # tries so far (transient failures are retried, see download_retries)
    next_retry_at: float | None = None  # when the next try starts, while waiting for it

    def view(self) -> dict:
        progress = 100.0 if self.status == "completed" else (
            round(100.0 * self.bytes_done / self.bytes_total, 1) if self.bytes_total else 0.0
        )
        data = asdict(self)
        data["repos"] = [repo.repo_id for repo in self.repos]
        return {**data, "progress": progress, "eta": self.eta(), "message": self.message()}

    def eta(self) -> float | None:
        """Seconds left at the average speed so far; None when not downloading or nothing arrived yet."""
        if self.status != "downloading" or not self.bytes_done or not self.bytes_total or not self.started_at:
            return None
        speed = self.bytes_done / max(time.time() - self.started_at, 1e-3)
        return round(max(self.bytes_total - self.bytes_done, 0) / speed, 1)

    def message(self) -> str:
        return {
            "pending": f"Download of '{self.model}' is queued",
            "downloading": f"Downloading '{self.model}'" + (
                f" (try {self.attempt + 1} at {time.strftime('%H:%M:%S', time.gmtime(self.next_retry_at))} UTC, "
                f"after: {self.error})" if self.next_retry_at else ""),
            "completed": "Download completed successfully",
            "failed": f"Download of '{self.model}' failed: {self.error}",
            "cancelled": f"Download of '{self.model}' was cancelled",
        }.get(self.status, self.status)


def _entry_path(cache_dir: Path, model: str) -> Path:
    return inside(Path(cache_dir) / LEDGER_FOLDER, check_name(model, "model name") + ".json")


def remember(cache_dir: Path, record: DownloadRecord) -> None:
    """Write the completed download's entry (through a temporary file: a crash leaves the old one whole).
    A ledger that cannot be written costs only the memory of it after a restart, not the download."""
    try:
        path = _entry_path(cache_dir, record.model)
        path.parent.mkdir(parents=True, exist_ok=True)
        entry = {key: getattr(record, key) for key in KEPT}
        entry["repos"] = [repo.model_dump(mode="json") for repo in record.repos]
        partial = path.with_name(f".{path.name}.incomplete")
        partial.write_text(json.dumps(entry))
        os.replace(partial, path)
    except (OSError, ValueError) as failure:
        logger.warning("could not record the download of %s: %s", record.model, failure)


def forget(cache_dir: Path, model: str) -> None:
    _entry_path(cache_dir, model).unlink(missing_ok=True)


def recall(cache_dir: Path) -> list[DownloadRecord]:
    """The completed downloads the ledger holds whose folders are all still on disk."""
    folder = Path(cache_dir) / LEDGER_FOLDER
    records = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            entry = json.loads(path.read_text())
            repos = [HubRepo.model_validate(repo) for repo in entry.pop("repos")]
            record = DownloadRecord(repos=repos, status="completed", **entry)
            record.bytes_done = record.bytes_total
        except (ValueError, TypeError, KeyError) as unreadable:
            logger.warning("ignoring the unreadable download entry %s: %s", path.name, unreadable)
            continue
        if record.paths and all(os.path.exists(p) for p in record.paths.values()):
            records.append(record)
        else:
            path.unlink(missing_ok=True)
    return records
