"""`url` model downloads (seed 001's source=url): one file streamed into `<cache>/url-downloads/<name>/`
through `whole_file`, checked for size and sha256, and renamed into place only when whole. The
manager awaits this on its event loop and reads the progress it writes on `record` (bytes done/total).

A server that trickles cannot hold a download for ever: its headers must come within
fetch_timeout_seconds, and its body at download_min_bytes_per_second or more over every 30 s."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import threading
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from deployments.errors import InsufficientStorage, InvalidRequest
from deployments.media.safe_urls import deadline, open_url
from deployments.settings import ServiceSettings
from deployments.state.safe_paths import display_filename, inside
from deployments.state.whole_files import whole_file

RATE_WINDOW_SECONDS = 30.0


class DownloadStopped(Exception):
    """Raised in a download's threads (huggingface_hub's, or a url's), at their next chunk, once the
    download is cancelled."""


async def fetch_url(settings: ServiceSettings, folder: Path, record: Any, stop: threading.Event, url: str,
                    sha256: str | None, max_bytes: int) -> str:
    """Stream `url` into a hidden temp file in the model's folder; renamed only when whole and verified."""
    import httpx

    folder.mkdir(parents=True, exist_ok=True)
    target = inside(folder, display_filename(Path(httpx.URL(url).path).name, default="model.bin"))
    digest = hashlib.sha256()
    minimum = settings.download_min_bytes_per_second
    try:
        async with AsyncExitStack() as stack:
            # open_url re-checks every redirect hop against private addresses (server-side request forgery)
            async with deadline(url, settings.fetch_timeout_seconds):
                reply = await stack.enter_async_context(open_url(url, settings))
            out = stack.enter_context(whole_file(target))  # exits first: a failure below is never renamed
            record.bytes_total = int(reply.headers.get("content-length") or 0)
            if record.bytes_total > max_bytes:
                raise ValueError(f"{url} is {record.bytes_total} bytes, over the limit of {max_bytes} bytes")
            if record.bytes_total > (free := shutil.disk_usage(folder).free):
                raise InsufficientStorage(f"{url} is {record.bytes_total} bytes; the cache's disk has {free} free")
            window_start, window_bytes = time.monotonic(), 0
            async for chunk in reply.aiter_bytes(1 << 20):
                if stop.is_set():
                    raise DownloadStopped("the download was cancelled")
                record.bytes_done += len(chunk)
                if record.bytes_done > max_bytes:
                    raise ValueError(f"{url} sent more than the limit of {max_bytes} bytes")
                await asyncio.to_thread(_write, out, digest, chunk)
                window_bytes += len(chunk)
                if (elapsed := time.monotonic() - window_start) >= RATE_WINDOW_SECONDS:
                    if window_bytes < minimum * elapsed:
                        raise InvalidRequest(f"{url} sent {window_bytes} bytes in {elapsed:.0f}s, under the minimum "
                                             f"of {minimum} bytes/s (INFERENCE_DOWNLOAD_MIN_BYTES_PER_SECOND)")
                    window_start, window_bytes = time.monotonic(), 0
            if sha256 and digest.hexdigest() != sha256.lower():  # inside: a mismatch is never renamed into place
                raise ValueError(f"sha256 mismatch: expected {sha256.lower()}, got {digest.hexdigest()}")
            record.bytes_total = record.bytes_done
        return str(target)
    finally:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def _write(out: Any, digest: Any, chunk: bytes) -> None:
    digest.update(chunk)
    out.write(chunk)
