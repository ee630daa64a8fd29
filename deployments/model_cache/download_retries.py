"""Retries of a model download that failed for a reason that passes (the hub or a URL answering 5xx or
429, a dropped connection, a timeout): exponential backoff with a cap, as seed 003's service retries
hub calls (4 tries, waiting 1, 2, 4 s), honouring a 429's Retry-After. A missing repo or file, a
refused token, a size or checksum mismatch or a cancel fails at once. Each file already whole stays in
the cache, and huggingface_hub resumes a partial one, so a retry fetches only what is missing.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

logger = logging.getLogger(__name__)


class Retried(Protocol):
    """What a retry shows in the download's status."""

    attempt: int
    next_retry_at: float | None
    error: str | None


def _status_and_headers(error: BaseException) -> tuple[int | None, Any]:
    response = getattr(error, "response", None)
    return getattr(response, "status_code", None), getattr(response, "headers", {}) or {}


def retry_wait(error: BaseException, attempt: int, base_seconds: float, max_seconds: float) -> float | None:
    """Seconds to wait before the next attempt after `error` (attempt `attempt` failed), or None when
    trying again cannot help."""
    import httpx
    from huggingface_hub import errors

    if isinstance(error, errors.RepositoryNotFoundError | errors.RevisionNotFoundError | errors.EntryNotFoundError
                  | errors.GatedRepoError | errors.DisabledRepoError):
        return None
    backoff = min(max_seconds, base_seconds * 2 ** (attempt - 1))
    status, headers = _status_and_headers(error)
    if status is not None:
        if status != 429 and status < 500:
            return None
        return min(max_seconds, _retry_after(headers.get("Retry-After")) or backoff)
    if isinstance(error, errors.LocalEntryNotFoundError):  # huggingface_hub's word for "the hub did not answer"
        return backoff
    if isinstance(error, httpx.TransportError | ConnectionError | TimeoutError):
        return backoff
    cause = error.__cause__ or error.__context__
    return retry_wait(cause, attempt, base_seconds, max_seconds) if cause is not None else None


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds or as an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


async def with_retries(record: Retried, stop: threading.Event, attempts: int, base_seconds: float,
                       max_seconds: float, attempt: Callable[[], Awaitable[Any]]) -> Any:
    """`attempt()` until it succeeds, up to `attempts` times while its failures are transient; the record
    shows `attempt`, the last `error` and `next_retry_at` meanwhile. The last failure is raised."""
    for number in range(1, attempts + 1):
        record.attempt, record.next_retry_at = number, None
        try:
            return await attempt()
        except Exception as error:
            wait = retry_wait(error, number, base_seconds, max_seconds)
            if wait is None or number == attempts or stop.is_set():
                raise
            record.error = f"{type(error).__name__}: {error}"
            record.next_retry_at = time.time() + wait
            logger.warning("download attempt %d of %d failed (%s); next in %.1fs", number, attempts, record.error,
                           wait)
            if await asyncio.to_thread(stop.wait, wait):  # cancelled while waiting
                raise
    raise AssertionError("unreachable")
