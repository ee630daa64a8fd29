"""The README's serve command starts its own Ray, even when a dead `ray start` cluster left its
address behind, and a named cluster that does not answer is a clear error within seconds.

Each test runs the launcher scripts/serve.sh execs (`python -m deployments.serve_launcher`) as a
user's shell would, with Ray's temp dir holding a stale `ray_current_cluster` file."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def stale_temp_dir():
    """A short RAY_TMPDIR (Ray's socket paths must fit 107 bytes) naming a cluster nobody runs."""
    folder = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
    dead = free_port()
    (folder / "ray").mkdir()
    (folder / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{dead}")
    yield folder, dead
    shutil.rmtree(folder, ignore_errors=True)


def launcher_env(temp_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return {**env, "RAY_TMPDIR": str(temp_dir), "RAY_USAGE_STATS_ENABLED": "0", **extra}


def launch(args: list[str], env: dict[str, str], **options) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "deployments.serve_launcher", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **options)


def test_a_stale_cluster_address_still_gives_an_embedded_start(stale_temp_dir, tmp_path):
    temp_dir, _ = stale_temp_dir
    port = free_port()
    config = yaml.safe_load((ROOT / "serve_config.cpu.yaml").read_text())
    config["http_options"]["port"] = port
    app = config["applications"][0]
    app["args"] = {"deployments": ["embedding"]}
    app["deployments"] = [d for d in app["deployments"] if d["name"] in ("Ingress", "EmbeddingDeployment")]
    (tmp_path / "serve.yaml").write_text(yaml.safe_dump(config))
    env = launcher_env(temp_dir, INFERENCE_DATA_DIR=str(tmp_path / "data"), INFERENCE_CACHE_DIR=str(tmp_path / "cache"),
                       INFERENCE_MANAGER_NAME="launcher-test-manager")
    server = launch([str(tmp_path / "serve.yaml")], env, start_new_session=True)
    try:
        deadline, health = time.monotonic() + 180, None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                if health.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(1)
        assert server.poll() is None, server.stdout.read()
        assert health is not None and health.status_code == 200
    finally:
        os.killpg(server.pid, signal.SIGINT)  # Ctrl-C: serve run shuts Serve and its embedded Ray down
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)


@pytest.mark.parametrize("named", ["env", "flag", "auto"])
def test_a_named_cluster_that_does_not_answer_is_a_clear_error(stale_temp_dir, named):
    temp_dir, dead = stale_temp_dir
    address = "auto" if named == "auto" else f"127.0.0.1:{dead}"
    args, extra = (["serve_config.cpu.yaml", "--address", address], {}) if named == "flag" else \
        (["serve_config.cpu.yaml"], {"RAY_ADDRESS": address})
    started = time.monotonic()
    result = launch(args, launcher_env(temp_dir, **extra))
    output, _ = result.communicate(timeout=60)
    assert result.returncode == 2, output
    assert time.monotonic() - started < 30
    assert f"error: No Ray cluster answers at 127.0.0.1:{dead} (address '{address}')" in output
