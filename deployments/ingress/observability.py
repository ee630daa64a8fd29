"""What every request passes through before its route: its `Prefer: wait`, and the service's own request
metrics (by route, model and status) in Ray's Prometheus endpoint.

One plain ASGI middleware: FastAPI's `@app.middleware("http")` wraps each request in a task and a
streaming response, which costs milliseconds per request on the hot inference routes.
"""

from __future__ import annotations

import contextvars
import time

from ray.serve import metrics
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deployments.ingress.lifecycle import WAIT_PREFERENCE, parse_prefer_wait

LATENCY_BOUNDARIES_MS = [5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1e3, 2.5e3, 5e3, 1e4, 3e4, 6e4, 1.2e5]

# The catalog id a request's route resolved (Services.model_for writes it): a tag of its metrics.
REQUEST_MODEL: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("request_model",
                                                                                      default=None)


def note_request_model(model_id: str) -> None:
    """Tag the current request's metrics with the model it is served by (no-op outside a request)."""
    seen = REQUEST_MODEL.get()
    if seen is not None:
        seen["model"] = model_id


class RequestObserver:
    """Per request: read `Prefer: wait`, count and time it (body caps: body_limits.BodyCaps, inside it)."""

    def __init__(self, app: ASGIApp):
        self.app = app
        # Serve adds the application, deployment and replica tags; Ray exports these with a ray_ prefix.
        self.requests = metrics.Counter(
            "inference_requests", description="HTTP requests answered, by route, model and status code.",
            tag_keys=("route", "model", "status"))  # type: ignore[arg-type]  # Ray types it as a 1-tuple
        self.latency = metrics.Histogram(
            "inference_request_latency_ms", description="Time from request to the end of its response, in ms.",
            boundaries=LATENCY_BOUNDARIES_MS, tag_keys=("route", "model"))  # type: ignore[arg-type]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = Headers(scope=scope)
        WAIT_PREFERENCE.set(parse_prefer_wait(headers.get("prefer")))
        seen = {"model": ""}
        REQUEST_MODEL.set(seen)
        status = 500  # what the client gets when an error escapes every handler

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            tags = {"route": _route_of(scope), "model": seen["model"]}
            self.requests.inc(tags={**tags, "status": str(status)})
            self.latency.observe((time.perf_counter() - started) * 1000, tags=tags)


def _route_of(scope: Scope) -> str:
    """'POST /jobs/{job_id}': the route template FastAPI matched (set in the scope), never the raw path,
    so the metric has one series per route; 'unmatched' for paths no route serves."""
    route = scope.get("route")
    return f"{scope['method']} {getattr(route, 'path', 'unmatched')}"
