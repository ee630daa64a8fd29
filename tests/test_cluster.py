"""A two-node Ray cluster on this machine that shares no directory: each node keeps its own model
cache (the per-node layout), PostgreSQL holds the job rows and an S3-compatible store the uploads
and stems. The embedding and separation replicas may only run on the second node; the ingress and
the model manager run on the head. One application run, looked at by each test."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import soundfile as sf
import sqlalchemy as sa

from tests.conftest import MINILM_REPO, free_port
from tests.families.test_separation_jobs import make_clip

pytestmark = pytest.mark.own_ray  # starts a Ray of its own: runs before the session's application

ROOT = Path(__file__).resolve().parents[1]
STEMS = ["bass.wav", "drums.wav", "other.wav", "vocals.wav"]

DRIVER = textwrap.dedent("""
    import json, sys, httpx, ray
    from ray import serve
    from deployments.app import AppArgs, compose_app
    from deployments.model_cache.manager import ModelManager
    from deployments.settings import ServiceSettings
    from registry import load_catalog

    address, port, hub, cache_a, scratch, clip = sys.argv[1:7]
    stores = json.loads(sys.argv[7])
    ray.init(address=address, namespace="serve-test", log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": int(port)})
    settings = ServiceSettings(cache_layout="per-node", cache_dir=cache_a, hub_endpoint=hub, data_dir=scratch,
                               manager_name="cluster-test-manager", job_heartbeat_seconds=0.5, **stores)
    # the manager and the ingress live on the head (node_a); the model replicas may only run on node_b
    ModelManager.options(name=settings.manager_name, namespace=settings.manager_namespace, lifetime="detached",
                         get_if_exists=True, resources={"node_a": 0.01}).remote(settings)
    on_b = {"ray_actor_options": {"num_cpus": 0, "resources": {"node_b": 0.1}}}
    placement = {"all-minilm-l6-v2": on_b, "htdemucs": on_b,
                 "Ingress": {"ray_actor_options": {"num_cpus": 0, "resources": {"node_a": 0.01}}}}
    profile = AppArgs(models=["all-minilm-l6-v2", "htdemucs"], runtime_pools=False)
    serve.run(compose_app(load_catalog(), settings, profile, placement), name="cluster", route_prefix="/")
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300) as client:
        embedded = client.post("/api/embedding", json={"text": "on node b"})
        file_id = client.post("/upload/htdemucs", files={"file": ("song.wav", open(clip, "rb"))}).json()["file_id"]
        job = client.post(f"/separate/{file_id}", params={"wait": 240}).json()
        redirect = client.get(job["files"][0]["url"]) if job.get("files") else None
        stem = httpx.get(redirect.headers["location"], timeout=60) if redirect is not None else None
    print("RESULT", json.dumps({
        "embedding": {"status": embedded.status_code, "dims": len(embedded.json().get("embedding", []))},
        "job": job, "redirect": redirect and redirect.status_code,
        "location": redirect and redirect.headers.get("location"), "stem": stem and stem.content.hex(),
        # the replicas hold 0.2 of node_b, which only the second node has
        "replicas_on_b": round(1 - ray.available_resources().get("node_b", 1), 2)}))
    serve.shutdown()
""")


@pytest.fixture(scope="module")
def cluster_run(own_hub, two_nodes, postgres, s3, tmp_path_factory):
    address, caches, env = two_nodes
    folder = tmp_path_factory.mktemp("cluster-run")
    stores = {"job_database_url": postgres.new_database(), "storage_url": s3.new_prefix(), **s3.settings()}
    clip, scratch = folder / "song.wav", folder / "scratch"
    clip.write_bytes(make_clip(1.0))
    driver = subprocess.run(
        [sys.executable, "-c", DRIVER, address, str(free_port()), own_hub.url, str(caches["a"]), str(scratch),
         str(clip), json.dumps(stores)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert driver.returncode == 0, driver.stderr[-3000:]
    result = json.loads(next(line for line in driver.stdout.splitlines() if line.startswith("RESULT "))[7:])
    return result, caches, stores, scratch, own_hub


def test_a_replica_on_the_second_node_gets_the_model_on_its_own_disk(cluster_run):
    result, caches, _, _, hub = cluster_run
    assert result["embedding"] == {"status": 200, "dims": 384} and result["replicas_on_b"] == 0.2
    for repo_id in (MINILM_REPO, "adefossez/HTDemucs"):
        snapshot = "models--" + repo_id.replace("/", "--")
        for name in ("a", "b"):  # the manager's node (head) and the replica's node each hold a whole copy
            files = [p for p in (caches[name] / snapshot).glob("snapshots/*/*") if p.is_file()]
            assert files and max(p.stat().st_size for p in files) > 100_000, (repo_id, name)
            assert not list((caches[name] / snapshot).rglob("*.incomplete")), (repo_id, name)
        assert set(hub.file_downloads(repo_id).values()) == {2}, repo_id  # one fetch per file per node


def test_a_job_from_the_head_runs_on_the_other_node_with_postgresql_and_s3(cluster_run, s3):
    result, _, stores, scratch, _ = cluster_run
    job = result["job"]
    assert job["status"] == "completed", job
    assert sorted(f["name"] for f in job["files"]) == STEMS
    assert result["redirect"] == 307 and result["location"].startswith(s3.endpoint)
    audio, rate = sf.read(io.BytesIO(bytes.fromhex(result["stem"])), always_2d=True)
    assert rate == 44100 and audio.shape == (44100, 2)

    # the shared state is where the settings said: the row in PostgreSQL, the files in the bucket
    url = stores["job_database_url"].replace("postgresql://", "postgresql+psycopg://")
    with sa.create_engine(url).connect() as db:
        row = db.execute(sa.text("SELECT status, attempts FROM jobs WHERE id = :id"), {"id": job["job_id"]}).one()
    assert tuple(row) == ("completed", 1)
    bucket, prefix = stores["storage_url"][5:].split("/", 1)
    listed = s3.client().list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/")
    keys = sorted(item["Key"][len(prefix) + 1:] for item in listed["Contents"])
    assert [k for k in keys if k.startswith("results/")] == [f"results/{job['job_id']}/1/{name}" for name in STEMS]
    assert sum(k.startswith("uploads/") for k in keys) == 1
    # and not on disk: the data directory is scratch space only, with nothing left in staging
    assert not (scratch / "jobs.sqlite3").exists() and not (scratch / "results").exists()
    assert list((scratch / "staging").iterdir()) == []
