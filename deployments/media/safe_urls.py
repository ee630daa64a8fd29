"""Fetching a URL that a request names (image_url, url model downloads) without letting the request
reach where it should not: http/https only, every redirect hop re-checked, no private, loopback,
link-local or reserved address unless configuration allows its network, a size cap, and one deadline
for the whole fetch, on the event loop rather than in a thread."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from urllib.parse import urljoin, urlsplit

import httpx

from deployments.errors import InvalidRequest, PayloadTooLarge
from deployments.settings import ServiceSettings

MAX_REDIRECTS = 5
# For request schemas: an http(s) URL naming a host (and at most a numeric port), as check_url requires;
# whether that host resolves, and to a public address, only a lookup can say.
URL_PATTERN = r"^[hH][tT][tT][pP][sS]?://[^/?#@\s:\[\]]+(:[0-9]{1,4})?([/?#]\S*)?$"
CHUNK_BYTES = 1 << 16


def check_url(url: str, settings: ServiceSettings) -> str:
    """Refuse (400) a URL that is not http(s), or whose host resolves to a non-public address that
    `settings.private_url_allowlist` does not cover. Every address the name resolves to is checked;
    the first is returned, for the fetch to connect to (a second lookup could answer otherwise)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise InvalidRequest(f"Only http and https URLs are accepted; got '{parts.scheme or url}'")
    if not parts.hostname:
        raise InvalidRequest(f"URL '{url}' names no host")
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80),
                                   proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as error:
        raise InvalidRequest(f"Host '{parts.hostname}' of URL '{url}' cannot be resolved: {error}") from None
    allowed = [ipaddress.ip_network(net, strict=False) for net in settings.private_url_allowlist]
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if not address.is_global and not any(address in net for net in allowed):
            raise InvalidRequest(
                f"URL host '{parts.hostname}' resolves to {address}, a private, loopback or reserved address; "
                "requests may not reach private networks unless INFERENCE_PRIVATE_URL_ALLOWLIST includes it"
            )
    return infos[0][4][0].split("%")[0]


def pinned_request(client: httpx.AsyncClient, url: str, address: str) -> httpx.Request:
    """GET `url` sent to `address`, the one check_url passed (no DNS rebinding between the check and the
    connect): the URL's host stays in the Host header and, for https, in SNI and certificate checks."""
    parts = httpx.URL(url)
    return client.build_request("GET", parts.copy_with(host=address), headers={"Host": parts.netloc.decode("ascii")},
                                extensions={"sni_hostname": parts.host})


# Fetches run on the event loop (httpx's async client) and resolve names in a pool of their own, so a slow
# or hostile server never holds a thread of the executor that the job store and /health use; at most
# MAX_FETCHES at once per process, the rest wait inside their own deadline.
MAX_FETCHES = 32
_RESOLVER = ThreadPoolExecutor(max_workers=4, thread_name_prefix="url-resolve")
_FETCHES: asyncio.Semaphore | None = None


def _fetch_slots() -> asyncio.Semaphore:
    global _FETCHES
    if _FETCHES is None:
        _FETCHES = asyncio.Semaphore(MAX_FETCHES)
    return _FETCHES


@asynccontextmanager
async def open_url(url: str, settings: ServiceSettings) -> AsyncIterator[httpx.Response]:
    """A streaming GET of `url` with each redirect hop checked; 4xx for a refused URL or a failed fetch.
    No deadline of its own beyond httpx's per-step one: callers bound the whole of it (`deadline`)."""
    loop = asyncio.get_running_loop()
    async with _fetch_slots(), httpx.AsyncClient(timeout=settings.fetch_timeout_seconds,
                                                 follow_redirects=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            address = await loop.run_in_executor(_RESOLVER, check_url, url, settings)
            try:
                reply = await client.send(pinned_request(client, url, address), stream=True)
            except httpx.TimeoutException:
                raise InvalidRequest(f"Fetching '{url}' timed out after {settings.fetch_timeout_seconds:g}s") from None
            except httpx.HTTPError as error:
                raise InvalidRequest(f"Fetching '{url}' failed: {error}") from None
            if not reply.is_redirect:
                break
            await reply.aclose()
            url = urljoin(url, reply.headers.get("location", url))  # relative to the URL, not the address
        else:
            raise InvalidRequest(f"Fetching '{url}' took more than {MAX_REDIRECTS} redirects")
        try:
            if reply.status_code >= 400:
                raise InvalidRequest(f"Fetching '{url}' failed: the server answered HTTP {reply.status_code}")
            yield reply
        finally:
            await reply.aclose()


@asynccontextmanager
async def deadline(url: str, seconds: float) -> AsyncIterator[None]:
    """One limit for everything inside (connect, headers, body): a server that trickles is cut off."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise InvalidRequest(f"Fetching '{url}' timed out after {seconds:g}s (INFERENCE_FETCH_TIMEOUT_SECONDS "
                             "bounds connecting, the headers and the body together)") from None


async def fetch_bytes(url: str, settings: ServiceSettings, max_bytes: int) -> bytes:
    """The whole body of a checked URL within one deadline; 413 past `max_bytes`."""
    async with deadline(url, settings.fetch_timeout_seconds), open_url(url, settings) as reply:
        declared = reply.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise PayloadTooLarge(f"'{reply.url}' is {declared} bytes; the limit is {max_bytes} bytes")
        body = bytearray()
        try:
            async for chunk in reply.aiter_bytes(CHUNK_BYTES):
                body += chunk
                if len(body) > max_bytes:
                    raise PayloadTooLarge(f"'{reply.url}' is larger than the limit of {max_bytes} bytes")
        except httpx.HTTPError as error:
            raise InvalidRequest(f"Fetching '{reply.url}' failed mid-way: {error}") from None
        return bytes(body)
