"""A two-node Ray cluster on this machine, each node with its own cache directory (the per-node
layout): an embedding replica scheduled on the second node gets the model through the manager,
on its own disk, fetched once for that node."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import MINILM_REPO, free_port

ROOT = Path(__file__).resolve().parents[1]

DRIVER = textwrap.dedent("""
    import json, sys, httpx, ray
    from ray import serve
    from deployments.app import AppArgs, compose_app
    from deployments.model_manager import ModelManager
    from deployments.settings import ServiceSettings
    from registry import load_catalog

    address, port, hub, cache_a = sys.argv[1:5]
    ray.init(address=address, namespace="serve-test", log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": int(port)})
    settings = ServiceSettings(cache_layout="per-node", cache_dir=cache_a, hub_endpoint=hub,
                               manager_name="cluster-test-manager")
    # the manager lives on the head (node_a); the model replica may only run on node_b
    ModelManager.options(name=settings.manager_name, namespace=settings.manager_namespace, lifetime="detached",
                         get_if_exists=True, resources={"node_a": 0.01}).remote(settings)
    profile = AppArgs(models=["all-minilm-l6-v2"], runtime_pools=False)
    on_b = {"all-minilm-l6-v2": {"ray_actor_options": {"num_cpus": 0, "resources": {"node_b": 0.1}}}}
    serve.run(compose_app(load_catalog(), settings, profile, on_b), name="cluster", route_prefix="/")
    reply = httpx.post(f"http://127.0.0.1:{port}/api/embedding", json={"text": "on node b"}, timeout=120)
    # the replica holds 0.1 of node_b, which only the second node has
    on_b = ray.available_resources().get("node_b", 1) < 1
    print("RESULT", json.dumps({"status": reply.status_code, "dims": len(reply.json().get("embedding", [])),
                      "replica_on_b": on_b}))
    serve.shutdown()
""")


def test_a_replica_on_the_second_node_gets_the_model_on_its_own_disk(hub, two_nodes):
    address, caches, env = two_nodes
    before = hub.file_downloads(MINILM_REPO)
    driver = subprocess.run(
        [sys.executable, "-c", DRIVER, address, str(free_port()), hub.url, str(caches["a"])],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert driver.returncode == 0, driver.stderr[-3000:]
    result = json.loads(next(line for line in driver.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert result == {"status": 200, "dims": 384, "replica_on_b": True}
    snapshot = "models--" + MINILM_REPO.replace("/", "--")
    for name in ("a", "b"):  # the manager's node (head) and the replica's node each hold a whole copy
        weights = list((caches[name] / snapshot).glob("snapshots/*/model.safetensors"))
        assert weights and weights[0].stat().st_size > 1_000_000, name
        assert not list((caches[name] / snapshot).rglob("*.incomplete")), name
    fetched = {path: hub.file_downloads(MINILM_REPO)[path] - before[path] for path in before}
    assert set(fetched.values()) == {2}  # one fetch per file per node
