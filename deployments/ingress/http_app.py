"""Builds the FastAPI app of one ingress replica from its Services."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import RedirectResponse
from fastapi.routing import APIWebSocketRoute
from fastapi.staticfiles import StaticFiles

from deployments.ingress import (
    catalog_routes,
    current_model_routes,
    job_routes,
    management_routes,
    runpod_routes,
    upload_routes,
)
from deployments.ingress.areas import TASK_AREAS
from deployments.ingress.auth import authenticate, require_admin
from deployments.ingress.body_limits import BodyCaps
from deployments.ingress.http_errors import install_error_handlers
from deployments.ingress.observability import RequestObserver
from deployments.ingress.realtime import routes as realtime_routes
from deployments.ingress.request_checks import state_catalog
from deployments.ingress.services import Services

# The service's own areas, management first: /models/download etc. must win over catalog's /models/{name:path};
# then each model task's area (areas.py).
ROUTERS = (
    management_routes.router,
    current_model_routes.router,
    catalog_routes.router,
    upload_routes.router,
    job_routes.router,
    runpod_routes.router,
    realtime_routes.router,
    *(area.router for area in TASK_AREAS),
)
# Routers whose POST/PUT/DELETE routes manage models: with keys configured, only admin keys may call them.
# Every other route needs a key of either kind (auth.authenticate, on the whole app).
ADMIN_ROUTERS = (management_routes.router, current_model_routes.router)
CONSOLE = Path(__file__).parent / "console"  # the web console's static files, served at /ui/


def build_http_app(services: Services) -> FastAPI:
    app = FastAPI(
        dependencies=[Depends(authenticate)],
        title="Ray Serve inference service",
        description="Source separation, music, speech, embeddings, chat, vision, image and video generation models "
                    "on Ray Serve.",
        version="0.1.0",
    )
    app.state.services = services
    app.openapi = lambda: _spec(app, services)  # type: ignore[method-assign]
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router, dependencies=[Depends(require_admin)] if router in ADMIN_ROUTERS else [])
    # relative, so it lands right under any route prefix (/ui -> /ui/, /app/ui -> /app/ui/)
    app.add_api_route("/ui", lambda: RedirectResponse("ui/"), include_in_schema=False)
    app.mount("/ui", StaticFiles(directory=CONSOLE, html=True), name="console")

    # each route's body cap (body_limits.ROUTE_BODIES), by Content-Length or counted as a chunked body arrives;
    # inside the observer, so its 413s are counted too
    app.add_middleware(BodyCaps, settings=services.settings)
    app.add_middleware(RequestObserver)
    if services.settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=services.settings.cors_origins, allow_methods=["*"],
                           allow_headers=["*"], expose_headers=["Location", "X-Batch-Size", "X-Sample-Rate"])
    return app


def _spec(app: FastAPI, services: Services) -> dict[str, Any]:
    """The app's OpenAPI, built at the first call, with what the catalog it serves says (the task enums)."""
    if app.openapi_schema is None:
        schema = FastAPI.openapi(app)
        state_catalog(schema, services.catalog.tasks)
        # OpenAPI has no WebSockets: listed beside it, so the key matrix walks them as it walks the paths
        schema["x-websocket-routes"] = sorted(route.path for router in ROUTERS for route in router.routes
                                                          if isinstance(route, APIWebSocketRoute))
    return app.openapi_schema  # type: ignore[return-value]
