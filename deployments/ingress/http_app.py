"""Builds the FastAPI app of one ingress replica from its Services."""

from __future__ import annotations

from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.body_limit import RequestBodyLimitMiddleware

from deployments.ingress import (
    catalog_routes,
    chat_routes,
    current_model_routes,
    embedding_routes,
    image_routes,
    job_routes,
    management_routes,
    music_routes,
    runpod_routes,
    speech_routes,
    transcription_routes,
    upload_routes,
    video_routes,
    vision_routes,
    voice_routes,
)
from deployments.ingress.auth import require_api_key_for_changes
from deployments.ingress.http_errors import install_error_handlers
from deployments.ingress.observability import RequestObserver
from deployments.ingress.services import Services

# management routes first: /models/download etc. must win over catalog's /models/{name:path}
ROUTERS = (
    management_routes.router,
    current_model_routes.router,
    catalog_routes.router,
    embedding_routes.router,
    upload_routes.router,
    job_routes.router,
    music_routes.router,
    transcription_routes.router,
    speech_routes.router,
    chat_routes.router,
    vision_routes.router,
    image_routes.router,
    video_routes.router,
    voice_routes.router,
    runpod_routes.router,
)
# Routers whose POST/PUT/DELETE routes change state: they need an API key when keys are configured.
STATE_CHANGING_ROUTERS = (management_routes.router, current_model_routes.router, upload_routes.router,
                          job_routes.router, voice_routes.router, runpod_routes.router)
MULTIPART_OVERHEAD = 1 << 20
CONSOLE = Path(__file__).parent / "console"  # the web console's static files, served at /ui/


def build_http_app(services: Services) -> FastAPI:
    limit = services.settings.max_upload_bytes + MULTIPART_OVERHEAD
    app = FastAPI(
        title="Ray Serve inference service",
        description="Source separation, music, speech, embeddings, chat, vision, image and video generation models "
                    "on Ray Serve.",
        version="0.1.0",
    )
    app.state.services = services
    install_error_handlers(app)
    for router in ROUTERS:
        guarded = router in STATE_CHANGING_ROUTERS
        app.include_router(router, dependencies=[Depends(require_api_key_for_changes)] if guarded else [])
    # relative, so it lands right under any route prefix (/ui -> /ui/, /app/ui -> /app/ui/)
    app.add_api_route("/ui", lambda: RedirectResponse("ui/"), include_in_schema=False)
    app.mount("/ui", StaticFiles(directory=CONSOLE, html=True), name="console")

    # counts bytes as they arrive, so a chunked body (no Content-Length) is capped too; inside the observer,
    # which refuses a declared oversized body first, so both answer in the service's JSON error shape
    app.add_middleware(RequestBodyLimitMiddleware, max_body_size=limit)
    app.add_middleware(RequestObserver, max_upload_bytes=services.settings.max_upload_bytes, body_limit=limit)
    if services.settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=services.settings.cors_origins, allow_methods=["*"],
                           allow_headers=["*"], expose_headers=["Location", "X-Batch-Size", "X-Sample-Rate"])
    return app
