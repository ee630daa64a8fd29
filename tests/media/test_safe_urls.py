"""URL fetches connect to the very address that passed the private-network check: a resolver that
answers differently the second time (DNS rebinding) changes nothing."""

from __future__ import annotations

import asyncio
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from deployments.errors import InvalidRequest
from deployments.media.safe_urls import fetch_bytes
from deployments.settings import ServiceSettings

BODY = b"the checked server's bytes"


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/hop":  # a relative redirect: resolved against the URL, not the address
            self.send_response(302)
            self.send_header("Location", "/file")
            self.end_headers()
            return
        payload = BODY + b" host=" + self.headers["Host"].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def local_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


@pytest.fixture
def rebinding_dns(monkeypatch):
    """'rebind.test' resolves to loopback (allowlisted) once, then to a reserved address (203.0.113.7)."""
    real = socket.getaddrinfo
    answers = iter(["127.0.0.1"])

    def getaddrinfo(host, port, *args, **kwargs):
        if host == "rebind.test":
            return real(next(answers, "203.0.113.7"), port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def test_fetch_connects_to_the_checked_address(local_server, rebinding_dns):
    settings = ServiceSettings(private_url_allowlist=["127.0.0.1/32"], fetch_timeout_seconds=5)
    body = asyncio.run(fetch_bytes(f"http://rebind.test:{local_server}/file", settings, 1 << 20))
    assert body == BODY + f" host=rebind.test:{local_server}".encode()  # the URL's host, the checked address


def test_each_redirect_hop_is_resolved_and_checked_again(local_server, rebinding_dns):
    """The redirect's lookup answers 203.0.113.7 (a reserved documentation address): refused, although
    the first lookup of the same name passed."""
    settings = ServiceSettings(private_url_allowlist=["127.0.0.1/32"], fetch_timeout_seconds=2)
    with pytest.raises(InvalidRequest, match="'rebind.test' resolves to 203.0.113.7"):
        asyncio.run(fetch_bytes(f"http://rebind.test:{local_server}/hop", settings, 1 << 20))


def test_private_address_is_refused_before_any_connect(local_server):
    settings = ServiceSettings(private_url_allowlist=[], fetch_timeout_seconds=2)
    with pytest.raises(InvalidRequest, match="resolves to 127.0.0.1, a private, loopback or reserved address"):
        asyncio.run(fetch_bytes(f"http://127.0.0.1:{local_server}/file", settings, 1 << 20))
