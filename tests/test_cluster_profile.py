"""The cluster profile as shipped, deployed with docs/deploying.md's command, `serve deploy serve_config.yaml`, to a
running Ray that declares what cluster.yaml keeps at start: the m6i.xlarge head's 4 CPUs and one g5.xlarge
worker's 4 CPUs and 24 GB GPU (one node here; the GPU is declared, the replicas run on this CPU).

The profile's text is deployed unchanged but for its two folders (/mnt/models/hub is the cluster's shared
mount, /tmp/ray-inference its scratch), which point into the test's temp dir. The nodes' environment
carries what cluster.yaml's node.env and instance role give a real cluster: the PostgreSQL URL, the S3
endpoint and keys (a SeaweedFS holding the profile's bucket), and the hub endpoint.

Runs before the session's own application starts (conftest orders it), so the box is this cluster's."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import soundfile as sf
import sqlalchemy as sa
import yaml

from tests.conftest import free_port
from tests.families.test_separation_jobs import make_clip
from tests.launch.test_as_shipped import SHIPPED_PORT, mirror_hub, port_is_free  # noqa: F401  (a fixture)
from tests.ray_nodes import RAY, _stop_nodes

pytestmark = pytest.mark.own_ray  # starts a Ray of its own: runs before the session's application

ROOT = Path(__file__).resolve().parents[1]
SERVE = str(Path(sys.executable).parent / "serve")
RUNNING_BOUND_S = 420
STEMS = ["bass.wav", "drums.wav", "other.wav", "vocals.wav"]
HEAD_AND_ONE_WORKER = {"CPU": 8, "GPU": 1}  # cluster.yaml: head m6i.xlarge (4 vCPU) + one g5.xlarge (4, 1 A10G)

RESOURCES = "import json, ray; ray.init(address={!r}, log_to_driver=False); " \
            "print(json.dumps([ray.cluster_resources(), ray.available_resources()]))"


def as_shipped_but_folders(text: str, folders: dict[str, Path], port: int) -> str:
    """The shipped profile's text with each folder replaced once (and the port, only if 8000 is taken here)."""
    for shipped, here in folders.items():
        assert text.count(shipped) == 1, shipped
        text = text.replace(shipped, str(here))
    if port != SHIPPED_PORT:
        text = text.replace(f"port: {SHIPPED_PORT}\n", f"port: {port}\n", 1)
    return text


def application(dashboard: str) -> dict:
    return httpx.get(f"{dashboard}/api/serve/applications/", timeout=10).json()["applications"].get("inference", {})


@contextlib.contextmanager
def deployed_on_ray(config: Path, resources: dict[str, int], node_env: dict[str, str]) -> Iterator[dict]:
    """A Ray head declaring `resources` (CPU, GPU), started with `node_env` as a node's environment, then
    `serve deploy <config>` as the docs run it, from the checkout: the application once RUNNING (its
    dashboard view, the GCS address); everything this Ray started is stopped afterwards."""
    temp = tempfile.mkdtemp(prefix="rc", dir="/tmp")  # Ray's socket paths must stay short
    gcs, dashboard_port = free_port(), free_port()
    dashboard = f"http://127.0.0.1:{dashboard_port}"
    try:
        subprocess.run([RAY, "start", "--head", f"--port={gcs}", f"--num-cpus={resources['CPU']}",
                        f"--num-gpus={resources['GPU']}", f"--temp-dir={temp}",
                        "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}",
                        f"--metrics-export-port={free_port()}", "--disable-usage-stats"],
                       env=node_env, check=True, capture_output=True, timeout=120)
        deployed = subprocess.run([SERVE, "deploy", str(config), "-a", dashboard], cwd=ROOT, env=node_env,
                                  capture_output=True, text=True, timeout=120)
        assert deployed.returncode == 0, deployed.stdout[-2000:] + deployed.stderr[-2000:]
        started = time.monotonic()
        while (app := application(dashboard)).get("status") != "RUNNING":
            failed = {name: d for name, d in app.get("deployments", {}).items()
                      if d["status"] in ("DEPLOY_FAILED", "UNHEALTHY")}
            assert app.get("status") != "DEPLOY_FAILED" and not failed, (app.get("message"), failed)
            assert time.monotonic() - started < RUNNING_BOUND_S, json.dumps(app)[-3000:]
            time.sleep(2)
        print(f"\nserve deploy {config.name}: RUNNING after {time.monotonic() - started:.0f}s")
        yield {"app": app, "address": f"127.0.0.1:{gcs}"}
    finally:
        subprocess.run([SERVE, "shutdown", "-a", dashboard, "-y"], env=node_env, capture_output=True, timeout=120)
        _stop_nodes([temp])


def ray_resources(address: str, env: dict[str, str]) -> tuple[dict, dict]:
    """(all, free) resources of the Ray at `address`."""
    probe = subprocess.run([sys.executable, "-c", RESOURCES.format(address)], env=env, capture_output=True,
                           text=True, timeout=120)
    total, free = json.loads(probe.stdout.splitlines()[-1])
    return total, free


def node_environment(hub_url: str, **extra: str) -> dict[str, str]:
    """This process' environment without Ray's or the service's variables, plus a node's own."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "INFERENCE_"))},
            "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", "HF_ENDPOINT": hub_url, **extra}


@pytest.fixture(scope="module")
def cluster(mirror_hub, postgres, s3, tmp_path_factory):  # noqa: F811
    folder = tmp_path_factory.mktemp("cluster-profile")
    shipped = (ROOT / "serve_config.yaml").read_text()
    profile = yaml.safe_load(shipped)
    env_vars = profile["applications"][0]["runtime_env"]["env_vars"]
    bucket = env_vars["INFERENCE_STORAGE_URL"].removeprefix("s3://").split("/")[0]
    s3.client().create_bucket(Bucket=bucket)  # the operator's bucket, named as the profile names it
    port = SHIPPED_PORT if port_is_free(SHIPPED_PORT) else free_port()
    config = folder / "serve_config.yaml"
    config.write_text(as_shipped_but_folders(shipped, {env_vars["INFERENCE_CACHE_DIR"]: folder / "models" / "hub",
                                                       env_vars["INFERENCE_DATA_DIR"]: folder / "scratch"}, port))
    database = postgres.new_database()
    # what ~/.config/inference/node.env and the instance role give each node of a real cluster
    node_env = node_environment(mirror_hub.url, INFERENCE_JOB_DATABASE_URL=database, AWS_ENDPOINT_URL=s3.endpoint,
                                AWS_ACCESS_KEY_ID=s3.settings()["s3_access_key_id"],
                                AWS_SECRET_ACCESS_KEY=s3.settings()["s3_secret_access_key"])
    # docs/deploying.md's command, from the checkout, as `ray exec cluster.yaml '... serve deploy ...'` runs it
    with deployed_on_ray(config, HEAD_AND_ONE_WORKER, node_env) as deployed:
        yield {**deployed, "url": f"http://127.0.0.1:{port}", "profile": profile, "database": database,
               "bucket": bucket, "env": node_env}


def test_cluster_profile_deploys_as_shipped_and_fits_the_head_and_one_gpu_worker(cluster):
    """Every deployment HEALTHY; the warm replicas hold their GPU fractions of the one GPU and fit the CPUs
    the profile declares (`cpus: 8`), so nothing waits for the autoscaler at start."""
    from deployments.app import AppArgs, plan_app
    from registry import load_catalog

    deployments = cluster["app"]["deployments"]
    assert {name: d["status"] for name, d in deployments.items()} == dict.fromkeys(deployments, "HEALTHY")
    args = AppArgs.model_validate(cluster["profile"]["applications"][0]["args"])
    warm = [p for p in plan_app(load_catalog(), args) if p.min_replicas]
    assert {p.name for p in warm} == set(args.warm_models)
    total, free = ray_resources(cluster["address"], cluster["env"])
    profile_deployments = cluster["profile"]["applications"][0]["deployments"]
    overrides = {d["name"]: d.get("ray_actor_options", {}) for d in profile_deployments}
    gpu_fractions = sum(overrides.get(p.name, {}).get("num_gpus", p.options["ray_actor_options"]["num_gpus"])
                        for p in warm)
    assert total["GPU"] - free.get("GPU", 0) == pytest.approx(gpu_fractions) and gpu_fractions <= 1
    used_cpus = total["CPU"] - free.get("CPU", 0)
    assert used_cpus <= args.cpus, used_cpus
    print(f"warm: {len(warm)} models, {gpu_fractions:.2f} of the GPU, {used_cpus:g} of {total['CPU']:g} CPUs")


def test_cluster_profile_serves_with_postgresql_and_its_s3_bucket(cluster, s3):
    """A request per warm kind answers; a separation job's row lands in PostgreSQL, its stems in the
    profile's bucket, and a stem download answers with a presigned URL into it."""
    with httpx.Client(base_url=cluster["url"], timeout=300) as http:
        assert http.get("/health").status_code == 200
        embedded = http.post("/v1/embeddings", json={"input": "on the cluster", "model": "all-minilm-l6-v2"})
        assert embedded.status_code == 200 and len(embedded.json()["data"][0]["embedding"]) == 384
        chat = http.post("/v1/chat/completions", json={"model": "qwen2.5-0.5b-instruct", "max_tokens": 4,
                                                       "messages": [{"role": "user", "content": "hi"}]})
        assert chat.status_code == 200, chat.text
        realtime_text_turn(cluster["url"])
        upload = http.post("/upload", files={"file": ("song.wav", make_clip(1.0))})
        assert upload.status_code == 201, upload.text
        job = http.post(f"/separate/{upload.json()['file_id']}", params={"wait": 240}).json()
        assert job["status"] == "completed", job
        redirect = http.get(job["files"][0]["url"])
    assert redirect.status_code == 307
    location = redirect.headers["location"]
    assert location.startswith(f"{s3.endpoint}/{cluster['bucket']}/jobs/"), location
    audio, rate = sf.read(io.BytesIO(httpx.get(location, timeout=60).content), always_2d=True)
    assert rate == 44100 and audio.shape == (44100, 2)
    engine = sa.create_engine(cluster["database"].replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as connection:
        statuses = [row[0] for row in connection.execute(sa.text("SELECT status FROM jobs"))]
    engine.dispose()
    assert statuses == ["completed"]
    listed = s3.client().list_objects_v2(Bucket=cluster["bucket"], Prefix=f"jobs/results/{job['job_id']}/")
    assert sorted(item["Key"].rsplit("/", 1)[1] for item in listed["Contents"]) == STEMS


def realtime_text_turn(url: str) -> None:
    """A realtime conversation's text turn over WebSocket through Serve's Python proxy (this Ray's mode)."""
    from tests.realtime.test_realtime_protocol import Socket

    with Socket(url, "model=qwen2.5-0.5b-instruct") as socket:
        socket.until("session.created")
        socket.send(type="conversation.item.create", item={"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "hi"}]})
        socket.send(type="response.create", response={"max_output_tokens": 4, "output_modalities": ["text"]})
        assert socket.until("response.done")[-1]["response"]["status"] == "completed"
