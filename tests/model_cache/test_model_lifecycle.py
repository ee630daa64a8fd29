"""Each model its own deployment: an idle model goes to zero replicas and comes back on the next
request, its lifecycle visible in GET /models/{name} on the way; a caller that will not wait gets a
503 with Retry-After; the one-GPU profile deploys on a Ray with one GPU declared."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.conftest import TINY_BGE_DIMENSIONS, tiny_profile

MODEL = "bge-small-en-v1.5"  # not a task default: it starts with no replica


@pytest.fixture(scope="module")
def cold(service):
    from ray import serve

    from deployments.app import compose_app
    from deployments.settings import ServiceSettings
    from registry import load_catalog

    # idle 3 s past a 3 s look-back: gone about 6 s after its last request (Serve's default look-back is 30 s)
    profile = tiny_profile(models=[MODEL], runtime_pools=False,
                           autoscaling={"max_replicas": 1, "upscale_delay_s": 0, "downscale_delay_s": 3,
                                        "look_back_period_s": 3})
    settings = ServiceSettings(idle_after_seconds=1)
    serve.run(compose_app(load_catalog(), settings, profile), name="cold", route_prefix="/cold")
    with httpx.Client(base_url=f"{service}/cold", timeout=120) as http:
        yield http
    serve.delete("cold")


def lifecycle(http: httpx.Client, model: str = MODEL) -> dict:
    reply = http.get(f"/models/{model}")
    assert reply.status_code == 200, reply.text
    return reply.json()["lifecycle"]


def wait_for_state(http: httpx.Client, states: set[str], timeout: float) -> tuple[dict, list[str]]:
    """The lifecycle once it reaches one of `states`, and every state seen on the way."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        view = lifecycle(http)
        if not seen or seen[-1] != view["state"]:
            seen.append(view["state"])
        if view["state"] in states:
            return view, seen
        assert time.monotonic() < deadline, f"never reached {states}; saw {seen}"
        time.sleep(0.3)


def embed(http: httpx.Client, **headers) -> httpx.Response:
    return http.post("/api/embedding", json={"text": "wake up", "model": MODEL}, headers=headers)


def test_an_idle_model_scales_to_zero_and_the_next_request_brings_it_back(cold):
    first = lifecycle(cold)
    assert first["deployment"] == MODEL and first["replicas"] == 0
    assert first["state"] in {"available", "cached", "scaled_to_zero"}, first

    reply = embed(cold)  # no replica: this request starts one, which downloads, loads and answers
    assert reply.status_code == 200, reply.text
    answered_at = time.monotonic()
    vector = reply.json()["embedding"]
    assert len(vector) == TINY_BGE_DIMENSIONS
    ready = lifecycle(cold)
    assert ready["state"] in {"ready", "idle"} and ready["replicas"] == 1, ready  # idle after 1 s unused
    assert ready["memory"]["declared_gb"] == 0.5 and ready["memory"]["measured_peak_mb"] > 0
    assert ready["memory"]["measured_kind"] == "rss-growth" and ready["load"]["load_seconds"] > 0

    gone, seen = wait_for_state(cold, {"scaled_to_zero"}, timeout=90)
    assert "idle" in seen, seen  # unused past idle_after_seconds before its replica went
    # the profile's look-back and downscale delay (3 s + 3 s), not Serve's 30 s look-back
    assert time.monotonic() - answered_at < 20, seen
    assert gone["replicas"] == 0 and gone["loaded_replicas"] == 0

    # a caller that will not wait gets a 503 at once, with the state; the start it asked for carries on
    started = time.monotonic()
    refused = embed(cold, Prefer="wait=0")
    assert time.monotonic() - started < 5
    assert refused.status_code == 503, refused.text
    assert int(refused.headers["Retry-After"]) >= 1
    body = refused.json()
    assert body["error_code"] == "MODEL_STARTING" and body["success"] is False
    assert body["message"].startswith(f"Model '{MODEL}' is ")
    assert body["model_state"]["state"] in {"scaled_to_zero", "starting"}

    back, seen = wait_for_state(cold, {"ready", "idle"}, timeout=90)  # idle after 1 s unused
    assert "starting" in seen or seen[0] in {"ready", "idle"}, seen
    assert back["replicas"] == 1
    again = embed(cold)
    assert again.status_code == 200 and again.json()["embedding"] == pytest.approx(vector, abs=1e-6)


def test_models_managed_shows_every_deployed_models_lifecycle(client):
    assert client.post("/api/embedding", json={"text": "loaded"}).status_code == 200  # run alone: wait for its load
    body = client.get("/models/managed").json()
    lifecycles = body["lifecycles"]
    assert lifecycles["all-minilm-l6-v2"]["state"] in {"ready", "idle"}
    assert lifecycles["all-minilm-l6-v2"]["replicas"] == 2  # the test app's override by name
    assert lifecycles["musicgen-large"]["deployment"] == "musicgen-large"
    assert sum(body["summary"]["states"].values()) == len(lifecycles)
