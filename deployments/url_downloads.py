"""`url` model downloads (seed 001's source=url): one file streamed into `<cache>/url-downloads/<name>/`
through `whole_file`, checked for size and sha256, and renamed into place only when whole. The
manager calls this in a thread and reads the progress it writes on `record` (bytes done/total)."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

from deployments.safe_paths import display_filename, inside
from deployments.safe_urls import open_url
from deployments.settings import ServiceSettings
from deployments.whole_files import whole_file


class DownloadStopped(Exception):
    """Raised in a download's threads (huggingface_hub's, or a url's), at their next chunk, once the
    download is cancelled."""


def fetch_url(settings: ServiceSettings, folder: Path, record: Any, stop: threading.Event, url: str,
              sha256: str | None, max_bytes: int) -> str:
    """Stream `url` into a hidden temp file in the model's folder; renamed only when whole and verified."""
    import httpx

    folder.mkdir(parents=True, exist_ok=True)
    target = inside(folder, display_filename(Path(httpx.URL(url).path).name, default="model.bin"))
    digest = hashlib.sha256()
    try:
        # open_url re-checks every redirect hop against private addresses (server-side request forgery)
        with whole_file(target) as out, open_url(url, settings) as reply:
            record.bytes_total = int(reply.headers.get("content-length") or 0)
            if record.bytes_total > max_bytes:
                raise ValueError(f"{url} is {record.bytes_total} bytes, over the limit of {max_bytes} bytes")
            for chunk in reply.iter_bytes(1 << 20):
                if stop.is_set():
                    raise DownloadStopped("the download was cancelled")
                record.bytes_done += len(chunk)
                if record.bytes_done > max_bytes:
                    raise ValueError(f"{url} sent more than the limit of {max_bytes} bytes")
                digest.update(chunk)
                out.write(chunk)
            if sha256 and digest.hexdigest() != sha256.lower():  # inside: a mismatch is never renamed into place
                raise ValueError(f"sha256 mismatch: expected {sha256.lower()}, got {digest.hexdigest()}")
            record.bytes_total = record.bytes_done
        return str(target)
    finally:
        if not any(folder.iterdir()):
            folder.rmdir()
