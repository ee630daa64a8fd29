"""Each model's lifecycle, read from the sources that know it rather than guessed by the ingress:
Serve's controller (the model deployment's status and replicas), the model manager (its download)
and the replica board (what replicas have loaded, are loading, failed to load).

    available -> downloading (bytes, eta) -> cached -> starting -> ready (replicas n) -> idle
    -> scaled_to_zero, or failed with the reason.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from typing import Any

from ray import serve

STATUS_MAX_AGE_S = 1.0
FAILED_DEPLOYMENT = {"UNHEALTHY", "DEPLOY_FAILED"}
IN_FLIGHT_DOWNLOAD = {"pending", "downloading"}

# The caller's `Prefer: wait=N` (RFC 7240), set per request by the HTTP app: how long it waits for a cold start.
WAIT_PREFERENCE: contextvars.ContextVar[float | None] = contextvars.ContextVar("wait_preference", default=None)


def parse_prefer_wait(header: str | None) -> float | None:
    """Seconds from a `Prefer` header's `wait=N` preference, None when it has none."""
    for preference in (header or "").split(","):
        name, _, value = preference.strip().partition("=")
        if name.strip().lower() == "wait":
            try:
                return max(0.0, float(value.strip().strip('"')))
            except ValueError:
                return None
    return None


class DeploymentStates:
    """This application's deployments as Serve's controller reports them, asked at most once a second."""

    def __init__(self, app_name: str):
        self.app_name = app_name
        self._states: dict[str, dict[str, Any]] = {}
        self._at = 0.0
        self._lock = asyncio.Lock()

    async def get(self, fresh: bool = False) -> dict[str, dict[str, Any]]:
        async with self._lock:
            if fresh or time.monotonic() - self._at > STATUS_MAX_AGE_S:
                self._states = await asyncio.to_thread(self._read)
                self._at = time.monotonic()
        return self._states

    def _read(self) -> dict[str, dict[str, Any]]:
        app = serve.status().applications.get(self.app_name)
        if app is None:
            return {}
        return {name: {"status": str(d.status.value if hasattr(d.status, "value") else d.status),
                       "message": d.message,
                       "replicas": {str(getattr(k, "value", k)): n for k, n in d.replica_states.items()}}
                for name, d in app.deployments.items()}


def running_replicas(state: dict[str, Any] | None) -> int:
    return (state or {}).get("replicas", {}).get("RUNNING", 0)


DOWNLOAD_FIELDS = ("download_id", "status", "progress", "bytes_done", "bytes_total", "error")


def model_lifecycle(model_id: str, deployment: str | None, state: dict[str, Any] | None, download: dict | None,
                    reports: list[dict], ever_loaded: bool, idle_after_s: float) -> dict[str, Any]:
    """One model's state and what it is read from. `reports`: the board's reports from its deployment's replicas."""
    replicas = (state or {}).get("replicas", {})
    running, starting = replicas.get("RUNNING", 0), replicas.get("STARTING", 0)
    live = running or starting  # with neither, reports still on the board come from replicas now gone
    copies = [m for r in reports for m in r["models"] if m["name"] == model_id] if live else []
    loading = live and any(model_id in r.get("loading", []) for r in reports)
    load_error = next((r["failed"][model_id] for r in reports if model_id in r.get("failed", {})), None)
    download = download or {}
    view: dict[str, Any] = {"deployment": deployment, "replicas": running, "replicas_starting": starting,
                            "deployment_status": (state or {}).get("status"), "loaded_replicas": len(copies),
                            "download": {k: download.get(k) for k in DOWNLOAD_FIELDS} if download else None}
    if copies:
        view["load"] = copies[0].get("load", {})
    on_disk = "cached" if download.get("status") == "completed" else "available"  # no replica holds it
    reason: str | None
    if deployment is None:
        state_name, reason = on_disk, "not deployed in this application"
    elif state and state["status"] in FAILED_DEPLOYMENT:
        state_name, reason = "failed", state.get("message") or state["status"]
    elif download.get("status") == "failed":
        state_name, reason = "failed", download.get("error")
    elif load_error and not copies and not loading:
        state_name, reason = "failed", load_error
    elif download.get("status") in IN_FLIGHT_DOWNLOAD:
        state_name, reason = "downloading", None
        view.update(bytes_done=download.get("bytes_done"), bytes_total=download.get("bytes_total"),
                    eta=download.get("eta"))
    elif copies and running:
        idle = min(c.get("idle_s", 0) for c in copies)
        state_name, reason = ("idle" if idle >= idle_after_s else "ready"), None
        view["idle_s"] = idle
    elif starting or loading:
        state_name, reason = "starting", (state or {}).get("message") or None
    elif running:  # a replica is up but holds no copy (its files were removed): it loads on the next request
        state_name, reason = on_disk, "not loaded; the next request loads it"
    elif ever_loaded:
        state_name, reason = "scaled_to_zero", None
    else:
        state_name, reason = on_disk, None
    return {"state": state_name, "reason": reason, **view}
