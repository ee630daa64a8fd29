"""No job is stranded: more jobs than a model's slots plus its queue are submitted at once to a copy of the
application whose embedding model takes one request at a time and queues one more (back-pressure for the
rest). Every job completes; none stays pending."""

from __future__ import annotations

import time

import httpx
import pytest

JOBS = 10  # ~1 s each: the last wait far longer than the 3 tries x 2 s a dispatch once gave up after
TEXTS = [f"sentence number {i} about a queue that is full" for i in range(64)]


@pytest.fixture(scope="module")
def queued(service):
    from ray import serve

    from deployments.app import AppArgs, compose_app
    from deployments.settings import ServiceSettings
    from registry import load_catalog

    args = AppArgs(models=["all-minilm-l6-v2"], runtime_pools=False, max_queued_requests=1)
    app = compose_app(load_catalog(), ServiceSettings(), args,
                      {"all-minilm-l6-v2": {"max_ongoing_requests": 1, "num_replicas": 1}})
    serve.run(app, name="queued", route_prefix="/queued")
    with httpx.Client(base_url=f"{service}/queued", timeout=60) as http:
        yield http
    serve.delete("queued")


def test_more_jobs_than_slots_and_queue_all_complete(queued):
    ids = []
    for _ in range(JOBS):
        reply = queued.post("/api/v1/run", json={"model": "all-minilm-l6-v2", "input": {"text": TEXTS}})
        assert reply.status_code == 202, reply.text
        ids.append(reply.json()["job_id"])
    deadline = time.monotonic() + 240
    statuses: dict[str, str] = {}
    while time.monotonic() < deadline:
        statuses = {job_id: queued.get(f"/jobs/{job_id}").json()["status"] for job_id in ids}
        if all(status in ("completed", "failed", "cancelled") for status in statuses.values()):
            break
        time.sleep(1)
    assert list(statuses.values()) == ["completed"] * JOBS, statuses
    first = queued.get(f"/jobs/{ids[0]}").json()
    assert len(first["output"]["embeddings"]) == len(TEXTS)
