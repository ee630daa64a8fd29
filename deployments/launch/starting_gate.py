"""What answers at the service's route while its application starts: every request gets an immediate 503 with
Retry-After and how far the start has got, instead of a connection held until the ingress runs.

scripts/serve.sh deploys it first (deployments/launch/serve_startup.py) and replaces it with the service once the
service's ingress runs. It imports nothing heavy, so its one replica is up within seconds."""

from __future__ import annotations

import asyncio
import json
import logging

from ray import serve

logger = logging.getLogger(__name__)
RETRY_AFTER_S = 5
STATUS_PERIOD_S = 1.0


def progress(app_name: str) -> dict:
    """Deployments of `app_name` ready out of all, and the ones still starting with Serve's message."""
    app = serve.status().applications.get(app_name)
    if app is None:
        return {"ready": 0, "total": None, "starting": {}}
    states = app.deployments
    starting = {name: (state.message or state.status.value)[:300] for name, state in sorted(states.items())
                if state.status.value != "HEALTHY"}
    return {"ready": len(states) - len(starting), "total": len(states), "starting": starting}


@serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0}, max_ongoing_requests=1000)
class StartingGate:
    def __init__(self, app_name: str):
        self._app_name = app_name
        self._progress: dict = {"ready": 0, "total": None, "starting": {}}
        self._follow = asyncio.get_running_loop().create_task(self._follow_progress())

    async def _follow_progress(self) -> None:
        """Serve's status, read off the request path: a busy controller answers slowly, and a request
        must never wait for it."""
        while True:
            try:
                self._progress = await asyncio.to_thread(progress, self._app_name)
            except Exception as failure:  # the last answer will do
                logger.debug("no status from Serve: %s", failure)
            await asyncio.sleep(STATUS_PERIOD_S)

    async def __call__(self, scope_request) -> object:
        from starlette.responses import Response

        now = self._progress
        total = now["total"]
        counted = f"{now['ready']} of {total} deployments ready" if total else "deploying"
        body = {"status": "starting", "error_code": "SERVICE_STARTING",
                "message": f"The service is starting ({counted}); retry in {RETRY_AFTER_S}s",
                "deployments": now}
        return Response(json.dumps(body), status_code=503, media_type="application/json",
                        headers={"Retry-After": str(RETRY_AFTER_S)})


def build(args: dict) -> serve.Application:
    return StartingGate.bind(str(args.get("app_name") or "inference"))  # type: ignore[attr-defined]
