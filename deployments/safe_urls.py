"""Fetching a URL that a request names (image_url, url model downloads) without letting the request
reach where it should not: http/https only, every redirect hop re-checked, no private, loopback,
link-local or reserved address unless configuration allows its network, a size cap and a time limit."""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urljoin, urlsplit

import httpx

from deployments.errors import InvalidRequest, PayloadTooLarge
from deployments.settings import ServiceSettings

MAX_REDIRECTS = 5
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


def pinned_request(client: httpx.Client, url: str, address: str) -> httpx.Request:
    """GET `url` sent to `address`, the one check_url passed (no DNS rebinding between the check and the
    connect): the URL's host stays in the Host header and, for https, in SNI and certificate checks."""
    parts = httpx.URL(url)
    return client.build_request("GET", parts.copy_with(host=address), headers={"Host": parts.netloc.decode("ascii")},
                                extensions={"sni_hostname": parts.host})


@contextmanager
def open_url(url: str, settings: ServiceSettings) -> Iterator[httpx.Response]:
    """A streaming GET of `url` with each redirect hop checked; 4xx for a refused URL or a failed fetch."""
    timeout = settings.fetch_timeout_seconds
    with httpx.Client(timeout=timeout, follow_redirects=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            address = check_url(url, settings)
            try:
                reply = client.send(pinned_request(client, url, address), stream=True)
            except httpx.TimeoutException:
                raise InvalidRequest(f"Fetching '{url}' timed out after {timeout:g}s") from None
            except httpx.HTTPError as error:
                raise InvalidRequest(f"Fetching '{url}' failed: {error}") from None
            if not reply.is_redirect:
                break
            reply.close()
            url = urljoin(url, reply.headers.get("location", url))  # relative to the URL, not the address
        else:
            raise InvalidRequest(f"Fetching '{url}' took more than {MAX_REDIRECTS} redirects")
        try:
            if reply.status_code >= 400:
                raise InvalidRequest(f"Fetching '{url}' failed: the server answered HTTP {reply.status_code}")
            yield reply
        finally:
            reply.close()


def iter_body(reply: httpx.Response, settings: ServiceSettings, max_bytes: int) -> Iterator[bytes]:
    """The body in chunks, stopped with 413 past `max_bytes` and with 400 past the time limit."""
    declared = reply.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"'{reply.url}' is {declared} bytes; the limit is {max_bytes} bytes")
    deadline = time.monotonic() + settings.fetch_timeout_seconds
    received = 0
    try:
        for chunk in reply.iter_bytes(CHUNK_BYTES):
            received += len(chunk)
            if received > max_bytes:
                raise PayloadTooLarge(f"'{reply.url}' is larger than the limit of {max_bytes} bytes")
            if time.monotonic() > deadline:
                raise InvalidRequest(f"Fetching '{reply.url}' timed out after {settings.fetch_timeout_seconds:g}s")
            yield chunk
    except httpx.HTTPError as error:
        raise InvalidRequest(f"Fetching '{reply.url}' failed mid-way: {error}") from None


def fetch_bytes(url: str, settings: ServiceSettings, max_bytes: int) -> bytes:
    """The whole body of a checked URL (blocking: call it in a thread from async code)."""
    with open_url(url, settings) as reply:
        return b"".join(iter_body(reply, settings, max_bytes))
