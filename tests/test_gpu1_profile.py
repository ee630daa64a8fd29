"""The one-GPU profile as shipped, `serve deploy serve_config.gpu1.yaml` (as `serve run` would run it), on a Ray
that declares what the host it is for has: a g5.xlarge's 4 CPUs and one 24 GB GPU (declared; the replicas run
on this CPU). Only the hub endpoint and the folders come from the environment. Runs before the session's
application starts (own_ray)."""

from __future__ import annotations

import httpx
import pytest
import yaml

from tests.conftest import free_port
from tests.launch.test_as_shipped import SHIPPED_PORT, mirror_hub, port_is_free  # noqa: F401  (a fixture)
from tests.test_cluster_profile import ROOT, as_shipped_but_folders, deployed_on_ray, node_environment, ray_resources

pytestmark = pytest.mark.own_ray  # starts a Ray of its own: runs before the session's application
ONE_GPU_HOST = {"CPU": 4, "GPU": 1}  # g5.xlarge: 4 vCPU, 1 A10G


@pytest.fixture(scope="module")
def one_gpu_host(mirror_hub, tmp_path_factory):  # noqa: F811
    folder = tmp_path_factory.mktemp("gpu1-profile")
    shipped = (ROOT / "serve_config.gpu1.yaml").read_text()
    port = SHIPPED_PORT if port_is_free(SHIPPED_PORT) else free_port()
    config = folder / "serve_config.gpu1.yaml"
    config.write_text(as_shipped_but_folders(shipped, {}, port))  # no folders in it; port 8000 unless taken
    node_env = node_environment(mirror_hub.url, INFERENCE_CACHE_DIR=str(folder / "cache"),
                                INFERENCE_DATA_DIR=str(folder / "data"))
    with deployed_on_ray(config, ONE_GPU_HOST, node_env) as deployed:
        yield {**deployed, "url": f"http://127.0.0.1:{port}", "profile": yaml.safe_load(shipped), "env": node_env}


def test_one_gpu_profile_deploys_as_shipped_and_its_warm_models_share_the_gpu(one_gpu_host):
    """Every deployment HEALTHY; the task defaults (13 GB of the 24 GB card) hold 0.60 of the GPU and fit the
    host's 4 CPUs with the ingress; each answers, and the models left out say so."""
    from deployments.app import AppArgs, plan_app
    from registry import load_catalog

    deployments = one_gpu_host["app"]["deployments"]
    assert {name: d["status"] for name, d in deployments.items()} == dict.fromkeys(deployments, "HEALTHY")
    args = AppArgs.model_validate(one_gpu_host["profile"]["applications"][0]["args"])
    warm = sum(p.options["ray_actor_options"]["num_gpus"] for p in plan_app(load_catalog(), args) if p.min_replicas)
    assert warm == pytest.approx(0.60)  # 0.60 rounded up per model
    total, free = ray_resources(one_gpu_host["address"], one_gpu_host["env"])
    assert total["GPU"] - free.get("GPU", 0) == pytest.approx(warm)
    assert total["CPU"] - free.get("CPU", 0) <= ONE_GPU_HOST["CPU"]
    with httpx.Client(base_url=one_gpu_host["url"], timeout=120) as http:
        reply = http.post("/api/embedding", json={"text": "on one gpu"})
        assert reply.status_code == 200 and len(reply.json()["embedding"]) == 384
        models = {m["id"]: m for m in http.get("/models").json()["models"]}
        assert models["musicgen-large"]["is_active"] is False  # left out: it cannot fit beside the warm ones
        lifecycle = http.get("/models/musicgen-small").json()["lifecycle"]
        assert lifecycle["state"] in {"ready", "idle", "loading"} and lifecycle["replicas"] == 1, lifecycle
