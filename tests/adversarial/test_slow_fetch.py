"""A server that trickles its response headers (a byte every half second, for a minute) is named as the
image_url and audio_prompt_url of many requests at once: each is refused with the fetch deadline, and
meanwhile /health and /jobs answer as fast as ever, since fetches hold no thread of the ingress."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

TRICKLERS = 8
FETCH_DEADLINE_S = 10.0  # INFERENCE_FETCH_TIMEOUT_SECONDS's default: the session sets none


@pytest.fixture
def trickling_server():
    """On 127.0.0.1 (the session allowlists it): answers every connection one header byte at a time."""
    listener = socket.create_server(("127.0.0.1", 0))
    stopped = threading.Event()

    def trickle(connection: socket.socket) -> None:
        with connection:
            connection.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 120:
                if stopped.wait(0.5):
                    return
                try:
                    connection.sendall(bytes([byte]))
                except OSError:  # the service hung up: what it should do
                    return

    def accept() -> None:
        while not stopped.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=trickle, args=(connection,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stopped.set()
    listener.close()


def test_trickled_headers_hit_one_deadline_and_stall_nothing(service, trickling_server):
    def slow_request(i: int) -> tuple[httpx.Response, float]:
        started = time.monotonic()
        with httpx.Client(base_url=service, timeout=60) as http:
            if i % 2:
                reply = http.post("/api/image/classify", json={"image_url": f"{trickling_server}/photo{i}.jpg"})
            else:
                reply = http.post("/api/tts", json={"text": "hi", "model": "csm-1b",
                                                    "audio_prompt_url": f"{trickling_server}/voice{i}.wav"})
        return reply, time.monotonic() - started

    with ThreadPoolExecutor(TRICKLERS) as pool, httpx.Client(base_url=service, timeout=30) as http:
        pending = [pool.submit(slow_request, i) for i in range(TRICKLERS)]
        time.sleep(2)  # every fetch is under way, each on its server's trickle
        waits = []
        for _ in range(5):
            for path in ("/health", "/jobs"):
                started = time.monotonic()
                assert http.get(path).status_code == 200
                waits.append(time.monotonic() - started)
            time.sleep(0.5)
        assert not any(p.done() for p in pending), "a trickled fetch ended before its deadline"
        results = [p.result(timeout=60) for p in pending]
    assert max(waits) < 2.0, waits
    for reply, took in results:
        assert reply.status_code == 400, reply.text
        assert "timed out after 10s" in reply.json()["message"], reply.text
        assert FETCH_DEADLINE_S - 1 < took < FETCH_DEADLINE_S + 8, took
    print(f"health/jobs slowest {max(waits) * 1000:.0f} ms while {TRICKLERS} fetches trickled; "
          f"each refused after {min(t for _, t in results):.1f}-{max(t for _, t in results):.1f} s")
