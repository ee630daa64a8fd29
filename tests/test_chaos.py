"""Chaos under a steady load of 4 clients: a model replica, the ingress replica and the model manager
are killed (crashes, not drains); what the clients see is counted and how soon they are served again."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import ray

from tests.model_cache.test_model_management import sha256_of, stalled_encoder, wait_for, wait_for_partial_file

pytestmark = pytest.mark.disruptive
EMBEDDING = "all-minilm-l6-v2"


@dataclass
class SteadyLoad:
    """`clients` threads posting embeddings back to back; every answer kept as (started, ended, status)."""

    base_url: str
    clients: int = 4
    results: list[tuple[float, float, int]] = field(default_factory=list)
    # Send a request again, once, when its kept-alive connection closed before any answer, as browsers do
    # (the server may close an idle connection just as the request leaves: HAProxy does on a reload).
    replay_dropped: bool = False
    errors: list[str] = field(default_factory=list)  # what each failed request said, for the failure message
    replayed: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _post(self, http: httpx.Client, n: int) -> int:
        for attempt in (1, 2):
            try:
                response = http.post("/api/embedding", json={"text": f"steady load {n}"})
            except httpx.RemoteProtocolError as dropped:
                if not self.replay_dropped or attempt == 2:
                    raise
                self.replayed.append(repr(dropped))
                continue
            if response.status_code != 200:
                self.errors.append(f"{response.status_code}: {response.text[:200]}")
            return response.status_code
        raise AssertionError("unreachable")

    def _client(self, n: int) -> None:
        with httpx.Client(base_url=self.base_url, timeout=120) as http:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    status = self._post(http, n)
                except httpx.HTTPError as error:
                    status = 0  # the connection itself failed
                    self.errors.append(f"no answer: {error!r}")
                self.results.append((started, time.monotonic(), status))

    def __enter__(self) -> SteadyLoad:
        self._threads = [threading.Thread(target=self._client, args=(n,)) for n in range(self.clients)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def failures(self) -> list[tuple[float, float, int]]:
        return [r for r in self.results if r[2] != 200]

    def served_again_after(self, moment: float) -> float:
        """Seconds from `moment` until a request that started after it succeeded; inf if none has."""
        served = [ended for started, ended, status in self.results if started >= moment and status == 200]
        return min(served, default=math.inf) - moment

    def longest_wait(self) -> float:
        return max(ended - started for started, ended, _ in self.results)


def replicas_of(deployment: str) -> list[str]:
    return [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if a["name"].startswith(f"SERVE_REPLICA::inference#{deployment}#")]


def wait_until_steady(load: SteadyLoad, successes: int = 20) -> None:
    """Until `successes` requests have succeeded: the first ones warm the model and every replica."""
    deadline = time.monotonic() + 120
    while len([r for r in load.results if r[2] == 200]) < successes and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(load.results) >= successes and not load.failures(), load.errors


def steady_until_kill(service: str, deployment: str, after_s: float = 8.0, served_within_s: float = 60.0):
    """Kill a replica of `deployment` under the steady load, which goes on for `after_s`, and then until a
    request sent after the kill has been served (at most `served_within_s` from the kill): how soon that
    happens is what the tests bound, so the load must outlast it even on a slow box."""
    with SteadyLoad(service) as load:
        wait_until_steady(load)
        victim = replicas_of(deployment)[0]
        killed_at = time.monotonic()
        ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
        time.sleep(after_s)
        while load.served_again_after(killed_at) == math.inf and time.monotonic() < killed_at + served_within_s:
            time.sleep(0.2)
    return load, killed_at


def test_a_model_replica_killed_under_load_costs_no_request(service, client):
    assert len(replicas_of(EMBEDDING)) == 2  # the tests' override: the other replica takes the retries
    load, killed_at = steady_until_kill(service, EMBEDDING)
    print(f"model replica killed: {len(load.results)} requests, {len(load.failures())} failed, served again "
          f"after {load.served_again_after(killed_at):.2f}s, longest request {load.longest_wait():.2f}s")
    assert load.failures() == []  # in-flight requests were retried on the other replica
    # The dead replica is dropped as soon as a call to it fails, not at Serve's next health check (10 s
    # period): about 1-2 s here (2.03 s once, at the end of a loaded CI run), so 5 s tells the two apart.
    assert load.served_again_after(killed_at) < 5.0


def test_the_ingress_killed_under_load_serves_again_and_loses_no_job(service, client):
    queued = client.post("/api/v1/run", json={"model": EMBEDDING, "input": {"text": ["queued before the kill"]}})
    assert queued.status_code in (200, 202), queued.text
    load, killed_at = steady_until_kill(service, "Ingress", after_s=12.0)
    failed = load.failures()
    print(f"ingress killed: {len(load.results)} requests, {len(failed)} failed "
          f"({sorted({s for *_, s in failed})}), served again after {load.served_again_after(killed_at):.2f}s")
    # Only requests sent around the kill fail: the one each client had in the dead replica, and (in the Python
    # proxy mode this app runs) at most one more sent in the instant before Serve's router saw the replica go,
    # which the proxy answers 500 (seen once in CI: 3 + 2 of 262). The rest queue in the proxy until the new
    # replica serves. The service's default HAProxy mode replays both kinds (the test below: none fail).
    assert len(failed) <= 2 * load.clients, failed
    assert sum(status == 500 for *_, status in failed) <= load.clients, failed
    # Serve starts a new ingress replica, whose handles then find the model's replicas: 5.5 s with this
    # module run alone; once, on a loaded 2-core CI box, the requests held over the kill were answered only
    # 12.6 s on (the load, then 12 s long, had stopped before any request sent after the kill was served).
    assert load.served_again_after(killed_at) < 20.0
    job = client.get(f"/jobs/{queued.json()['job_id']}", params={"wait": 60}).json()
    assert job["status"] == "completed" and len(job["output"]["embeddings"][0]) == 384, job


@pytest.mark.own_ray
def test_in_haproxy_mode_an_ingress_killed_under_load_fails_no_request_sent_after_it(hub, tmp_path):
    """INFERENCE_SERVE_MODE=haproxy with two ingress replicas: HAProxy replays the requests the killed one
    held on the other (tests/ingress_chaos.py, on a Ray of its own since the mode is set before Ray starts)."""
    temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # Ray's socket paths must stay short
    out = tmp_path / "chaos.json"
    env = {**os.environ, "RAY_TMPDIR": temp_dir, "RAY_USAGE_STATS_ENABLED": "0"}
    try:
        run = subprocess.run([sys.executable, "-m", "tests.ingress_chaos", hub.url, str(tmp_path), str(out)],
                             cwd=Path(__file__).resolve().parents[1], env=env, capture_output=True, text=True,
                             timeout=420)
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert run.returncode == 0, run.stderr[-4000:]
    result = json.loads(out.read_text())
    print(f"haproxy mode, ingress killed: {result}")
    assert result["ingress_replicas"] == 2 and result["after_kill"] >= 20, result
    assert result["haproxy_retry_on"] == "conn-failure empty-response junk-response", result
    assert result["haproxy_retries"] == "10", result
    # Every request sent after the kill was served. One the dying replica was already running may get its
    # HTTP server's plain 500 as Ray cancels its handlers (seen once in CI: started 48 ms before the kill);
    # a request it held unanswered is replayed on the other replica.
    failed = result["failed_after_kill_s"]
    assert [f for f in failed if f[0] >= 0] == [], result["errors"]
    assert len(failed) <= 1 and all(status == 500 for *_, status in failed), result["errors"]
    assert result["served_again_s"] < 2.0
    # a request sent again because its kept-alive connection closed unanswered: one per client at most
    assert len(result["client_replays"]) <= 4, result


def test_the_model_manager_killed_mid_download_resumes_with_no_partial_file(client, hub, model_cache):
    from deployments.settings import ServiceSettings

    _, biggest, release, blobs, body = stalled_encoder(hub, model_cache, "chaos-encoder")
    settings = ServiceSettings()
    try:
        started = client.post("/models/download", json=body)
        assert started.status_code == 200, started.text
        wait_for_partial_file(blobs)
        manager = ray.get_actor(settings.manager_name, namespace=settings.manager_namespace)
        ray.kill(manager, no_restart=False)  # a crash: Ray restarts it, with no memory of the download
    finally:
        release.set()
    assert not (blobs / biggest.sha256).exists()  # the half file never became the blob
    # the restarted manager answers: the old download is unknown, not a server error
    status = client.get(f"/models/download/status/{started.json()['download_id']}")
    assert status.status_code in (200, 404), status.text

    again = client.post("/models/download", json=body)
    assert again.status_code == 200, again.text
    state = wait_for(client, again.json()["download_id"])
    assert state["status"] == "completed", state
    assert sha256_of(blobs / biggest.sha256) == biggest.sha256
    assert not list(blobs.glob("*.incomplete"))
    served = client.post("/api/embedding", json={"text": "after the crash", "model": "chaos-encoder"})
    assert served.status_code == 200, served.text


def test_a_chat_replica_killed_mid_answer_ends_the_answer_and_the_next_turn_is_answered(service):
    """A realtime conversation whose chat model's replica dies while it speaks: the answer ends with an
    error event and response.done (failed); the socket stays open and the next turn is answered once Serve
    has started a new replica."""
    from tests.realtime.test_realtime_protocol import Socket
    from tests.realtime.test_realtime_sessions import CHAT

    with Socket(service, f"model={CHAT}") as socket:
        socket.until("session.created")
        # the tiny model often ends early; with this seed it writes all 400 tokens (as /v1/chat/completions does)
        socket.send(type="session.update", session={"type": "realtime", "seed": 1})
        socket.until("session.updated")
        socket.send(type="conversation.item.create", item={"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "Tell a long story."}]})
        # text answers: each delta is sent as the chat model writes it, so at the first one it is mid-answer
        socket.send(type="response.create", response={"max_output_tokens": 400, "output_modalities": ["text"]})
        socket.until("response.output_text.delta")
        ray.kill(ray.get_actor(replicas_of(CHAT)[0], namespace="serve"), no_restart=True)
        seen = socket.until("response.done")
        status = seen[-1]["response"]["status"]
        errors = [e["error"] for e in seen if e["type"] == "error"]
        assert status == "failed" and errors and errors[0]["type"] == "server_error", (status, errors)
        assert "lost its replica" in errors[0]["message"]
        socket.send(type="response.create", response={"max_output_tokens": 6, "output_modalities": ["text"]})
        again = socket.until("response.done", timeout_s=180)[-1]["response"]
        assert again["status"] == "completed", again
