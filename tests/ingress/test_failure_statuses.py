"""Serve's back-pressure and a slow model as a client sees them: 503 SERVICE_OVERLOADED with Retry-After
when a model's queue is full, 504 TIMEOUT_ERROR past REQUEST_TIMEOUT, /health's 503 when the job
database goes away. A second, small application (its own ingress, settings, limits and a PostgreSQL job
store) is deployed beside the suite's for them, then deleted."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import tiny_profile

pytestmark = pytest.mark.disruptive
EMBEDDING, MUSIC = "all-minilm-l6-v2", "musicgen-small"
TIMEOUT_S = 1.5


@pytest.fixture(scope="module")
def strict(service, postgres):
    from ray import serve

    from deployments.app import compose_app
    from deployments.settings import ServiceSettings
    from registry import load_catalog

    database = postgres.new_database()
    settings = ServiceSettings(REQUEST_TIMEOUT=TIMEOUT_S,  # seed 003's name for the setting
                               job_database_url=database)
    # one slot and one queue place for the embedding model: the third concurrent request is refused
    limits = {EMBEDDING: {"max_ongoing_requests": 1, "max_queued_requests": 1}}
    app = compose_app(load_catalog(), settings, tiny_profile(models=[EMBEDDING, MUSIC], warm_models=[EMBEDDING, MUSIC]),
                      limits)
    serve.run(app, name="strict", route_prefix="/strict")
    with httpx.Client(base_url=f"{service}/strict", timeout=120) as http:
        # The first requests time out while the replica loads the model; the load carries on for the next.
        assert served_within(lambda: http.post("/api/embedding", json={"text": "warm"}), 120).status_code == 200
        http.database = database  # type: ignore[attr-defined]  # for the test that drops it
        yield http
    serve.delete("strict")


def served_within(call, seconds: float) -> httpx.Response:
    """`call()` again until it answers 200 or `seconds` pass; its last answer."""
    deadline = time.monotonic() + seconds
    while (reply := call()).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    return reply


def test_a_full_queue_is_a_503_with_retry_after(strict):
    def embed(n: int) -> httpx.Response:
        return strict.post("/api/embedding", json={"text": [f"text {n} {i}" for i in range(32)]})

    with ThreadPoolExecutor(12) as pool:
        replies = list(pool.map(embed, range(12)))
    statuses = [r.status_code for r in replies]
    assert set(statuses) == {200, 503} and statuses.count(200) >= 2, statuses
    refused = next(r for r in replies if r.status_code == 503)
    assert refused.json()["error_code"] == "SERVICE_OVERLOADED" and float(refused.headers["retry-after"]) > 0
    assert "too many queued requests" in refused.json()["message"]
    assert embed(99).status_code == 200  # once the queue drains, served again


def test_a_model_slower_than_the_timeout_is_a_504(strict):
    reply = strict.post("/api/music", json={"prompt": "a long piano piece", "duration": 30})
    assert reply.status_code == 504, reply.text[:300]
    body = reply.json()
    assert body["error_code"] == "TIMEOUT_ERROR"
    assert body["message"] == (f"Model '{MUSIC}' did not answer within {TIMEOUT_S:g}s (REQUEST_TIMEOUT); run it as a "
                               'job instead: POST /api/v1/run with {"task": "text-to-music", "input": <this request\'s '
                               'fields>}, then GET /jobs/{job_id} for its progress and result')
    # as it says: the same fields as a job, which no request timeout cuts
    queued = strict.post("/api/v1/run", json={"task": "text-to-music",
                                              "input": {"prompt": "a long piano piece", "duration": 30}})
    assert queued.status_code == 202, queued.text
    job = strict.get(f"/jobs/{queued.json()['job_id']}", params={"wait": 240}).json()
    assert job["status"] == "completed" and job["output"]["duration"] == 30, job
    # the load the timed-out request started carried on: a short clip is served once it is done
    short = served_within(lambda: strict.post("/api/music", json={"prompt": "a note", "duration": 1}), 120)
    assert short.status_code == 200, short.text[:300]


def test_health_is_503_naming_the_job_store_when_its_database_is_gone(strict, postgres):
    healthy = strict.get("/health")
    assert healthy.status_code == 200 and healthy.json()["checks"]["job_store"]["ok"], healthy.text[:500]
    from sqlalchemy.engine import make_url

    name = make_url(strict.database).database
    postgres.server.psql(f"DROP DATABASE {name} WITH (FORCE);")  # an operator's mistake, or a lost volume
    reply = strict.get("/health")
    assert reply.status_code == 503, reply.text[:500]
    body = reply.json()
    assert body["status"] == "degraded" and body["success"] is False
    assert body["checks"]["job_store"]["ok"] is False and body["checks"]["model_manager"]["ok"] is True
    assert [p for p in body["problems"] if p.startswith("job store: ") and name in p], body["problems"]
