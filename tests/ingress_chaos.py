"""An ingress replica killed under load, in Serve's HAProxy mode (INFERENCE_SERVE_MODE=haproxy), on a Ray of its
own: that mode's variables must be set before Ray starts, so tests/test_chaos.py runs this as a subprocess.

    python -m tests.ingress_chaos HUB_URL WORK_DIR OUT_JSON

Two ingress replicas and the real MiniLM behind them; 4 clients post embeddings back to back; one ingress
replica is killed (a crash, not a drain). OUT_JSON gets the requests, the failed ones and how soon a request
that started after the kill succeeded.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import httpx

from deployments.launch.serve_launcher import serve_mode_environment

MODEL = "all-minilm-l6-v2"


def haproxy_setting(name: str) -> str | None:
    """A setting as written in the HAProxy config Serve generated for this node (the defaults' line)."""
    import ray

    default = Path(os.environ.get("RAY_SERVE_HAPROXY_CONFIG_FILE_LOC", "/tmp/haproxy-serve/haproxy.cfg"))
    config = default.parent / ray.get_runtime_context().get_node_id() / default.name
    lines = [line.split(None, 1) for line in config.read_text().splitlines() if line.strip()]
    return next((words[1] for words in lines if words[0] == name and len(words) == 2), None)


def main(hub_url: str, work: Path, out: Path) -> None:
    os.environ.update(serve_mode_environment({**os.environ, "INFERENCE_SERVE_MODE": "haproxy"}))
    os.environ.update(HF_ENDPOINT=hub_url, INFERENCE_CACHE_DIR=str(work / "cache"),
                      INFERENCE_DATA_DIR=str(work / "data"))
    for name in ("INFERENCE_JOB_DATABASE_URL", "INFERENCE_STORAGE_URL", "RAY_ADDRESS"):  # a store of its own
        os.environ.pop(name, None)
    import ray
    from ray import serve

    from deployments.app import AppArgs, compose_app
    from deployments.settings import ServiceSettings
    from registry import load_catalog
    from tests.conftest import free_port
    from tests.test_chaos import SteadyLoad, wait_until_steady

    port = free_port()
    ray.init(address="local", num_cpus=8, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        args = AppArgs(models=[MODEL], warm_models=[MODEL], runtime_pools=False, families={})
        serve.run(compose_app(load_catalog(), ServiceSettings(), args, {"Ingress": {"num_replicas": 2}}),
                  name="inference", route_prefix="/")
        base_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while httpx.post(f"{base_url}/api/embedding", json={"text": "warm"}, timeout=60).status_code != 200:
            assert time.monotonic() < deadline, "the service never answered"
            time.sleep(0.5)
        with SteadyLoad(base_url, replay_dropped=True) as load:
            wait_until_steady(load, successes=40)  # both ingress replicas have served
            ingresses = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                         if a["name"].startswith("SERVE_REPLICA::inference#Ingress#")]
            killed_at = time.monotonic()
            ray.kill(ray.get_actor(ingresses[0], namespace="serve"), no_restart=True)
            time.sleep(10)
        out.write_text(json.dumps({
            "ingress_replicas": len(ingresses), "requests": len(load.results),
            "after_kill": sum(1 for started, *_ in load.results if started >= killed_at),
            "failed_after_kill_s": [[round(started - killed_at, 3), round(ended - killed_at, 3), status]
                                    for started, ended, status in load.failures()],
            "errors": load.errors, "client_replays": load.replayed,
            "served_again_s": load.served_again_after(killed_at),
            "longest_request_s": load.longest_wait(),
            "haproxy_retries": haproxy_setting("retries"), "haproxy_retry_on": haproxy_setting("retry-on")}))
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))
