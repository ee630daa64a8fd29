"""What a benchmark runs against: the test hub as a subprocess (bench/ imports nothing from tests/)
and its own local Ray with Serve."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def local_hub(repos: dict[str, str | Path]) -> Iterator[str]:
    """Serve each folder under its repo id with `python -m tests.hub.server`; yields the hub's URL."""
    command = [sys.executable, "-W", "ignore::RuntimeWarning", "-m", "tests.hub.server", "--port", "0",
               *(f"{repo_id}={folder}" for repo_id, folder in repos.items())]
    with subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True) as hub:
        try:
            url = hub.stdout.readline().strip()
            if not url.startswith("http"):
                raise RuntimeError(f"local hub did not start (exit code {hub.wait()})")
            yield url
        finally:
            hub.terminate()


@contextlib.contextmanager
def local_serve(**ray_init) -> Iterator[str]:
    """Our own local Ray (never one already running) with Serve's proxy on a free port; yields its URL.
    On the way out it stops Serve, the detached model manager the app created, and Ray."""
    import socket

    import ray
    from ray import serve

    from deployments.settings import ServiceSettings

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ray.init(address="local", include_dashboard=False, log_to_driver=False, **ray_init)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        settings = ServiceSettings()
        with contextlib.suppress(ValueError):  # ValueError: the manager was never created
            ray.kill(ray.get_actor(settings.manager_name, namespace=settings.manager_namespace))
        ray.shutdown()


@contextlib.contextmanager
def local_service(repos: dict[str, str | Path], work: Path, **ray_init) -> Iterator[str]:
    """`local_hub(repos)`, the app's settings pointed at it (cache and job store under `work`), and
    `local_serve(**ray_init)`; yields Serve's URL for the bench to deploy into."""
    with local_hub(repos) as endpoint:
        # Read by ServiceSettings; PYTHONPATH lets the Ray workers import deployments/.
        os.environ.update(HF_ENDPOINT=endpoint, INFERENCE_CACHE_DIR=str(work / "cache"),
                          INFERENCE_DATA_DIR=str(work / "data"), HF_HUB_DISABLE_TELEMETRY="1",
                          PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
        with local_serve(**ray_init) as base_url:
            yield base_url


def deploy_models(models: list[str], families: dict[str, dict], ray_actor_options: dict | None = None,
                  engines: dict[str, str] | None = None) -> None:
    """(Re)deploy the ingress and the named catalog models, each its own deployment with one replica;
    a second call with another user_config only reconfigures the live replicas."""
    from ray import serve

    from deployments.app import AppArgs, compose_app
    from deployments.settings import ServiceSettings
    from registry import load_catalog

    args = AppArgs(models=models, warm_models=models, runtime_pools=False, families=families, engines=engines or {})
    overrides = {model: {"ray_actor_options": ray_actor_options} for model in models} if ray_actor_options else None
    serve.run(compose_app(load_catalog(), ServiceSettings(), args, overrides), name="inference", route_prefix="/")


@contextlib.contextmanager
def random_model_service(builder: list[str], repos: Callable[[Path], dict[str, str | Path]], what: str,
                         **ray_init) -> Iterator[str]:
    """A random-weight model written by `python -m <builder[0]> <folder> <builder[1:]...>` (a tests/tiny_*
    module) into a temp folder, served from a local hub (`repos(folder)`) on a fresh local Ray; yields Serve's
    URL for the bench to deploy into."""
    with tempfile.TemporaryDirectory(prefix="bench-") as temp:
        work = Path(temp)
        print(f"writing {what}...", flush=True)
        subprocess.run([sys.executable, "-m", builder[0], str(work / "model"), *builder[1:]], cwd=REPO_ROOT,
                       check=True, capture_output=True)
        with local_service(repos(work / "model"), work, **ray_init) as base_url:
            yield base_url
