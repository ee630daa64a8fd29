"""A two-node Ray cluster on this machine, started with `ray start` and stopped by killing only its
own processes: a head (resource node_a) and a second node (node_b), each with its own temp dir and
its own model cache directory (INFERENCE_NODE_CACHE_DIR)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import free_port

RAY = str(Path(sys.executable).parent / "ray")


def _ray(*args: str, env: dict) -> None:
    subprocess.run([RAY, *args], env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=120)


def _stop_nodes(temp_dirs: list[str]) -> None:
    """Kill only this cluster's processes (`ray stop` would also stop the suite's own Ray)."""
    for proc in Path("/proc").iterdir():
        try:
            command = (proc / "cmdline").read_bytes().decode(errors="replace")
        except (OSError, ValueError):
            continue
        if proc.name.isdigit() and any(temp in command for temp in temp_dirs):
            try:
                os.kill(int(proc.name), signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    """Head (node_a) and a second node (node_b), each with its own temp dir and cache directory."""
    tmp_path = tmp_path_factory.mktemp("two-nodes")
    port = free_port()
    base = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_ADDRESS": ""}
    caches = {name: tmp_path / f"cache-{name}" for name in ("a", "b")}
    temps = {name: tempfile.mkdtemp(prefix=f"r{name}", dir="/tmp") for name in ("a", "b")}
    try:
        _ray("start", "--head", f"--port={port}", "--num-cpus=2", '--resources={"node_a": 1}',
             f"--temp-dir={temps['a']}", "--include-dashboard=false", "--disable-usage-stats",
             f"--metrics-export-port={free_port()}", env={**base, "INFERENCE_NODE_CACHE_DIR": str(caches["a"])})
        _ray("start", f"--address=127.0.0.1:{port}", "--num-cpus=1", '--resources={"node_b": 1}',
             f"--temp-dir={temps['b']}", f"--dashboard-agent-listen-port={free_port()}",
             f"--metrics-export-port={free_port()}", "--disable-usage-stats",
             env={**base, "INFERENCE_NODE_CACHE_DIR": str(caches["b"])})
        yield f"127.0.0.1:{port}", caches, base
    finally:
        _stop_nodes(list(temps.values()))
