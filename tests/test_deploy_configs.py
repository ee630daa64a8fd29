"""serve_config.yaml, serve_config.cpu.yaml and cluster.yaml are valid for Ray and match the app;
the README's serve command starts the service from the CPU profile and stops on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import MINILM_REPO, free_port
from tests.test_separation_jobs import make_clip

ROOT = Path(__file__).resolve().parents[1]


class StrictLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys silently; a config with one is a mistake."""

    def construct_mapping(self, node, deep=False):
        keys = [self.construct_object(key, deep=deep) for key, _ in node.value]
        repeated = sorted({str(k) for k in keys if keys.count(k) > 1})
        if repeated:
            raise yaml.constructor.ConstructorError(None, None, f"repeated keys {repeated}", node.start_mark)
        return super().construct_mapping(node, deep=deep)


def load(name: str) -> dict:
    return yaml.load((ROOT / name).read_text(), Loader=StrictLoader)


@pytest.fixture(scope="module")
def deployment_names() -> set[str]:
    from deployments.app import FAMILY_DEPLOYMENTS
    from deployments.ingress import Ingress

    return {Ingress.name, *(d.name for d in FAMILY_DEPLOYMENTS.values())}


@pytest.mark.parametrize("config_file", ["serve_config.yaml", "serve_config.cpu.yaml"])
def test_serve_config_is_valid_for_the_app(config_file, deployment_names):
    from ray.serve.schema import ServeDeploySchema

    from deployments.app import AppArgs, build_app
    from deployments.chat import ChatConfig
    from deployments.embedding import MAX_BATCH_SIZE
    from deployments.music import MusicConfig
    from deployments.separation.deployment import SeparationConfig
    from deployments.speech import SpeechConfig
    from deployments.transcription import TranscriptionConfig
    from deployments.vision import VisionConfig

    config = ServeDeploySchema.model_validate(load(config_file))
    (app,) = config.applications
    assert app.import_path == "deployments.app:build_app" and app.route_prefix == "/"
    assert build_app(AppArgs.model_validate(app.args)) is not None
    assert {d.name for d in app.deployments} == deployment_names
    embedding = next(d for d in app.deployments if d.name == "EmbeddingDeployment")
    assert embedding.max_ongoing_requests >= MAX_BATCH_SIZE  # else @serve.batch never fills
    user_configs = {d.name: d.user_config for d in app.deployments}  # what reconfigure() will be given
    SeparationConfig.model_validate(user_configs["SeparationDeployment"])
    TranscriptionConfig.model_validate(user_configs["TranscriptionDeployment"])
    MusicConfig.model_validate(user_configs["MusicDeployment"])
    SpeechConfig.model_validate(user_configs["SpeechDeployment"])
    for name, config_class in [("ChatDeployment", ChatConfig), ("VisionDeployment", VisionConfig)]:
        config = config_class.model_validate(user_configs[name])
        assert config.max_batch_size <= next(d for d in app.deployments if d.name == name).max_ongoing_requests


def test_gpu_profile_gives_models_gpu_fractions_and_autoscaling():
    app = load("serve_config.yaml")["applications"][0]
    for deployment in app["deployments"]:
        if deployment["name"] != "Ingress":
            assert 0 < deployment["ray_actor_options"]["num_gpus"] <= 1, deployment["name"]
            assert deployment["autoscaling_config"]["max_replicas"] > deployment["autoscaling_config"]["min_replicas"]


def test_cpu_profile_is_local_and_gpu_free():
    config = load("serve_config.cpu.yaml")
    assert config["http_options"] == {"host": "127.0.0.1", "port": 8000}
    assert all(d["ray_actor_options"].get("num_gpus", 0) == 0 for d in config["applications"][0]["deployments"])


def test_cluster_yaml_is_a_valid_ray_cluster_config():
    import jsonschema
    import ray

    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    cluster = load("cluster.yaml")
    jsonschema.validate(cluster, schema)
    workers = {n: t for n, t in cluster["available_node_types"].items() if n != cluster["head_node_type"]}
    assert workers and all(t["min_workers"] >= 1 for t in workers.values())
    assert any("scripts/install.sh" in command for command in cluster["setup_commands"])


@pytest.fixture
def own_hub(hub):
    """A second hub with the models this test uses, so its downloads do not count against the
    session hub's per-file fetch counts that other tests assert."""
    from tests.hub import TestHub

    second = TestHub()
    for repo_id, first_file in ((MINILM_REPO, "config.json"), ("adefossez/HTDemucs", "htdemucs.yaml")):
        second.add_repo(repo_id, hub.repos[repo_id].files[first_file].source.parent)
    second.start()
    yield second
    second.stop()


def test_readme_serve_command_starts_and_stops(own_hub, tmp_path, stale_temp_dir):
    """`bash scripts/serve.sh` (the CPU profile, on a free port here) serves on its own embedded Ray,
    though Ray's temp dir names a dead cluster (as a `ray start` that died uncleanly leaves it), then
    stops on SIGINT."""
    port = free_port()
    config = load("serve_config.cpu.yaml")
    config["http_options"]["port"] = port
    (tmp_path / "serve_config.yaml").write_text(yaml.safe_dump(config))
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "RAY_TMPDIR": str(stale_temp_dir[0]),
           "SERVE_CONFIG": str(tmp_path / "serve_config.yaml"),
           "HF_ENDPOINT": own_hub.url, "INFERENCE_CACHE_DIR": str(tmp_path / "cache"),
           "INFERENCE_DATA_DIR": str(tmp_path / "jobs")}
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(["bash", "scripts/serve.sh"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            deadline = time.monotonic() + 180
            while True:
                assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "service did not come up in 180 s"
                try:
                    if http.get("/models").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(1)
            response = http.post("/v1/embeddings", json={"input": "hello", "model": MINILM_REPO})
            assert response.status_code == 200 and len(response.json()["data"][0]["embedding"]) == 384
            file_id = http.post("/upload", files={"file": ("a.wav", make_clip(1.0))}).json()["file_id"]
            separated = http.post(f"/separate/{file_id}?wait=120").json()  # user_config of the CPU profile
            assert separated["status"] == "completed" and len(separated["files"]) == 4, separated
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=90) == 0
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
