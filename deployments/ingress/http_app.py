"""Builds the FastAPI app of one ingress replica from its Services."""

from __future__ import annotations

from fastapi import FastAPI

from deployments.ingress import catalog_routes, embedding_routes
from deployments.ingress.http_errors import install_error_handlers
from deployments.ingress.services import Services

ROUTERS = (catalog_routes.router, embedding_routes.router)


def build_http_app(services: Services) -> FastAPI:
    app = FastAPI(
        title="Ray Serve inference service",
        description="Source separation, music, speech, embeddings, chat and vision models on Ray Serve.",
        version="0.1.0",
    )
    app.state.services = services
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    return app
