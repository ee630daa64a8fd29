"""The model manager: one download per file however many callers ask at once, with status."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from tests.conftest import BGE_REPO, TINY_BGE_DIMENSIONS


def test_eight_concurrent_first_requests_fetch_each_file_once(client, hub, model_cache):
    before = client.get("/models/bge-small-en-v1.5").json()["download"]
    assert before["status"] == "unknown"  # nothing has asked for it yet: not cached
    assert not list(model_cache.glob("models--BAAI--bge-small-en-v1.5"))

    def first_request(i: int):
        return client.post("/api/embedding", json={"text": f"request {i}", "model": "bge-small-en-v1.5"})

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(first_request, range(8)))

    assert [r.status_code for r in responses] == [200] * 8
    assert {r.json()["dimensions"] for r in responses} == {TINY_BGE_DIMENSIONS}
    vectors = np.array([r.json()["embedding"] for r in responses])
    assert len({tuple(v.round(5)) for v in vectors}) == 8  # each caller got its own text's vector
    assert hub.file_downloads(BGE_REPO) == {path: 1 for path in hub.repos[BGE_REPO].files}

    status = client.get("/models/bge-small-en-v1.5").json()["download"]
    total = sum(f.size for f in hub.repos[BGE_REPO].files.values())
    assert (status["status"], status["progress"]) == ("completed", 100.0)
    assert status["bytes_done"] == status["bytes_total"] == total
    snapshot = model_cache / "models--BAAI--bge-small-en-v1.5" / "snapshots" / hub.repos[BGE_REPO].sha
    on_disk = {p.relative_to(snapshot).as_posix(): p.stat().st_size for p in snapshot.rglob("*") if p.is_file()}
    assert on_disk == {path: f.size for path, f in hub.repos[BGE_REPO].files.items()}
    assert not list(model_cache.rglob("*.incomplete"))


def test_embeddings_on_onnx_runtime_match_the_torch_model(client, hub, model_cache):
    """bge-small-en-v1.5 runs on ONNX Runtime in the test app: the manager exported it once, beside its files."""
    from sentence_transformers import SentenceTransformer

    texts = ["a cat sits on the mat", "stock prices fell", "hello"]
    reply = client.post("/v1/embeddings", json={"model": "bge-small-en-v1.5", "input": texts})
    assert reply.status_code == 200, reply.text
    vectors = np.array([item["embedding"] for item in reply.json()["data"]])
    assert vectors.shape == (3, TINY_BGE_DIMENSIONS)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)
    folders = sorted((model_cache / "converted" / "bge-small-en-v1.5").iterdir())
    assert [f.name for f in folders] == [f"onnx-fp32-{hub.repos[BGE_REPO].sha}"]  # the 8 first requests: one export
    folder, report = folders[0], json.loads((folders[0] / "conversion.json").read_text())
    assert (folder / "model.onnx").stat().st_size > 0 and report["cosine_min"] >= 0.99
    reference = SentenceTransformer(report["source"], device="cpu").encode(texts, normalize_embeddings=True)
    assert (vectors * reference).sum(1).min() >= 0.99
    optimize = client.post("/models/manage", params={"action": "optimize", "model_name": "bge-small-en-v1.5"})
    assert optimize.status_code == 400 and "no torch modules to optimize" in optimize.text
    again = client.post("/v1/embeddings", json={"model": "bge-small-en-v1.5", "input": texts})  # the wish withdrawn
    assert again.status_code == 200 and again.json()["data"][0]["embedding"] == reply.json()["data"][0]["embedding"]


def test_manager_dedupes_callers_in_other_processes(service, hub, model_cache):
    import ray

    from deployments.model_cache.manager import get_model_manager
    from deployments.settings import ServiceSettings
    from registry import HubRepo
    from tests.conftest import OFF_CATALOG_REPO

    settings = ServiceSettings()
    repos = [HubRepo(repo_id=OFF_CATALOG_REPO)]

    @ray.remote(num_cpus=0)
    class Barrier:
        """Releases the workers together, so their ensure() calls overlap."""

        def __init__(self, parties: int):
            self.parties, self.arrived, self.all_here = parties, 0, asyncio.Event()

        async def wait(self) -> None:
            self.arrived += 1
            if self.arrived == self.parties:
                self.all_here.set()
            await self.all_here.wait()

    @ray.remote(num_cpus=0)
    def ask_manager(barrier) -> dict[str, str]:
        ray.get(barrier.wait.remote())
        return ray.get(get_model_manager(settings).ensure.remote("tiny-encoder", repos))

    barrier = Barrier.remote(8)
    paths = ray.get([ask_manager.remote(barrier) for _ in range(8)])
    assert len({p["weights"] for p in paths}) == 1
    assert hub.file_downloads(OFF_CATALOG_REPO) == {path: 1 for path in hub.repos[OFF_CATALOG_REPO].files}
    status = ray.get(get_model_manager(settings).status.remote("tiny-encoder"))
    assert (status["status"], status["callers"]) == ("completed", 8)
    assert status["bytes_done"] == sum(f.size for f in hub.repos[OFF_CATALOG_REPO].files.values())


def test_missing_repo_fails_with_the_reason_and_leaves_nothing(service, model_cache):
    import pytest
    import ray

    from deployments.errors import ModelUnavailable
    from deployments.model_cache.manager import get_model_manager
    from deployments.settings import ServiceSettings
    from registry import HubRepo

    manager = get_model_manager(ServiceSettings())
    with pytest.raises(ModelUnavailable, match=r"Model 'ghost' could not be downloaded: RepositoryNotFoundError"):
        ray.get(manager.ensure.remote("ghost", [HubRepo(repo_id="tests/ghost")]))
    status = ray.get(manager.status.remote("ghost"))
    assert status["status"] == "failed" and "RepositoryNotFoundError" in status["error"]
    assert not list(model_cache.glob("models--tests--ghost/snapshots/*/*"))


def test_the_current_model_is_what_every_embedding_route_runs(client):
    """"Use this model" (PUT /models/current/text-embedding) reaches every route that names no model: the seed
    route and a job (the OpenAI route always names one); switching back restores the catalog's default. (In
    this file, after the first test has fetched bge-small-en-v1.5 for the first time.)"""
    from tests.conftest import TINY_BGE_DIMENSIONS

    switched = client.put("/models/current/text-embedding", json={"model": "bge-small-en-v1.5"})
    assert switched.status_code == 200, switched.text
    try:
        seed = client.post("/api/embedding", json={"text": "hello"}).json()
        assert (seed["model"], len(seed["embedding"])) == ("bge-small-en-v1.5", TINY_BGE_DIMENSIONS)
        job = client.post("/api/v1/run", params={"wait": 60},
                          json={"task": "text-embedding", "input": {"text": ["as a job"]}}).json()
        assert job["status"] == "completed" and job["model"] == "bge-small-en-v1.5", job
        assert len(job["output"]["embeddings"][0]) == TINY_BGE_DIMENSIONS
    finally:
        back = client.put("/models/current/text-embedding", json={"model": "all-minilm-l6-v2"})
    assert back.status_code == 200
    assert client.post("/api/embedding", json={"text": "hello"}).json()["model"] == "all-minilm-l6-v2"
