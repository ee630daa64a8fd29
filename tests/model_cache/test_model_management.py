"""Seed 001's model management API: downloads by id, failures and retries, url files, cache, managed models."""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor

from tests.conftest import BGE_REPO, MINILM_REPO

TERMINAL = {"completed", "failed", "cancelled"}
LOADED = {"ready", "idle"}  # a replica holds the model (idle: no request for a while)


def wait_for(client, download_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        reply = client.get(f"/models/download/status/{download_id}")
        assert reply.status_code == 200, reply.text
        status = reply.json()
        if status["status"] in TERMINAL or time.monotonic() > deadline:
            return status
        time.sleep(0.1)


def add_encoder_repo(hub, repo_id: str):
    """A fresh hub repo (a copy of the tiny BGE files) that no other test downloads."""
    return hub.add_repo(repo_id, hub.repos[BGE_REPO].files["config.json"].source.parent)


def stalled_encoder(hub, model_cache, name: str):
    """A fresh encoder repo whose biggest file the hub sends half of, then holds until `release.set()`:
    (repo, that file, release, the cache's blobs folder, the POST /models/download body)."""
    repo = add_encoder_repo(hub, f"tests/{name}")
    biggest = max(repo.files.values(), key=lambda f: f.size)
    release = hub.stall_once(repo.repo_id, biggest.path)
    blobs = model_cache / f"models--tests--{name}" / "blobs"
    body = {"source": "huggingface", "model_id": repo.repo_id, "name": name, "task": "text-embedding"}
    return repo, biggest, release, blobs, body


def wait_for_partial_file(blobs, timeout: float = 30) -> None:
    """Until the download under way has written part of a file (huggingface_hub's `*.incomplete`)."""
    deadline = time.monotonic() + timeout
    while not list(blobs.glob("*.incomplete")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list(blobs.glob("*.incomplete")), "the download never reached the stalled file"


def sha256_of(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_eight_concurrent_downloads_share_one_fetch_per_file(client, hub):
    repo = add_encoder_repo(hub, "tests/managed-encoder")
    body = {"source": "huggingface", "model_id": repo.repo_id, "name": "managed-encoder", "task": "text-embedding"}
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda _: client.post("/models/download", json=body), range(8)))

    assert [r.status_code for r in replies] == [200] * 8, replies[0].text
    ids = [r.json()["download_id"] for r in replies]
    assert len(set(ids)) == 8 and {r.json()["model_name"] for r in replies} == {"managed-encoder"}
    statuses = [wait_for(client, download_id) for download_id in ids]
    assert {(s["status"], s["progress"], s["eta"]) for s in statuses} == {("completed", 100.0, None)}
    assert statuses[0]["message"] == "Download completed successfully"
    assert statuses[0]["bytes_done"] == sum(f.size for f in repo.files.values())
    assert hub.file_downloads(repo.repo_id) == {path: 1 for path in repo.files}

    again = client.post("/models/download", json=body).json()
    assert again["status"] == "already_exists" and "already exists" in again["message"]
    assert hub.file_downloads(repo.repo_id) == {path: 1 for path in repo.files}
    cached = client.get("/models/cache/info").json()
    assert "managed-encoder" in cached["models"]
    entry = next(e for e in cached["entries"] if e["repo_id"] == repo.repo_id)
    assert entry["size_bytes"] == sum(f.size for f in repo.files.values())


def test_hub_repo_downloaded_at_run_time_is_served_without_restart(client, hub, job_store_dir):
    from tests.conftest import TINY_BGE_DIMENSIONS

    repo = add_encoder_repo(hub, "tests/runtime-encoder")
    def embed(model):
        return client.post("/api/embedding", json={"text": ["a runtime model", "b"], "model": model})

    before = embed("runtime-encoder")
    assert before.status_code == 404 and "all-minilm-l6-v2" in before.json()["message"]

    body = {"source": "huggingface", "model_id": repo.repo_id, "name": "Runtime-Encoder", "task": "text-embedding"}
    started = client.post("/models/download", json=body).json()
    assert started["model_name"] == "runtime-encoder"
    assert wait_for(client, started["download_id"])["status"] == "completed"
    for name in ("runtime-encoder", repo.repo_id):  # by its name or its hub id
        served = embed(name)
        assert served.status_code == 200, served.text
        assert served.json()["model"] == "runtime-encoder" and served.json()["dimensions"] == TINY_BGE_DIMENSIONS
    job = client.post("/api/v1/run", params={"wait": 60},
                      json={"model": "runtime-encoder", "input": {"text": ["as a job"]}})
    assert job.json()["status"] == "completed", job.text
    assert len(job.json()["output"]["embeddings"][0]) == TINY_BGE_DIMENSIONS
    listed = client.get("/models/available").json()["available_models"]["runtime-encoder"]
    assert (listed["model_id"], listed["task"]) == (repo.repo_id, "text-embedding")
    assert hub.file_downloads(repo.repo_id) == {path: 1 for path in repo.files}
    from deployments.state.store import JobStore

    # pinned to the commit the hub named when it was added: a later push to `main` is not fetched silently
    recorded = {e.id: e for e in JobStore(job_store_dir).runtime_models().entries()}["runtime-encoder"]
    assert recorded.hub.revision == repo.sha and "*.safetensors" in recorded.hub.allow_patterns

    removed = client.delete("/models/download/runtime-encoder")
    assert removed.status_code == 200, removed.text

    assert "runtime-encoder" not in [e.id for e in JobStore(job_store_dir).runtime_models().entries()]
    after = embed("runtime-encoder")
    assert after.status_code == 404 and "runtime-encoder" in after.json()["message"]
    assert "runtime-encoder" not in client.get("/models/cache/info").json()["models"]


def test_dropped_connection_is_retried_and_resumes(client, hub, model_cache):
    """The file stops half-way and the hub refuses the resume (500): the next try, after a backoff,
    resumes the partial file and completes; no file is fetched whole twice."""
    repo = add_encoder_repo(hub, "tests/flaky-encoder")
    biggest = max(repo.files.values(), key=lambda f: f.size)
    hub.cut_once(repo.repo_id, biggest.path)
    body = {"source": "huggingface", "model_id": repo.repo_id, "name": "flaky-encoder", "task": "text-embedding"}

    done = wait_for(client, client.post("/models/download", json=body).json()["download_id"])
    assert (done["status"], done["progress"], done["attempt"]) == ("completed", 100.0, 2), done
    assert done["error"] is None and done["next_retry_at"] is None
    snapshot = model_cache / "models--tests--flaky-encoder" / "snapshots" / repo.sha
    assert {p: sha256_of(snapshot / p) for p in repo.files} == {p: f.sha256 for p, f in repo.files.items()}
    assert not list(model_cache.rglob("*.incomplete"))


def test_a_hub_failing_a_file_twice_is_retried_with_backoff(client, hub, model_cache):
    """Two 503s on one file: tries 1 and 2 fail, the status shows the attempt, the reason and when the
    next try starts (0.5 s, then 1 s: INFERENCE_DOWNLOAD_RETRY_BASE_SECONDS in the tests), try 3 completes."""
    repo = add_encoder_repo(hub, "tests/overloaded-encoder")
    biggest = max(repo.files.values(), key=lambda f: f.size)
    hub.fail_next(repo.repo_id, biggest.path, 2)
    body = {"source": "huggingface", "model_id": repo.repo_id, "name": "overloaded-encoder", "task": "text-embedding"}
    download_id = client.post("/models/download", json=body).json()["download_id"]
    seen = []
    deadline = time.monotonic() + 60
    while (status := client.get(f"/models/download/status/{download_id}").json())["status"] == "downloading":
        if status["next_retry_at"]:
            seen.append((status["attempt"], status["next_retry_at"], status["error"], status["message"]))
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
    assert (status["status"], status["attempt"]) == ("completed", 3), status
    assert {attempt for attempt, *_ in seen} == {1, 2}
    attempt, next_at, error, message = seen[0]
    assert "503" in error and "Injected fault: the hub is overloaded" in error and "after: " in message
    waits = {a: at for a, at, *_ in seen}
    assert waits[2] - waits[1] >= 0.5  # the second wait (1 s) started after the first (0.5 s) ended
    assert hub.file_downloads(repo.repo_id)[biggest.path] == 1  # failed GETs sent no file


def test_a_hub_that_stays_down_fails_the_download_with_the_last_reason(client, hub):
    repo = add_encoder_repo(hub, "tests/down-encoder")
    biggest = max(repo.files.values(), key=lambda f: f.size)
    hub.fail_next(repo.repo_id, biggest.path, 100)
    body = {"source": "huggingface", "model_id": repo.repo_id, "name": "down-encoder", "task": "text-embedding"}
    failed = wait_for(client, client.post("/models/download", json=body).json()["download_id"])
    assert (failed["status"], failed["attempt"]) == ("failed", 4), failed  # INFERENCE_DOWNLOAD_ATTEMPTS' default
    assert "503" in failed["error"] and failed["error"] in failed["message"] and failed["progress"] < 100
    assert failed["success"] is False  # seed 001's clients read success; a failed download is not one
    hub.fail_next(repo.repo_id, biggest.path, 0)
    retry = client.post("/models/manage", params={"action": "retry_download", "model_name": "down-encoder"})
    assert retry.status_code == 200, retry.text
    assert wait_for(client, retry.json()["download_id"])["status"] == "completed"
    missing = {"source": "huggingface", "model_id": "tests/no-such-encoder", "name": "missing-encoder",
               "task": "text-embedding"}
    started = client.post("/models/download", json=missing)
    assert started.status_code == 200, started.text
    gone = wait_for(client, started.json()["download_id"])  # a missing repo is not retried: it fails at once
    assert (gone["status"], gone["attempt"]) == ("failed", 1), gone
    # its registration as a run-time model goes with it, so no later test meets the name
    assert client.delete("/models/download/missing-encoder").status_code == 200


def test_cancel_stops_a_running_download_mid_file_and_leaves_no_partial_file(client, hub, model_cache):
    _, biggest, release, blobs, body = stalled_encoder(hub, model_cache, "cancelled-encoder")
    try:
        started = client.post("/models/download", json=body).json()
        wait_for_partial_file(blobs)
        # as the console's Cancel button does it: by the id the model's own entry shows
        shown = client.get("/models/cancelled-encoder").json()["lifecycle"]["download"]
        assert shown["download_id"] == started["download_id"] and shown["status"] == "downloading", shown
        cancelled = client.post(f"/models/download/{shown['download_id']}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled", cancelled.text
    finally:
        release.set()  # the rest of the file arrives: the stopped download must not keep it
    deadline = time.monotonic() + 30
    while list(blobs.glob("*.incomplete")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not list(blobs.glob("*.incomplete"))
    assert not (blobs / biggest.sha256).exists()  # the file was not finished after the cancel
    status = client.get(f"/models/download/status/{started['download_id']}").json()
    assert status["status"] == "cancelled" and status["progress"] < 100

    retry = client.post("/models/manage", params={"action": "retry_download", "model_name": "cancelled-encoder"})
    assert wait_for(client, retry.json()["download_id"])["status"] == "completed"
    assert sha256_of(blobs / biggest.sha256) == biggest.sha256


def test_url_source_checks_scheme_size_and_sha256(client, hub, model_cache):
    repo = add_encoder_repo(hub, "tests/url-encoder")
    config = repo.files["config.json"]
    url = f"{hub.url}/{repo.repo_id}/resolve/main/config.json"

    body = {"source": "url", "model_id": url, "name": "url-config", "sha256": config.sha256}
    done = wait_for(client, client.post("/models/download", json=body).json()["download_id"])
    assert done["status"] == "completed", done
    saved = model_cache / "url-downloads" / "url-config" / "config.json"
    assert sha256_of(saved) == config.sha256
    assert "url-config" in client.get("/models/cache/info").json()["models"]
    late = client.post(f"/models/download/{done['download_id']}/cancel")
    assert late.status_code == 409 and "already completed" in late.json()["message"]

    wrong = {**body, "name": "url-wrong-sha", "sha256": "0" * 64}
    failed = wait_for(client, client.post("/models/download", json=wrong).json()["download_id"])
    assert failed["status"] == "failed" and "sha256 mismatch" in failed["message"]
    assert not (model_cache / "url-downloads" / "url-wrong-sha").exists()

    too_big = {**body, "name": "url-too-big", "max_size_mb": config.size / 2**20 / 2}
    failed = wait_for(client, client.post("/models/download", json=too_big).json()["download_id"])
    assert failed["status"] == "failed" and "over the limit" in failed["message"]

    local = client.post("/models/download", json={**body, "model_id": f"file://{saved}"})
    assert local.status_code == 400 and "http or https" in local.json()["message"]
    for private in ("http://10.0.0.1/model.bin", "http://169.254.169.254/latest/meta-data"):
        refused = client.post("/models/download", json={**body, "name": "url-private", "model_id": private})
        assert refused.status_code == 400 and "private" in refused.json()["message"], refused.text


def test_bad_requests_get_clear_4xx(client):
    for source in ("tts_auto", "nonsense"):  # torchvision/pytorch_hub: test_seed_001_examples
        reply = client.post("/models/download", json={"source": source, "model_id": "resnet50", "name": "r"})
        assert reply.status_code == 400
        assert "huggingface, url" in reply.json()["message"] and reply.json()["error"] == f"Invalid source: {source}"
    unknown = client.post("/models/download", json={"source": "huggingface", "model_id": "no/such-model"})
    assert unknown.status_code == 404 and "all-minilm-l6-v2" in unknown.json()["message"]
    missing = client.get("/models/download/status/does-not-exist")
    assert missing.status_code == 404 and missing.json()["success"] is False
    assert client.post("/models/download/does-not-exist/cancel").status_code == 404
    assert client.post("/models/manage", params={"action": "explode", "model_name": "x"}).status_code == 400
    gone = client.delete("/models/download/never-downloaded")
    assert gone.status_code == 404 and "not found in cache" in gone.json()["message"]


def test_available_lists_catalog_with_hub_sizes(client, hub):
    available = client.get("/models/available").json()
    bge = available["available_models"]["bge-small-en-v1.5"]
    assert bge["size_bytes"] == sum(f.size for f in hub.repos[BGE_REPO].files.values())
    assert (bge["task"], bge["model_id"]) == ("text-embedding", BGE_REPO)
    assert "text-embedding" in bge["tags"]
    assert available["download_recommendations"]["task_defaults"]["text-embedding"] == "all-minilm-l6-v2"


def test_optimize_then_delete_unloads_and_next_request_downloads_again(client, hub):
    model = "all-minilm-l6-v2"

    def embed() -> list:
        with ThreadPoolExecutor(8) as pool:
            replies = list(pool.map(lambda i: client.post("/api/embedding", json={"text": f"t{i}", "model": model}),
                                    range(8)))
        assert [r.status_code for r in replies] == [200] * 8
        return replies

    def managed() -> dict:
        return {m["name"]: m for m in client.get("/models/managed").json()["downloaded_models"]}

    for _ in range(10):  # the test app runs two embedding replicas: load the model in both
        embed()
        seen = managed().get(model)
        if seen and seen["replica_count"] == 2:
            break
    assert seen is not None and seen["device"] == "cpu" and seen["parameters"] > 1_000_000
    assert seen["memory_usage"]["allocated_mb"] > 1 and seen["deployment"] == model == "all-minilm-l6-v2"
    assert seen["replica_count"] == 2 and len({r["replica"] for r in seen["replicas"]}) == 2

    optimized = client.post("/models/manage", params={"action": "optimize", "model_name": model})
    assert optimized.status_code == 200, optimized.text
    info = optimized.json()["model"]
    assert (info["optimized"], info["optimization"]) == (True, "dynamic-int8") and "qint8" in info["dtypes"]
    assert info["memory_usage"]["allocated_mb"] < seen["memory_usage"]["allocated_mb"]
    # the replica the handle call did not reach follows within its health-check period (5 s)
    deadline = time.monotonic() + 30
    while not (row := managed()[model])["optimized"] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert [r["optimization"] for r in row["replicas"]] == ["dynamic-int8"] * 2, row["replicas"]
    assert {r.json()["dimensions"] for r in embed()} == {384}

    fetched = hub.file_downloads(MINILM_REPO)
    removed = client.delete(f"/models/download/{model}")
    assert removed.status_code == 200 and removed.json()["model_name"] == model
    assert model not in client.get("/models/cache/info").json()["models"]
    deadline = time.monotonic() + 30  # the other replica drops it at its next health check or use
    while model in managed() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert model not in managed()

    embed()
    assert hub.file_downloads(MINILM_REPO) == {path: n + 1 for path, n in fetched.items()}
    assert model in client.get("/models/cache/info").json()["models"]


def test_update_fetches_only_what_changed_in_the_newest_revision(client, hub, model_cache, tmp_path):
    import json
    import shutil

    repo = add_encoder_repo(hub, "tests/updated-encoder")
    body = {"source": "huggingface", "model_id": repo.repo_id, "name": "updated-encoder", "task": "text-embedding"}
    assert wait_for(client, client.post("/models/download", json=body).json()["download_id"])["status"] == "completed"

    changed = shutil.copytree(hub.repos[BGE_REPO].files["config.json"].source.parent, tmp_path / "v2")
    config = json.loads((changed / "config.json").read_text())
    (changed / "config.json").write_text(json.dumps({**config, "revision_note": "v2"}))
    newer = hub.add_repo(repo.repo_id, changed)
    assert newer.sha != repo.sha

    update = client.post("/models/manage", params={"action": "update", "model_name": "updated-encoder"})
    assert update.status_code == 200, update.text
    assert wait_for(client, update.json()["download_id"])["status"] == "completed"
    snapshot = model_cache / "models--tests--updated-encoder" / "snapshots" / newer.sha
    assert json.loads((snapshot / "config.json").read_text())["revision_note"] == "v2"
    assert hub.file_downloads(repo.repo_id) == {p: 2 if p == "config.json" else 1 for p in newer.files}


def test_a_download_loads_the_model_and_a_restarted_manager_remembers_the_cache(client, hub):
    """Seed 001's "download and load": the model goes ready by itself (`load: false`: only its files). The
    manager, restarted (as after a restart of the service), knows what is on disk: `cached`, and a download
    request answers `already_exists` at once, fetching nothing again."""
    import ray

    from deployments.model_cache.manager import get_model_manager
    from deployments.settings import ServiceSettings
    from tests.model_cache.test_model_lifecycle import lifecycle

    loaded, kept = add_encoder_repo(hub, "tests/loaded-encoder"), add_encoder_repo(hub, "tests/kept-encoder")
    bodies = {repo.repo_id: {"source": "huggingface", "model_id": repo.repo_id, "name": repo.repo_id.split("/")[1],
                             "task": "text-embedding"} for repo in (loaded, kept)}
    started = client.post("/models/download", json=bodies[loaded.repo_id]).json()
    assert started["load"] == "loading once downloaded: GET /models shows it ready"
    only_files = client.post("/models/download", json={**bodies[kept.repo_id], "load": False}).json()
    assert only_files["load"] == "not requested"
    for reply in (started, only_files):
        assert wait_for(client, reply["download_id"])["status"] == "completed"
    deadline = time.monotonic() + 60
    while lifecycle(client, "loaded-encoder")["state"] not in LOADED and time.monotonic() < deadline:
        time.sleep(0.5)
    assert lifecycle(client, "loaded-encoder")["state"] in LOADED
    assert lifecycle(client, "kept-encoder")["state"] == "cached"

    manager = get_model_manager(ServiceSettings())
    ray.kill(manager, no_restart=False)  # restarted by Ray with an empty memory, as a new service starts it
    deadline = time.monotonic() + 60
    while True:
        try:
            ray.get(manager.status.remote(), timeout=10)
            break
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            assert time.monotonic() < deadline, "the model manager did not come back"
            time.sleep(0.5)
    assert lifecycle(client, "kept-encoder")["state"] == "cached"
    again = client.post("/models/download", json={**bodies[kept.repo_id], "load": False}).json()
    assert again["status"] == "already_exists" and again["message"].startswith("Model 'kept-encoder' already exists")
    assert client.get(f"/models/download/status/{again['download_id']}").json()["progress"] == 100.0
    for repo in (loaded, kept):
        assert hub.file_downloads(repo.repo_id) == {path: 1 for path in repo.files}
