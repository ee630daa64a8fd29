"""Nothing grows without bound, nothing comes from where it should not: a copy of the application with
its own job store, short retention, a tiny model-cache quota and the default run-time model sources.
Finished jobs, their results and uploads go once their time is up (a saved voice's sample would stay),
staging a crash left is swept at start, a download past the quota is a 507 that gives the numbers, and
a run-time model from a source the catalog does not use is a 403."""

from __future__ import annotations

import os
import time

import httpx
import pytest

from tests.families.test_separation_jobs import make_clip

QUOTA_BYTES = 1000


@pytest.fixture(scope="module")
def short_lived(service, tmp_path_factory):
    from ray import serve

    from deployments.app import AppArgs, compose_app
    from deployments.settings import ServiceSettings
    from registry import load_catalog

    data_dir = tmp_path_factory.mktemp("short-lived")
    crashed = data_dir / "staging" / "upload-left-by-a-crash"
    crashed.mkdir(parents=True)
    (crashed / "upload.wav").write_bytes(b"half a file")
    os.utime(crashed, (time.time() - 7200, time.time() - 7200))
    settings = ServiceSettings(data_dir=data_dir, job_retention_seconds=5, upload_retention_seconds=5,
                               retention_sweep_seconds=1, model_cache_max_bytes=QUOTA_BYTES,
                               runtime_model_sources="")  # the default (the session allows any)
    app = compose_app(load_catalog(), settings, AppArgs(models=["all-minilm-l6-v2"], runtime_pools=False))
    serve.run(app, name="short-lived", route_prefix="/short-lived")
    with httpx.Client(base_url=f"{service}/short-lived", timeout=60) as http:
        assert http.post("/api/embedding", json={"text": "warm"}).status_code == 200  # loaded: jobs take ms
        yield http, data_dir
    serve.delete("short-lived")


def test_jobs_results_and_uploads_go_when_their_time_is_up(short_lived):
    http, data_dir = short_lived
    assert not (data_dir / "staging" / "upload-left-by-a-crash").exists()  # swept when the ingress started
    upload = http.post("/upload/demucs", files={"file": ("song.wav", make_clip(0.5))})
    assert upload.status_code == 201, upload.text
    file_id = upload.json()["file_id"]
    assert (data_dir / "uploads" / file_id).is_dir()
    job = http.post("/api/v1/run", params={"wait": 60}, json={"model": "all-minilm-l6-v2", "input": {"text": "x"}})
    assert job.status_code == 200 and job.json()["status"] == "completed", job.text
    job_id = job.json()["job_id"]
    assert http.get(f"/jobs/{job_id}").status_code == 200  # kept for 5 s after it finished
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (http.get(f"/jobs/{job_id}").status_code == 200
                                           or (data_dir / "uploads" / file_id).exists()):
        time.sleep(0.5)
    assert http.get(f"/jobs/{job_id}").status_code == 404
    assert not (data_dir / "uploads" / file_id).exists()
    gone = http.post(f"/process/demucs/{file_id}", json={})
    assert gone.status_code in (404, 503) and job_id not in [j["job_id"] for j in http.get("/jobs").json()["jobs"]]


def test_a_download_past_the_cache_quota_is_refused_with_the_numbers(short_lived, hub):
    from tests.model_cache.test_model_management import add_encoder_repo

    http, _ = short_lived
    repo = add_encoder_repo(hub, "BAAI/quota-probe-encoder").repo_id  # an organisation the catalog uses, never fetched
    reply = http.post("/models/download", json={"model_id": repo, "task": "text-embedding", "name": "quota-probe"})
    assert reply.status_code == 507, reply.text
    body = reply.json()
    assert body["error_code"] == "INSUFFICIENT_STORAGE" and "quota (INFERENCE_MODEL_CACHE_MAX_BYTES)" in body["message"]
    assert "MB more" in body["message"]
    info = http.get("/models/cache/info").json()
    assert info["quota_bytes"] == QUOTA_BYTES and info["free_bytes"] <= 0  # the session's cache is far past 1 kB
    assert repo not in {entry.get("repo_id") for entry in info["entries"]}
    assert "quota-probe" not in [m["id"] for m in http.get("/models").json()["models"]]  # no run-time model left


def test_run_time_models_come_only_from_the_catalogs_sources_by_default(short_lived):
    http, _ = short_lived
    for body, source in [({"model_id": "someone/anything", "task": "text-embedding"}, "'someone'"),
                         ({"source": "s3", "model_id": "s3://another-bucket/model", "name": "x",
                           "task": "text-embedding"}, "'s3://another-bucket'"),
                         ({"model_id": "all-minilm-l6-v2", "include_vocoder": True, "vocoder_model": "evil/vocoder"},
                          "'evil'")]:
        reply = http.post("/models/download", json=body)
        assert reply.status_code == 403, reply.text
        message = reply.json()["message"]
        assert reply.json()["error_code"] == "MODEL_SOURCE_NOT_ALLOWED" and source in message, message
        assert "sentence-transformers" in message and "INFERENCE_RUNTIME_MODEL_SOURCES" in message
