"""The profile's applications built once, in a process of their own, while Ray starts: a profile Serve would
fail to build (an unknown model, a profile that does not fit) ends the start in seconds with the builder's
reason, instead of after the four build attempts Serve makes in the cluster (about 17 s more on 2 cores).
Only applications of this service's builder are checked, each with its `runtime_env.env_vars` as Serve sets
them; one that builds here may still fail in the cluster (what only the cluster knows: its CPUs), as before.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from deployments.launch.serve_startup import StartFailed

BUILDER = "deployments.app:build_app"
ROOT = Path(__file__).resolve().parents[2]
BUILD = "import json, sys\nfrom deployments.app import build_app\nbuild_app(json.loads(sys.argv[1]))"


class AppCheck:
    def __init__(self, config: dict[str, Any]):
        self._builds: list[tuple[str, subprocess.Popen]] = []
        for app in config.get("applications") or []:
            if app.get("import_path") != BUILDER:
                continue
            env_vars = (app.get("runtime_env") or {}).get("env_vars") or {}
            env = {**os.environ, **{name: str(value) for name, value in env_vars.items()}}
            build = subprocess.Popen([sys.executable, "-c", BUILD, json.dumps(app.get("args") or {})], cwd=ROOT,
                                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            self._builds.append((app.get("name", "default"), build))

    def wait(self) -> None:
        """Raise StartFailed naming the first application that did not build, with the builder's reason."""
        for name, build in self._builds:
            _, errors = build.communicate()
            if build.returncode != 0:
                lines = [line.strip() for line in errors.splitlines() if line.strip()]
                why = lines[-1] if lines else f"its build exited with status {build.returncode}"
                raise StartFailed(f"application {name} failed to deploy: {why}")

    def stop(self) -> None:
        for _, build in self._builds:
            if build.poll() is None:
                build.kill()
