"""The test hub as a subprocess for benchmarks (bench/ imports nothing from tests/)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
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
