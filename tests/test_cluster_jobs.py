"""Jobs on a two-node cluster that shares no directory: PostgreSQL holds the job rows and an
S3-compatible store the uploads and stems. A song uploaded through the head's ingress is separated
by a replica that may only run on the second node, and its stems come back as presigned URLs."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import soundfile as sf
import sqlalchemy as sa

from tests.conftest import free_port
from tests.test_separation_jobs import make_clip

ROOT = Path(__file__).resolve().parents[1]

DRIVER = textwrap.dedent("""
    import json, sys, httpx, ray
    from ray import serve
    from deployments.app import AppArgs, compose_app
    from deployments.model_manager import ModelManager
    from deployments.settings import ServiceSettings
    from registry import load_catalog

    address, port, hub, scratch, clip = sys.argv[1:6]
    stores = json.loads(sys.argv[6])
    ray.init(address=address, namespace="serve-test", log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": int(port)})
    settings = ServiceSettings(cache_layout="per-node", hub_endpoint=hub, data_dir=scratch,
                               manager_name="cluster-jobs-manager", job_heartbeat_seconds=0.5, **stores)
    ModelManager.options(name=settings.manager_name, namespace=settings.manager_namespace, lifetime="detached",
                         get_if_exists=True, resources={"node_a": 0.01}).remote(settings)
    profile = AppArgs(models=["htdemucs"], runtime_pools=False)
    placement = {"htdemucs": {"ray_actor_options": {"num_cpus": 0, "resources": {"node_b": 0.1}}},
                 "Ingress": {"ray_actor_options": {"num_cpus": 0, "resources": {"node_a": 0.01}}}}
    serve.run(compose_app(load_catalog(), settings, profile, placement), name="cluster", route_prefix="/")
    base = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=base, timeout=300) as client:
        file_id = client.post("/upload/htdemucs", files={"file": ("song.wav", open(clip, "rb"))}).json()["file_id"]
        job = client.post(f"/separate/{file_id}", params={"wait": 240}).json()
        redirect = client.get(job["files"][0]["url"]) if job.get("files") else None
        stem = httpx.get(redirect.headers["location"], timeout=60) if redirect is not None else None
    print("RESULT", json.dumps({
        "job": job, "redirect": redirect and redirect.status_code,
        "location": redirect and redirect.headers.get("location"),
        "stem": stem and stem.content.hex(), "replica_on_b": ray.available_resources().get("node_b", 1) < 1}))
    serve.shutdown()
""")


def test_a_job_from_one_node_runs_on_the_other_with_postgresql_and_s3(own_hub, two_nodes, postgres, s3, tmp_path):
    address, _caches, env = two_nodes
    database, storage = postgres.new_database(), s3.new_prefix()
    stores = {"job_database_url": database, "storage_url": storage, **s3.settings()}
    clip, scratch = tmp_path / "song.wav", tmp_path / "scratch"
    clip.write_bytes(make_clip(1.0))
    driver = subprocess.run(
        [sys.executable, "-c", DRIVER, address, str(free_port()), own_hub.url, str(scratch), str(clip),
         json.dumps(stores)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert driver.returncode == 0, driver.stderr[-3000:]
    result = json.loads(next(line for line in driver.stdout.splitlines() if line.startswith("RESULT "))[7:])

    job = result["job"]
    assert job["status"] == "completed", job
    assert result["replica_on_b"]
    assert sorted(f["name"] for f in job["files"]) == ["bass.wav", "drums.wav", "other.wav", "vocals.wav"]
    assert result["redirect"] == 307 and result["location"].startswith(s3.endpoint)
    audio, rate = sf.read(io.BytesIO(bytes.fromhex(result["stem"])), always_2d=True)
    assert rate == 44100 and audio.shape == (44100, 2)

    # the shared state is where the settings said: the row in PostgreSQL, the files in the bucket
    with sa.create_engine(database.replace("postgresql://", "postgresql+psycopg://")).connect() as db:
        row = db.execute(sa.text("SELECT status, attempts FROM jobs WHERE id = :id"), {"id": job["job_id"]}).one()
    assert tuple(row) == ("completed", 1)
    bucket, prefix = storage[5:].split("/", 1)
    listed = s3.client().list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/")
    keys = sorted(item["Key"][len(prefix) + 1:] for item in listed["Contents"])
    assert [k for k in keys if k.startswith("results/")] == [
        f"results/{job['job_id']}/1/{name}" for name in ("bass.wav", "drums.wav", "other.wav", "vocals.wav")]
    assert sum(k.startswith("uploads/") for k in keys) == 1
    # and not on disk: the data directory is scratch space only, with nothing left in staging
    assert not (scratch / "jobs.sqlite3").exists() and not (scratch / "results").exists()
    assert list((scratch / "staging").iterdir()) == []
